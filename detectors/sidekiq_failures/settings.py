"""The settings of the sidekiq_failures detector (``[detectors.sidekiq_failures]``): one frozen
dataclass read by the detector and by its health part. What each number means: detector.py."""
from __future__ import annotations

from dataclasses import dataclass

from detectors.base import Settings


@dataclass(frozen=True)
class SidekiqFailuresSettings(Settings):
    window_s: float = 300.0  # failures, dead jobs, Redis errors and metric growth are counted in this window
    recovery_grace_s: float = 120.0  # a failed job that has not succeeded this long after its last attempt is unrecovered
    total_failure_min_jobs: int = 5  # 100% failing: this many failed jobs and no success in the window
    storm_min_fails: int = 20  # retry storm: this many unrecovered attempts of one problem in the window
    dead_burst_min: int = 5  # this many dead-set additions in the window is critical (one is a warning)
    spike_min_fails: int = 5
    spike_min_rate: float = 0.2  # recent share of failed outcomes of the class
    spike_factor: float = 5.0  # ... and this many times its baseline share
    spike_min_history: int = 100  # outcomes in the baseline before a spike can be judged
    spike_recent_jobs: int = 20  # the "recent" share is over this many last outcomes of the class
    spike_baseline_jobs: int = 500  # ... the baseline over this many before them
    deploy_correlation_s: float = 3600.0  # a problem starting this soon after a deploy blames the deploy in triage
    resolve_after_s: float = 3600.0  # a problem quiet this long is forgotten (a recurrence is a new finding)
    slow_min_s: float = 60.0
    slow_factor: float = 10.0
    slow_min_samples: int = 20
    slow_absolute_s: float = 1800.0
    stuck_min_s: float = 300.0
    stuck_after_s: float = 1800.0
    stuck_critical_count: int = 0  # 0: the app's Sidekiq concurrency (AppFacts), else 5
    interrupted_min: int = 3  # jobs killed at shutdown before it is a warning
    redis_down_critical_s: float = 30.0
    crash_critical_count: int = 3
    crash_window_s: float = 900.0
    vanish_grace_s: float = 600.0  # a process silent this long after another booted, without Bye!, vanished
    boot_flap_count: int = 6
    boot_window_s: float = 600.0
    retry_growth_warning: float = 100.0
    retry_growth_critical: float = 1000.0
    latency_warning_s: float = 120.0
    latency_critical_s: float = 600.0
    max_problems: int = 2000
    max_jobs_tracked: int = 50000  # failed jobs awaiting recovery, running jobs, known error keys
    max_evidence: int = 10  # per finding
