"""Sidekiq failure patterns: failing job classes, retry storms, dead jobs, stuck jobs, Redis, crashes.

Goal: page when background work is really broken, never for the noise every busy Sidekiq makes.
A failure only counts once it is *settled unrecovered*: its job (jid) died, or no ``done`` of that
jid arrived within ``recovery_grace_s`` of its last attempt. A job that fails once and succeeds on
its retry is therefore never an incident, however many of them there are.

Signals, per problem:

    (job_class, error_class)   failed attempts in ``window_s``; 100% failing (>= total_failure_min_jobs
                               jobs failed, no ``done`` of the class in the window); retry storm
                               (>= storm_min_fails attempts); dead-set additions (``Adding dead``);
                               a new error class (first seen, or first since the last deploy); a
                               failure-rate spike against the class's own lagged baseline
    job_class + "long_running" a job slower than max(slow_min_s, slow_factor x its class p95) or than
                               slow_absolute_s; stuck (started, no done/fail, while its process keeps
                               logging for max(stuck_min_s, slow_factor x p95), or stuck_after_s without
                               a baseline); jobs killed at shutdown (``Sidekiq::Shutdown`` fails)
    component "redis"          fetch/heartbeat errors, Redis::/RedisClient:: connection errors,
                               ConnectionPool::TimeoutError from Sidekiq, slow-RTT warnings
    component "sidekiq"        crashes (crash lines; a process that vanished without ``Bye!`` while
                               another booted), restart loops (boots)
    metrics                    ``sidekiq.retry_size`` and ``sidekiq.dead_size`` (gauges, growth within
                               ``window_s``), ``sidekiq.queue_latency_s`` (label ``queue``)

Severity rule (every number is a setting):

    critical = page now: a class failing 100% over >= total_failure_min_jobs jobs; a retry storm;
               >= dead_burst_min dead-set additions in the window; Redis unreachable for
               >= redis_down_critical_s; >= crash_critical_count unclean exits in crash_window_s;
               every thread of a process stuck; retry set +retry_growth_critical or queue latency
               >= latency_critical_s.
    warning  = look today: a new error class with few failures; a rate spike; any dead job; a slow,
               stuck or repeatedly interrupted job; a short Redis blip or slow RTT; one crash;
               a restart loop; moderate retry-set growth or latency.
    nothing  = recovered failures; a one-off failure of an error class already known.

One incident per problem: findings are emitted per flush with the *new* failures only (the
pipeline adds counts up by fingerprint), and again when the severity rises. Subject keys:
``job_class``, ``error_class``, ``queue`` (when known) for failures; ``job_class`` + ``problem`` for
long-running jobs; ``component`` (+ ``problem``) for Redis and processes; ``problem`` (+ ``queue``) for
metrics. Baselines come from ``detectors.baseline``, deploy markers from ``detectors.deploys``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from agent.events import Error, Event, Finding, Job, Metric, Process
from agent.timeparse import to_iso
from agent.settings import setting
from detectors.base import Detector, Settings
from detectors.baseline import RollingBaseline
from detectors.deploys import DeployMarkers
from detectors.sidekiq_failures_health import SidekiqHealthSignals
from detectors.sidekiq_failures_state import FailedJob, Outcomes, Problem, rank
from detectors.sidekiq_failures_triage import (
    failure_triage, long_running_triage, metric_triage, process_triage, redis_triage, retry_days_left, top_app_frame,
)

__all__ = ["SidekiqFailuresDetector", "SidekiqFailuresSettings", "retry_days_left", "top_app_frame"]

REDIS_ERROR = re.compile(r"^Redis(?:Client)?::|Error connecting to Redis|connect\(2\) for .*:6379|Errno::ECONNREFUSED.*6379")


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


class SidekiqFailuresDetector(SidekiqHealthSignals, Detector):
    name = "sidekiq_failures"
    kinds = frozenset({"job", "process", "error", "deploy", "metric"})
    settings_type = SidekiqFailuresSettings

    def __init__(self, settings: Optional[Settings] = None, context=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings, context)
        s = self.settings
        assert isinstance(s, SidekiqFailuresSettings)
        self.s = s
        self.now: Optional[float] = None
        self.problems: "OrderedDict[Tuple[str, ...], Problem]" = OrderedDict()
        self.failed: "OrderedDict[str, FailedJob]" = OrderedDict()  # jid -> attempts not yet settled
        self.settled: "OrderedDict[str, Tuple[Tuple[str, str], List[float]]]" = OrderedDict()  # for late recoveries
        self.dead_first: "OrderedDict[str, bool]" = OrderedDict()  # jids whose dead line came before their fail
        self.known_errors: "OrderedDict[Tuple[str, str], float]" = OrderedDict()  # (class, error) -> first seen
        self.new_keys: "OrderedDict[Tuple[str, str], str]" = OrderedDict()  # why a key counted as new when first seen
        self.last_done: Dict[str, float] = {}
        # when the logs last showed a failed attempt / a dead job: set-size metrics are then an
        # echo of what the per-class incidents already say, not news worth a page of their own
        self.log_fail_at: Optional[float] = None
        self.log_dead_at: Optional[float] = None
        self.durations = RollingBaseline(max_keys=s.max_problems, max_samples=200, lazy_sort=True)  # read only for slow/stuck jobs
        self.outcomes = Outcomes(s.max_problems, s.spike_recent_jobs, s.spike_baseline_jobs)
        self.deploys = DeployMarkers(self.context.facts, max_keys=s.max_jobs_tracked)
        self._init_health()  # running jobs, processes, Redis and metric series
        self._seq = 0

    # ----- input --------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is not None and (self.now is None or ts > self.now):
            if self.now is None:
                self.deploys.watch(ts)  # deploys only count as "before" what we watched
            self.now = ts
            failed = self.failed
            # the oldest pending failure is first: settle only when it is old enough (hot path)
            if failed and ts - next(iter(failed.values())).last_ts >= self.s.recovery_grace_s:
                self._settle(ts, final=False)
        if isinstance(event, Job):
            self._touch(event)
            state = event.state
            if state == "start":
                running = self.running
                running[(event.source, event.pid, event.tid)] = event
                if len(running) > self.s.max_jobs_tracked:
                    running.popitem(last=False)
            elif state == "done":
                self._done(event)
            elif state == "fail":
                self._fail(event)
            elif state == "dead":
                self._dead(event)
        elif isinstance(event, Process):
            if event.component == "sidekiq":  # Puma's boots and worker kills are another detector's business
                self._process(event)
        elif isinstance(event, Error):
            if event.pid and event.origin == "sidekiq":
                self._touch(event)
            text = f"{event.error_class}: {event.message}"
            if REDIS_ERROR.search(text) or (event.origin == "sidekiq" and event.error_class == "ConnectionPool::TimeoutError"):
                self._redis(event, down=True)
        elif event.kind == "deploy":
            self.deploys.observe(event)  # type: ignore[arg-type]
        elif isinstance(event, Metric):
            self._metric(event)

    def _remember(self, table: "OrderedDict", key, value) -> None:  # type: ignore[no-untyped-def, type-arg]
        table[key] = value
        if len(table) > self.s.max_jobs_tracked:
            table.popitem(last=False)

    def _problem(self, key: Tuple[str, ...], subject: Dict[str, str]) -> Problem:
        p = self.problems.get(key)
        if p is None:
            p = self.problems[key] = Problem(subject)
            if len(self.problems) > self.s.max_problems:
                self.problems.popitem(last=False)
        return p

    # ----- jobs -----------------------------------------------------------------------------
    def _done(self, job: Job) -> None:
        # hot path (every finished job): locals, and _check_slow only past its floor
        self.running.pop((job.source, job.pid, job.tid), None)
        cls = job.job_class
        ts = job.ts
        if ts is not None:
            last_done = self.last_done
            last_done[cls] = ts
            if len(last_done) > self.s.max_problems:
                last_done.pop(next(iter(last_done)))
            self.outcomes.update(cls, False)
        jid = job.jid
        pending = self.failed.pop(jid, None) if jid else None
        if pending is not None:
            known = self.problems.get(pending.key)
            if known is not None:
                known.recovered += 1
        elif jid in self.settled:
            self._late_recovery(jid)
        elapsed = job.elapsed_s
        if elapsed is not None and ts is not None:
            if not elapsed < self.s.slow_min_s:  # the same test _check_slow starts with
                self._check_slow(job)
            self.durations.update(cls, elapsed, ts)

    def _fail(self, job: Job) -> None:
        self.log_fail_at = job.ts or self.log_fail_at
        self.running.pop((job.source, job.pid, job.tid), None)
        if job.error_class == "Sidekiq::Shutdown":  # killed by a deploy/restart and pushed back: not a failure
            p = self._long_running(job.job_class)
            p.facts["interrupted"] = int(p.facts.get("interrupted", 0)) + 1  # type: ignore[arg-type]
            p.occur(job.ts or 0.0, job, self.s.max_evidence)
            if p.facts["interrupted"] >= self.s.interrupted_min:  # type: ignore[operator]
                p.raise_to("warning", "interrupted")
                p.count += 1
            return
        key = (job.job_class, job.error_class)
        if job.ts is not None:
            self.deploys.see(key, job.ts)
        if key not in self.known_errors:
            deploy = self.deploys.last_deploy_before(job.ts)
            since = deploy is not None and self.deploys.is_new_since_deploy(key, job.ts)
            reason = f"first seen since the deploy at {to_iso(deploy.ts)}" if since and deploy else "first seen"
            self._remember(self.new_keys, key, reason)
            self._remember(self.known_errors, key, job.ts or 0.0)  # when it was first seen
        else:
            self.known_errors.move_to_end(key)
        jid = job.jid or f"#{self._seq}"
        self._seq += 1
        if jid in self.dead_first:  # its "Adding dead" was seen first (events merged out of order)
            del self.dead_first[jid]
            dead_job = FailedJob(key)
            dead_job.attempts.append(job)
            self._unrecovered(dead_job, dead=None)
            return
        pending = self.failed.get(jid)
        if pending is not None and pending.key != key:
            self._unrecovered(self.failed.pop(jid), dead=None)
            pending = None
        if pending is None:
            pending = FailedJob(key)
            self._remember(self.failed, jid, pending)
        else:
            self.failed.move_to_end(jid)
        pending.attempts.append(job)
        pending.last_ts = job.ts or pending.last_ts

    def _dead(self, job: Job) -> None:
        self.log_dead_at = job.ts or self.log_dead_at
        pending = self.failed.pop(job.jid, None)
        if pending is None:
            known = self.settled.get(job.jid)
            pending = FailedJob(known[0] if known else (job.job_class, job.error_class))
            if job.jid and not known:
                self._remember(self.dead_first, job.jid, True)
        self._unrecovered(pending, dead=job)

    def _settle(self, now: float, final: bool) -> None:
        """Failed jobs with no success ``recovery_grace_s`` after their last attempt are unrecovered."""
        grace = self.s.recovery_grace_s
        while self.failed:
            jid, pending = next(iter(self.failed.items()))
            if now - pending.last_ts < grace:
                if not final:
                    break
                del self.failed[jid]  # too young to judge at the end of input: not counted
                continue
            del self.failed[jid]
            self._unrecovered(pending, dead=None)

    def _unrecovered(self, pending: FailedJob, dead: Optional[Job]) -> None:
        s = self.s
        p = self._problem(pending.key, {"job_class": pending.key[0], "error_class": pending.key[1]})
        first_seen = self.known_errors.get(pending.key)
        if not p.new_reason and first_seen is not None and any((j.ts or 0.0) - first_seen <= s.window_s for j in pending.attempts):
            p.new_reason = self.new_keys.get(pending.key, "")  # new only while near its first sighting
        jid = ""
        for job in pending.attempts:
            ts = job.ts or 0.0
            jid = job.jid or jid
            p.times.append((ts, jid))
            p.count += 1
            if jid and len(p.jobs) < s.max_jobs_tracked:
                p.jobs.add(jid)
            p.occur(ts, job, s.max_evidence)
            if job.retry_count is not None:
                p.retry_max = max(p.retry_max or 0, job.retry_count)
            if job.queue and "queue" not in p.subject and p.reported_severity is None:  # the subject is fixed once reported
                p.subject["queue"] = job.queue
            p.sample = p.sample or job
            self.outcomes.update(job.job_class, True)
        if jid and pending.attempts:
            self._remember(self.settled, jid, (pending.key, [j.ts or 0.0 for j in pending.attempts]))
        now = max((j.ts or 0.0) for j in pending.attempts) if pending.attempts else (dead.ts or 0.0 if dead else 0.0)
        if dead is not None:
            dts = dead.ts or now
            p.dead.append(dts)
            p.dead_total += 1
            p.occur(dts, dead, s.max_evidence)
            if dead.queue and "queue" not in p.subject and p.reported_severity is None:
                p.subject["queue"] = dead.queue
            now = max(now, dts)
        self._evaluate(p, pending.key[0], now)

    def _late_recovery(self, jid: str) -> None:
        key, times = self.settled.pop(jid)
        p = self.problems.get(key)
        if p is None:
            return
        p.recovered += 1
        for ts in times:
            try:
                p.times.remove((ts, jid))
            except ValueError:
                pass

    def _evaluate(self, p: Problem, cls: str, now: float) -> None:
        s = self.s
        if p.severity == "critical" and now - p.evaluated_at < 1.0:
            return  # in a storm, re-counting on every failure is wasted work: once a second is enough
        p.evaluated_at = now
        window = p.in_window(now, s.window_s, s.window_s + s.recovery_grace_s)
        jobs = {jid for _, jid in window if jid}
        dead = sum(1 for t in p.dead if now - s.window_s < t <= now)
        last_done = self.last_done.get(cls)
        succeeded = last_done is not None and last_done > now - s.window_s
        if len(jobs) >= s.total_failure_min_jobs and not succeeded:
            p.raise_to("critical", "failing_100pct")
        if len(window) >= s.storm_min_fails:
            p.raise_to("critical", "retry_storm")
        if dead:
            p.raise_to("critical" if dead >= s.dead_burst_min else "warning", "dead")
        if p.new_reason and window:
            p.raise_to("warning", "new_error")
        recent, base, history = self.outcomes.rates(cls)
        if (
            base is not None and recent is not None and len(window) >= s.spike_min_fails
            and history >= s.spike_min_history
            and recent >= s.spike_min_rate and recent >= s.spike_factor * max(base, 0.001)
        ):
            p.raise_to("warning", "rate_spike")
        p.facts.update(
            window_fails=len(window), window_jobs=len(jobs), window_dead=dead, class_succeeded_in_window=succeeded,
            baseline_failure_rate=base, recent_failure_rate=recent,
        )

    # ----- output ---------------------------------------------------------------------------
    def flush(self, until: Optional[float]) -> List[Finding]:
        if self.now is None:
            return []
        if until is None:
            self._settle(self.now, final=True)
        self._check_stuck()
        self._check_vanished(self.now if until is None else min(until, self.now))
        out: List[Finding] = []
        for key, p in list(self.problems.items()):
            finding = self._finding(key, p)
            if finding is not None:
                out.append(finding)
            if p.last_ts is not None and self.now - p.last_ts > self.s.resolve_after_s:
                del self.problems[key]
        return out

    def _finding(self, key: Tuple[str, ...], p: Problem) -> Optional[Finding]:
        if p.severity is None or p.first_ts is None or p.last_ts is None:
            return None
        new = p.count - p.reported_count
        if new <= 0 and rank(p.severity) <= rank(p.reported_severity):
            return None
        kind = key[0]
        if kind == "long_running":
            title, triage = long_running_triage(p, self.durations)
        elif kind in ("unclean_exit", "restart_loop"):
            title, triage = process_triage(kind, p)
        elif kind == "redis":
            title, triage = redis_triage(p)
        elif kind in ("latency", "retry_set", "dead_set"):
            title, triage = metric_triage(kind, p)
        else:
            deploy = self.deploys.last_deploy_before(p.first_ts)
            if deploy is not None and p.first_ts - deploy.ts > self.s.deploy_correlation_s:
                deploy = None
            title, triage = failure_triage(p, self.last_done.get(p.subject.get("job_class", "")), deploy)
        details = {k: list(v) if isinstance(v, list) else v for k, v in p.facts.items()}  # later exits must not edit this one
        details.update(signals=sorted(p.signals), occurrences_total=p.count, jobs=len(p.jobs), recovered_jobs=p.recovered,
                       dead=p.dead_total, retry_count_max=p.retry_max, new_error=p.new_reason or None)
        finding = Finding(
            detector=self.name, severity=p.severity, title=title, subject=dict(p.subject), first_seen=p.first_ts,
            last_seen=p.last_ts, count=max(new, 0), evidence=p.evidence, triage=triage, details=details,
        )
        p.reported_count, p.reported_severity = p.count, p.severity
        p.evidence = []
        return finding
