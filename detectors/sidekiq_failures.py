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
    metrics                    ``sidekiq_retry_size`` and ``sidekiq_dead_size`` (gauges, growth within
                               ``window_s``), ``sidekiq_queue_latency_seconds`` (label ``queue``)

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
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Set, Tuple

from agent.events import Error, Event, Evidence, Finding, Job, Metric, Process, Triage, severity_rank
from agent.timeparse import to_iso
from detectors.base import Detector, Settings
from detectors.baseline import RollingBaseline
from detectors.deploys import DeployMarkers

REDIS_ERROR = re.compile(r"^Redis(?:Client)?::|Error connecting to Redis|connect\(2\) for .*:6379|Errno::ECONNREFUSED.*6379")


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


def _rank(severity: Optional[str]) -> int:
    return -1 if severity is None else severity_rank(severity)


class _Problem:
    """What is known about one problem; ``reported_*`` is what the last finding said."""

    def __init__(self, subject: Dict[str, str]) -> None:
        self.subject = subject
        self.first_ts: Optional[float] = None
        self.last_ts: Optional[float] = None
        self.times: Deque[Tuple[float, str]] = deque(maxlen=10000)  # unrecovered attempts (ts, jid), or occurrences
        self.dead: Deque[float] = deque(maxlen=10000)
        self.count = 0  # occurrences (unrecovered attempts) since the problem opened
        self.jobs: Set[str] = set()
        self.recovered = 0
        self.dead_total = 0
        self.retry_max: Optional[int] = None
        self.sample: Optional[Event] = None
        self.signals: Set[str] = set()
        self.severity: Optional[str] = None
        self.reported_count = 0
        self.reported_severity: Optional[str] = None
        self.evidence: List[Evidence] = []
        self.new_reason = ""
        self.facts: Dict[str, object] = {}
        self.evaluated_at = float("-inf")

    def occur(self, ts: float, event: Optional[Event], cap: int) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if event is not None and len(self.evidence) < cap:
            self.evidence.append(Evidence.of(event))

    def raise_to(self, severity: Optional[str], signal: str) -> None:
        if severity is None:
            return
        self.signals.add(signal)
        if _rank(severity) > _rank(self.severity):
            self.severity = severity

    def in_window(self, now: float, window: float, keep: float) -> List[Tuple[float, str]]:
        """Occurrences in (now - window, now]; forgets those older than ``keep`` before now."""
        for series in (self.times, self.dead):
            while series and (series[0] if isinstance(series[0], float) else series[0][0]) < now - keep:  # type: ignore[index]
                series.popleft()
        return [t for t in self.times if now - window < t[0] <= now]


class _Outcomes:
    """Per job class, the failed share of the last ``recent`` outcomes and of the ``baseline`` before them.

    A 0/1 mean needs no quantiles, so this is two running sums instead of ``RecentVsBaseline``'s
    sorted samples: it is updated on every job, the hottest path of the detector.
    """

    def __init__(self, max_keys: int, recent: int = 20, baseline: int = 500) -> None:
        self.max_keys, self.recent_size, self.baseline_size = max_keys, recent, baseline
        self._keys: "OrderedDict[str, List[object]]" = OrderedDict()  # key -> [recent deque, recent sum, baseline deque, baseline sum]

    def update(self, key: str, failed: bool) -> None:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = [deque(), 0, deque(), 0]
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        recent, baseline = entry[0], entry[2]
        value = 1 if failed else 0
        recent.append(value)  # type: ignore[union-attr]
        entry[1] += value  # type: ignore[operator]
        if len(recent) > self.recent_size:  # type: ignore[arg-type]
            old = recent.popleft()  # type: ignore[union-attr]
            entry[1] -= old  # type: ignore[operator]
            baseline.append(old)  # type: ignore[union-attr]
            entry[3] += old  # type: ignore[operator]
            if len(baseline) > self.baseline_size:  # type: ignore[arg-type]
                entry[3] -= baseline.popleft()  # type: ignore[operator, union-attr]

    def rates(self, key: str) -> Tuple[Optional[float], Optional[float], int]:
        """(recent failed share, baseline failed share, baseline size)."""
        entry = self._keys.get(key)
        if entry is None:
            return None, None, 0
        recent, baseline = entry[0], entry[2]
        r = entry[1] / len(recent) if recent else None  # type: ignore[operator, arg-type]
        b = entry[3] / len(baseline) if baseline else None  # type: ignore[operator, arg-type]
        return r, b, len(baseline)  # type: ignore[arg-type]


class _Failed:
    """A job (jid) with failed attempts, waiting to recover or not."""

    __slots__ = ("key", "attempts", "last_ts")

    def __init__(self, key: Tuple[str, str]) -> None:
        self.key = key
        self.attempts: List[Job] = []
        self.last_ts = 0.0


class _Proc:
    __slots__ = ("pid", "source", "boot", "last_ts", "last_event", "stopped", "shutting", "suspect_since", "boot_event")

    def __init__(self, pid: str, source: str) -> None:
        self.pid, self.source = pid, source
        self.boot: Optional[float] = None
        self.last_ts = 0.0
        self.last_event: Optional[Event] = None
        self.stopped = False
        self.shutting = False
        self.suspect_since: Optional[float] = None
        self.boot_event: Optional[Event] = None


class SidekiqFailuresDetector(Detector):
    name = "sidekiq_failures"
    kinds = frozenset({"job", "process", "error", "deploy", "metric"})
    settings_type = SidekiqFailuresSettings

    def __init__(self, settings: Optional[Settings] = None, context=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings, context)
        s = self.settings
        assert isinstance(s, SidekiqFailuresSettings)
        self.s = s
        self.now: Optional[float] = None
        self.problems: "OrderedDict[Tuple[str, ...], _Problem]" = OrderedDict()
        self.failed: "OrderedDict[str, _Failed]" = OrderedDict()  # jid -> attempts not yet settled
        self.settled: "OrderedDict[str, Tuple[Tuple[str, str], List[float]]]" = OrderedDict()  # for late recoveries
        self.dead_first: "OrderedDict[str, bool]" = OrderedDict()  # jids whose dead line came before their fail
        self.known_errors: "OrderedDict[Tuple[str, str], float]" = OrderedDict()  # (class, error) -> first seen
        self.new_keys: "OrderedDict[Tuple[str, str], str]" = OrderedDict()  # why a key counted as new when first seen
        self.last_done: Dict[str, float] = {}
        self.durations = RollingBaseline(max_keys=s.max_problems, max_samples=200)
        self.outcomes = _Outcomes(s.max_problems, s.spike_recent_jobs, s.spike_baseline_jobs)
        self.deploys = DeployMarkers(self.context.facts, max_keys=s.max_jobs_tracked)
        self.running: "OrderedDict[Tuple[str, str, str], Job]" = OrderedDict()
        self.stuck_reported: "OrderedDict[str, bool]" = OrderedDict()
        self.procs: "OrderedDict[Tuple[str, str], _Proc]" = OrderedDict()
        self.unclean: Deque[float] = deque(maxlen=1000)
        self.boots: Deque[float] = deque(maxlen=1000)
        self.last_boot: Dict[str, Tuple[str, float]] = {}
        self.redis_outage: Optional[float] = None
        self.metrics: Dict[Tuple[str, str], Deque[Tuple[float, float]]] = {}
        self._seq = 0

    # ----- input --------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is not None and (self.now is None or ts > self.now):
            if self.now is None:
                self.deploys.watch(ts)  # deploys only count as "before" what we watched
            self.now = ts
            if self.failed:
                self._settle(ts, final=False)
        if isinstance(event, Job):
            self._touch(event)
            state = event.state
            if state == "start":
                self._remember(self.running, (event.source, event.pid, event.tid), event)
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

    def _problem(self, key: Tuple[str, ...], subject: Dict[str, str]) -> _Problem:
        p = self.problems.get(key)
        if p is None:
            p = self.problems[key] = _Problem(subject)
            if len(self.problems) > self.s.max_problems:
                self.problems.popitem(last=False)
        return p

    # ----- jobs -----------------------------------------------------------------------------
    def _done(self, job: Job) -> None:
        self.running.pop((job.source, job.pid, job.tid), None)
        cls = job.job_class
        if job.ts is not None:
            self.last_done[cls] = job.ts
            if len(self.last_done) > self.s.max_problems:
                self.last_done.pop(next(iter(self.last_done)))
            self.outcomes.update(cls, False)
        pending = self.failed.pop(job.jid, None) if job.jid else None
        if pending is not None:
            known = self.problems.get(pending.key)
            if known is not None:
                known.recovered += 1
        elif job.jid in self.settled:
            self._late_recovery(job.jid)
        if job.elapsed_s is not None and job.ts is not None:
            self._check_slow(job)
            self.durations.update(cls, job.elapsed_s, job.ts)

    def _fail(self, job: Job) -> None:
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
            dead_job = _Failed(key)
            dead_job.attempts.append(job)
            self._unrecovered(dead_job, dead=None)
            return
        pending = self.failed.get(jid)
        if pending is not None and pending.key != key:
            self._unrecovered(self.failed.pop(jid), dead=None)
            pending = None
        if pending is None:
            pending = _Failed(key)
            self._remember(self.failed, jid, pending)
        else:
            self.failed.move_to_end(jid)
        pending.attempts.append(job)
        pending.last_ts = job.ts or pending.last_ts

    def _dead(self, job: Job) -> None:
        pending = self.failed.pop(job.jid, None)
        if pending is None:
            known = self.settled.get(job.jid)
            pending = _Failed(known[0] if known else (job.job_class, job.error_class))
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

    def _unrecovered(self, pending: _Failed, dead: Optional[Job]) -> None:
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

    def _evaluate(self, p: _Problem, cls: str, now: float) -> None:
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

    # ----- long-running and stuck jobs ----------------------------------------------------
    def _long_running(self, cls: str) -> _Problem:
        return self._problem(("long_running", cls), {"job_class": cls, "problem": "long_running"})

    def _threshold(self, cls: str, floor: float, fallback: float) -> float:
        if self.durations.count(cls) >= self.s.slow_min_samples:
            return max(floor, self.s.slow_factor * (self.durations.p95(cls) or 0.0))
        return fallback

    def _check_slow(self, job: Job) -> None:
        elapsed = job.elapsed_s or 0.0
        if elapsed < self.s.slow_min_s:
            return  # the threshold is never below slow_min_s: skip the quantile on the hot path
        cls = job.job_class
        limit = min(self._threshold(cls, self.s.slow_min_s, self.s.slow_absolute_s), self.s.slow_absolute_s)
        if elapsed >= limit:
            p = self._long_running(cls)
            p.count += 1
            p.occur(job.ts or 0.0, job, self.s.max_evidence)
            p.facts.update(slowest_s=max(elapsed, float(p.facts.get("slowest_s", 0.0))), usual_p95_s=self.durations.p95(cls))  # type: ignore[arg-type]
            p.raise_to("warning", "slow")

    def _check_stuck(self) -> None:
        per_proc: Dict[Tuple[str, str], int] = {}
        for (source, pid, _tid), job in list(self.running.items()):
            proc = self.procs.get((source, pid))
            if proc is None or job.ts is None or job.jid in self.stuck_reported:
                continue
            age = proc.last_ts - job.ts
            if age < self._threshold(job.job_class, self.s.stuck_min_s, self.s.stuck_after_s):
                continue
            self._remember(self.stuck_reported, job.jid or f"#{id(job)}", True)
            p = self._long_running(job.job_class)
            p.count += 1
            p.occur(job.ts, job, self.s.max_evidence)
            p.facts.update(stuck_for_s=max(age, float(p.facts.get("stuck_for_s", 0.0))), usual_p95_s=self.durations.p95(job.job_class))  # type: ignore[arg-type]
            p.raise_to("warning", "stuck")
            per_proc[(source, pid)] = per_proc.get((source, pid), 0) + 1
            limit = self.s.stuck_critical_count or self.context.facts.sidekiq_concurrency or 5
            if per_proc[(source, pid)] >= limit:
                p.raise_to("critical", "all_threads_stuck")

    # ----- processes and Redis ------------------------------------------------------------
    def _touch(self, event: Event) -> _Proc:
        pid = getattr(event, "pid", "")
        key = (event.source, pid)
        proc = self.procs.get(key)
        if proc is None:
            proc = _Proc(pid, event.source)
            self._remember(self.procs, key, proc)
        if event.ts is not None and event.ts >= proc.last_ts:
            proc.last_ts = event.ts
            proc.last_event = event
        proc.suspect_since = None  # it is alive
        return proc

    def _process(self, event: Process) -> None:
        proc = self._touch(event)
        state, ts = event.state, event.ts or 0.0
        if state == "boot":
            proc.boot, proc.boot_event, proc.stopped, proc.shutting = ts, event, False, False
            seen = self.last_boot.get(proc.pid)
            self.last_boot[proc.pid] = (event.source, ts)
            if len(self.last_boot) > 1000:
                self.last_boot.pop(next(iter(self.last_boot)))
            if seen is not None and seen[0] != event.source and abs(ts - seen[1]) < 60:
                return  # the same start seen in two files (sidekiq.log and the service's stdout)
            self.boots.append(ts)
            for other in self.procs.values():
                if other is not proc and other.source == event.source and not other.stopped and other.suspect_since is None:
                    other.suspect_since = ts  # did it die? only if it stays silent
                    other.boot_event = event
            recent = sum(1 for t in self.boots if ts - self.s.boot_window_s < t <= ts)
            if recent >= self.s.boot_flap_count:
                p = self._problem(("restart_loop",), {"component": "sidekiq", "problem": "restart_loop"})
                p.count += 1
                p.occur(ts, event, self.s.max_evidence)
                p.facts["boots_in_window"] = recent
                p.raise_to("warning", "restart_loop")
        elif state == "stopped":
            proc.stopped = True
            self._drop_running(proc)
        elif state == "shutdown":
            proc.shutting = True
        elif state == "crash":
            proc.stopped = True
            self._unclean_exit(proc, ts, event, "crash")
        elif state in ("redis_error", "redis_online"):
            self._redis(event, down=state == "redis_error" and "Your Redis network" not in event.message)

    def _drop_running(self, proc: _Proc) -> List[Job]:
        lost = [k for k in self.running if k[0] == proc.source and k[1] == proc.pid]
        return [self.running.pop(k) for k in lost]

    def _unclean_exit(self, proc: _Proc, ts: float, event: Optional[Event], how: str) -> None:
        lost = self._drop_running(proc)
        self.unclean.append(ts)
        p = self._problem(("unclean_exit",), {"component": "sidekiq", "problem": "unclean_exit"})
        p.count += 1
        p.occur(ts, event, self.s.max_evidence)
        kinds = p.facts.setdefault("exits", [])  # type: ignore[assignment]
        if len(kinds) < 50:  # type: ignore[arg-type]
            kinds.append({"pid": proc.pid, "how": how, "at": to_iso(ts), "was_shutting_down": proc.shutting,  # type: ignore[union-attr]
                          "jobs_in_flight": sorted({j.job_class for j in lost})})
        recent = sum(1 for t in self.unclean if ts - self.s.crash_window_s < t <= ts)
        p.facts["unclean_exits_in_window"] = recent
        p.raise_to("critical" if recent >= self.s.crash_critical_count else "warning", how)

    def _check_vanished(self, now: float) -> None:
        for proc in list(self.procs.values()):
            since = proc.suspect_since
            if since is None or proc.stopped or now - since < self.s.vanish_grace_s:
                continue
            proc.stopped = True
            proc.suspect_since = None
            self._unclean_exit(proc, proc.last_ts, proc.last_event, "vanished")
            if proc.boot_event is not None:
                self._problem(("unclean_exit",), {}).occur(proc.boot_event.ts or now, proc.boot_event, self.s.max_evidence)

    def _redis(self, event: Event, down: bool) -> None:
        ts = event.ts or 0.0
        p = self._problem(("redis",), {"component": "redis"})
        if isinstance(event, Process) and event.state == "redis_online":
            m = re.search(r"([\d.]+) sec downtime", event.message)
            downtime = float(m.group(1)) if m else 0.0
            p.facts["longest_downtime_s"] = max(downtime, float(p.facts.get("longest_downtime_s", 0.0)))  # type: ignore[arg-type]
            p.occur(ts, event, self.s.max_evidence)
            if downtime >= self.s.redis_down_critical_s:
                p.raise_to("critical", "redis_down")
            self.redis_outage = None
            return
        previous = p.last_ts
        p.count += 1
        p.occur(ts, event, self.s.max_evidence)
        if not down:
            p.raise_to("warning", "redis_slow")
            return
        if self.redis_outage is None or previous is None or ts - previous > self.s.window_s:
            self.redis_outage = ts
        p.facts["outage_s"] = ts - self.redis_outage
        p.raise_to("critical" if ts - self.redis_outage >= self.s.redis_down_critical_s else "warning", "redis_error")

    # ----- metrics ------------------------------------------------------------------------
    def _metric(self, m: Metric) -> None:
        if m.ts is None or m.name not in ("sidekiq_retry_size", "sidekiq_dead_size", "sidekiq_queue_latency_seconds"):
            return
        queue = m.labels.get("queue", "")
        series = self.metrics.setdefault((m.name, queue), deque(maxlen=1000))
        series.append((m.ts, m.value))
        while series and series[0][0] <= m.ts - self.s.window_s:
            series.popleft()
        s = self.s
        if m.name == "sidekiq_queue_latency_seconds":
            if len(series) < 2:
                return
            p = self._problem(("latency", queue), {"queue": queue, "problem": "queue_latency"})
            low = min(v for _, v in list(series)[-2:])  # two samples in a row: one slow poll is not latency
            sev = "critical" if low >= s.latency_critical_s else "warning" if low >= s.latency_warning_s else None
            value, signal = low, "queue_latency"
        else:
            growth = m.value - min(v for _, v in series)
            if m.name == "sidekiq_retry_size":
                sev = "critical" if growth >= s.retry_growth_critical else "warning" if growth >= s.retry_growth_warning else None
                p, signal = self._problem(("retry_set",), {"problem": "retry_set_growth"}), "retry_set_growth"
            else:
                sev = "critical" if growth >= s.dead_burst_min else None
                p, signal = self._problem(("dead_set",), {"problem": "dead_set_growth"}), "dead_set_growth"
            value = growth
        if sev is not None:
            p.count += 1
            p.occur(m.ts, m, s.max_evidence)
            p.facts.update(value=value, metric=m.name)
            p.raise_to(sev, signal)

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

    def _finding(self, key: Tuple[str, ...], p: _Problem) -> Optional[Finding]:
        if p.severity is None or p.first_ts is None or p.last_ts is None:
            return None
        new = p.count - p.reported_count
        if new <= 0 and _rank(p.severity) <= _rank(p.reported_severity):
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


# ----- triage text ----------------------------------------------------------------------------
# (error class pattern, likely cause, prevention) — the first hour of an expert's reading of the error
HINTS: Tuple[Tuple["re.Pattern[str]", str, str], ...] = (
    (re.compile(r"RecordNotFound|RecordInvalid|Deserialization"),
     "the record was deleted or changed before the job ran (enqueued inside a transaction that rolled back or before commit, or deleted since)",
     "enqueue in after_commit (or `perform_later` after the transaction); rescue ActiveRecord::RecordNotFound and return when a missing record is expected"),
    (re.compile(r"ConnectionTimeoutError|ConnectionNotEstablished|too many clients|remaining connection slots"),
     "the database pool is smaller than Sidekiq's concurrency, or the database refuses connections (see the pool_exhaustion detector)",
     "make the database pool >= Sidekiq concurrency (+ other threads); check max_connections / PgBouncer limits"),
    (re.compile(r"Timeout|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|SSL|Net::|HTTP|Faraday|Socket|BadGateway|Unavailable|Gateway"),
     "a downstream dependency (HTTP API, mail, payment or search service) is slow or down",
     "give every network call a short timeout and a circuit breaker; make the job idempotent so retries are safe"),
    (re.compile(r"NoMethodError|NameError|ArgumentError|TypeError|KeyError|NoMatchingPattern|FrozenError|ZeroDivision"),
     "a code bug (nil or wrong argument), usually from a recent deploy or a changed job payload",
     "add a test for the payload the job receives; keep job arguments simple (ids, strings) and backward compatible across deploys"),
    (re.compile(r"Redis|ConnectionPool::TimeoutError"),
     "Redis is unreachable or its connection pool is exhausted",
     "size the Redis pool for the threads that share it; monitor Redis memory, maxclients and latency"),
)
GEM_PATH = re.compile(r"/gems/|/rubies/|/lib/ruby/|/vendor/bundle/|/bundle/ruby/")
APP_PATH = re.compile(r"(?:^|/)(?:app|lib)/")
DEFAULT_MAX_RETRIES = 25


def top_app_frame(backtrace: Tuple[str, ...]) -> str:
    """The first frame in the app's own code (app/ or lib/, not inside a gem or Ruby)."""
    for frame in backtrace:
        if APP_PATH.search(frame) and not GEM_PATH.search(frame):
            return frame
    return ""


def retry_days_left(retry_count: Optional[int]) -> float:
    """Days Sidekiq keeps retrying after retry ``retry_count`` (delay count**4 + 15 + ~5*(count+1) s)."""
    start = 0 if retry_count is None else retry_count + 1
    return sum(c ** 4 + 15 + 4.5 * (c + 1) for c in range(start, DEFAULT_MAX_RETRIES)) / 86400.0


def _when(ts: Optional[float]) -> str:
    return to_iso(ts) or "?"


def failure_triage(p: _Problem, last_done: Optional[float], deploy) -> Tuple[str, Triage]:  # type: ignore[no-untyped-def]
    cls, err = p.subject.get("job_class", "?"), p.subject.get("error_class") or "an error with no class logged"
    queue = p.subject.get("queue", "default")
    sample = p.sample if isinstance(p.sample, Job) else None
    message = (sample.error_message if sample else "").split("\n")[0][:300]
    frame = top_app_frame(sample.backtrace) if sample else ""
    dead, jobs = p.dead_total, len(p.jobs)
    if dead:
        recovery = f"{dead} job(s) exhausted their retries and sit in the dead set: they will not run again unless retried by hand"
    elif p.recovered:
        recovery = f"{p.recovered} job(s) recovered on retry, {jobs} did not (yet)"
    else:
        rc = p.retry_max
        recovery = (f"no job recovered on retry (highest retry_count {rc if rc is not None else 'none: first attempts'}); "
                    f"with the default {DEFAULT_MAX_RETRIES} retries Sidekiq keeps retrying for ~{retry_days_left(rc):.0f} more days")
    signals = (("failing_100pct", "failing 100%"), ("retry_storm", "retry storm"), ("dead", "jobs dying"),
               ("rate_spike", "failure-rate spike"), ("new_error", "new error"))
    what = ", ".join(text for name, text in signals if name in p.signals) or "failing"
    title = f"Sidekiq {cls} {what}: {err}"
    succeeded = f"last success of {cls} at {_when(last_done)}" if last_done else f"no success of {cls} seen"
    summary = (f"{cls} failed {p.count} time(s) ({jobs} job(s)) with {err} between {_when(p.first_ts)} and {_when(p.last_ts)}; "
               f"{succeeded}; {recovery}.")
    cause = f"{err}: {message}" if message else err
    if frame:
        cause += f" — raised from {frame}"
    for pattern, hint, _ in HINTS:
        if pattern.search(err):
            cause += f". Likely: {hint}"
            break
    if p.new_reason:
        cause += f". This error is new ({p.new_reason})"
    if deploy is not None and p.first_ts is not None:
        cause += f"; it started {p.first_ts - deploy.ts:.0f} s after the deploy of {deploy.revision or 'a new release'} at {_when(deploy.ts)}: suspect that change"
    select = f"Sidekiq::RetrySet.new.select {{ |j| j.display_class == '{cls}' }}"
    containment = [
        f"Look at the failures: `{select}.first(5).map {{ |j| [j.jid, j['error_message'], j['retry_count']] }}`",
        f"Stop the bleeding if it keeps failing: disable {cls} (feature flag / early return), roll back the change or fix the dependency; "
        f"lower the concurrency of the processes serving queue '{queue}', or pause it (Sidekiq Pro/Enterprise: `Sidekiq::Queue.new('{queue}').pause!`)",
        f"Once fixed, re-run them in a controlled batch: `{select}.each(&:retry)`"
        + (f" and the dead ones: `Sidekiq::DeadSet.new.select {{ |j| j.display_class == '{cls}' }}.each(&:retry)`" if dead else ""),
        f"If these failures are expected and harmless, drop them instead: `{select}.each(&:delete)`",
    ]
    prevention = [hint for pattern, _, hint in HINTS if pattern.search(err)][:1] + [
        f"set `sidekiq_options retry:` to what {cls} can bear and clean up in `sidekiq_retries_exhausted`",
        "alert on the retry-set size and per-class failure rate (this detector) rather than on single failures",
    ]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def long_running_triage(p: _Problem, durations: RollingBaseline) -> Tuple[str, Triage]:
    cls = p.subject.get("job_class", "?")
    usual = durations.p95(cls)
    usual_text = f"its usual p95 is {usual:.1f} s" if usual is not None else "no usual duration known yet"
    parts = []
    if "stuck" in p.signals:
        parts.append(f"started but not finished for {float(p.facts.get('stuck_for_s', 0)):.0f} s while its process kept working")  # type: ignore[arg-type]
    if "slow" in p.signals:
        parts.append(f"took up to {float(p.facts.get('slowest_s', 0)):.0f} s")  # type: ignore[arg-type]
    if "interrupted" in p.signals:
        parts.append(f"was killed by {p.facts.get('interrupted')} shutdown(s) and pushed back to Redis")
    title = f"Sidekiq {cls} running far past its usual time" + (" (all threads stuck)" if "all_threads_stuck" in p.signals else "")
    summary = f"{cls} {'; '.join(parts) or 'ran long'} ({usual_text}); first {_when(p.first_ts)}, last {_when(p.last_ts)}."
    cause = ("a network call or lock wait without a timeout, or a job processing far more data than usual; "
             "a job longer than Sidekiq's shutdown timeout (-t, default 25 s) is killed and re-run at every deploy")
    containment = [
        "capture the thread backtraces: `kill -TTIN <pid>` (Sidekiq <= 7) or `kill -INFO <pid>` (8.x) and read the job's frames in the log",
        "quiet the process (`kill -TSTP <pid>`) and restart it if the job hangs; lower concurrency if it starves other queues",
        "check `Sidekiq::Workers.new.map { |_p, _t, w| w }.select { |w| w['run_at'] < Time.now.to_i - 600 }` for other long runners",
    ]
    prevention = ["give network calls and lock waits timeouts", "split big jobs into batches (find_in_batches) so each finishes well within the shutdown timeout",
                  "make the orchestrator's stop grace period >= Sidekiq -t + 5 s"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def process_triage(kind: str, p: _Problem) -> Tuple[str, Triage]:
    exits = p.facts.get("exits") or []
    if kind == "restart_loop":
        title = "Sidekiq processes restarting repeatedly"
        summary = f"{p.facts.get('boots_in_window')} Sidekiq boots within the window (last {_when(p.last_ts)})."
    else:
        title = "Sidekiq process exited without shutting down (crash or kill)"
        summary = f"{p.count} unclean exit(s), {p.facts.get('unclean_exits_in_window')} in the last window; last {_when(p.last_ts)}: {exits[-3:]}."
    cause = ("the kernel OOM killer or the orchestrator's SIGKILL (stop grace period shorter than Sidekiq -t + 5 s), a signal Sidekiq "
             "does not handle (SIGHUP from a closed terminal), or a boot error in a restart loop")
    containment = ["check the host for OOM kills (`journalctl -k | grep -i 'killed process'`, container exit code 137) and the process RSS",
                   "in-flight jobs of a killed process are lost with the open-source fetch: re-enqueue them from your records",
                   "if it is a boot error, roll back the deploy that introduced it"]
    prevention = ["lower concurrency or memory per job; MALLOC_ARENA_MAX=2 or jemalloc", "stop with TSTP then TERM and a grace period >= -t + 5 s",
                  "run Sidekiq under systemd/your orchestrator, never from a terminal (nohup)"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def redis_triage(p: _Problem) -> Tuple[str, Triage]:
    down = "redis_error" in p.signals or "redis_down" in p.signals
    title = "Sidekiq cannot reach Redis" if down else "Sidekiq's Redis connection is slow"
    outage = max(float(p.facts.get("outage_s", 0.0)), float(p.facts.get("longest_downtime_s", 0.0)))  # type: ignore[arg-type]
    summary = f"{p.count} Redis error line(s) between {_when(p.first_ts)} and {_when(p.last_ts)}; longest outage seen {outage:.0f} s."
    cause = ("Redis down, restarting, out of memory (`OOM command not allowed`), at maxclients, or unreachable over the network; "
             "a slow-RTT warning means a distant or CPU-starved Redis, or a CPU-saturated Sidekiq process")
    containment = ["`redis-cli -u $REDIS_URL ping` and `INFO memory`/`INFO clients`; fail over or restart Redis; free memory",
                   "jobs cannot be fetched or enqueued meanwhile: expect a backlog and retry bursts once it is back"]
    prevention = ["maxmemory-policy noeviction and memory alerts", "keep Redis in the same zone as Sidekiq", "size Sidekiq's Redis pools to its concurrency"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def metric_triage(kind: str, p: _Problem) -> Tuple[str, Triage]:
    value = p.facts.get("value")
    if kind == "latency":
        queue = p.subject.get("queue", "?")
        title = f"Sidekiq queue '{queue}' latency is high"
        summary = f"the oldest job in '{queue}' has waited {value} s (last {_when(p.last_ts)})."
        cause = "not enough capacity for the enqueue rate, long or stuck jobs occupying the threads, or processes down"
        containment = ["add processes/concurrency for this queue or pause the noisiest producer", "look for stuck jobs and retry storms (this detector)"]
    else:
        which = "retry" if kind == "retry_set" else "dead"
        title = f"Sidekiq {which} set growing fast"
        summary = f"the {which} set grew by {value} within the window (last {_when(p.last_ts)})."
        cause = "a job class failing in bulk (see the failure incidents of the same time)"
        containment = [f"group the {which} set by class: `Sidekiq::{'RetrySet' if which == 'retry' else 'DeadSet'}.new.map(&:display_class).tally`"]
    prevention = ["alert on queue latency and retry-set size, not only on errors"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)
