"""The settings of the sidekiq_failures detector (``[detectors.sidekiq_failures]``): one frozen
dataclass read by the detector and by its health part. What each number means: detector.py."""
from __future__ import annotations

from dataclasses import dataclass

from agent.settings import setting
from detectors.base import Settings


@dataclass(frozen=True)
class SidekiqFailuresSettings(Settings):
    window_s: float = setting(300.0, above=0.0)  # failures, dead jobs, Redis errors and metric growth are counted in this window
    recovery_grace_s: float = setting(120.0, min=0.0)  # a failed job that has not succeeded this long after its last attempt is unrecovered
    total_failure_min_jobs: int = setting(5, min=1)  # 100% failing: this many failed jobs and no success in the window
    storm_min_fails: int = setting(20, min=1)  # retry storm: this many unrecovered attempts of one problem in the window
    dead_burst_min: int = setting(5, min=1)  # this many dead-set additions in the window is critical (one is a warning)
    spike_min_fails: int = setting(5, min=1)
    spike_min_rate: float = setting(0.2, min=0.0, max=1.0)  # recent share of failed outcomes of the class
    spike_factor: float = setting(5.0, min=1.0)  # ... and this many times its baseline share
    spike_min_history: int = setting(100, min=1)  # outcomes in the baseline before a spike can be judged
    spike_recent_jobs: int = setting(20, min=1)  # the "recent" share is over this many last outcomes of the class
    spike_baseline_jobs: int = setting(500, min=1)  # ... the baseline over this many before them
    deploy_correlation_s: float = setting(3600.0, min=0.0)  # a problem starting this soon after a deploy blames the deploy in triage
    resolve_after_s: float = setting(3600.0, above=0.0)  # a problem quiet this long is forgotten (a recurrence is a new finding)
    slow_min_s: float = setting(60.0, min=0.0)
    slow_factor: float = setting(10.0, min=1.0)
    slow_min_samples: int = setting(20, min=1)
    slow_absolute_s: float = setting(1800.0, above=0.0)
    stuck_min_s: float = setting(300.0, min=0.0)
    stuck_after_s: float = setting(1800.0, above=0.0)
    stuck_critical_count: int = setting(0, min=0)  # 0: the app's Sidekiq concurrency (AppFacts), else 5
    interrupted_min: int = setting(3, min=1)  # jobs killed at shutdown before it is a warning
    redis_down_critical_s: float = setting(30.0, above=0.0)
    crash_critical_count: int = setting(3, min=1)
    crash_window_s: float = setting(900.0, above=0.0)
    vanish_grace_s: float = setting(600.0, above=0.0)  # a process silent this long after another booted, without Bye!, vanished
    boot_flap_count: int = setting(6, min=1)
    boot_window_s: float = setting(600.0, above=0.0)
    retry_growth_warning: float = setting(100.0, above=0.0)
    retry_growth_critical: float = setting(1000.0, above=0.0)
    latency_warning_s: float = setting(120.0, above=0.0)
    latency_critical_s: float = setting(600.0, above=0.0)
    max_problems: int = setting(2000, min=1)
    max_jobs_tracked: int = setting(50000, min=1)  # failed jobs awaiting recovery, running jobs, known error keys
    max_evidence: int = setting(10, min=1)  # per finding