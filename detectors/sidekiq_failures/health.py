"""Sidekiq health besides job failures: slow and stuck jobs, process exits and restart loops, Redis
errors and outages, and the retry/dead/latency metrics.

``SidekiqHealth`` is a part owned by ``SidekiqFailuresDetector`` (see detector.py for the severity
rules). It keeps its own state (running jobs, processes, Redis outage, metric series) and opens its
problems in the detector's ``Problems`` table, so every finding still comes from one detector with
the same subjects. It reads the class durations the detector records, never writes them.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from typing import Deque, Dict, List, Optional, Tuple

from agent.events import Error, Event, Job, Metric, Process
from agent.timeparse import to_iso
from detectors.base import AppFacts
from detectors.shared.baseline import LastValues
from detectors.sidekiq_failures.settings import SidekiqFailuresSettings
from detectors.sidekiq_failures.state import ProcessState, Problem, Problems, remember

REDIS_ERROR = re.compile(r"^Redis(?:Client)?::|Error connecting to Redis|connect\(2\) for .*:6379|Errno::ECONNREFUSED.*6379")

_NOBODY = object()  # matches no pid or source: touch()'s cache before its first line


class SidekiqHealth:
    """Long-running jobs, processes, Redis and metrics problems of ``SidekiqFailuresDetector``."""

    def __init__(self, settings: SidekiqFailuresSettings, facts: AppFacts, problems: Problems,
                 durations: LastValues) -> None:
        self.s = settings
        self.facts = facts
        self.problems = problems
        self.durations = durations  # per job class, kept by the detector
        self.running: "OrderedDict[Tuple[str, str, str], Job]" = OrderedDict()
        self.stuck_reported: "OrderedDict[str, bool]" = OrderedDict()
        self.procs: "OrderedDict[Tuple[str, str], ProcessState]" = OrderedDict()
        self.unclean: Deque[float] = deque(maxlen=1000)
        self.boots: Deque[float] = deque(maxlen=1000)
        self.last_boot: Dict[str, Tuple[str, float]] = {}
        self.redis_outage: Optional[float] = None
        self.metrics: Dict[Tuple[str, str], Deque[Tuple[float, float]]] = {}
        # when the logs last showed a failed attempt / a dead job: set-size metrics are then an
        # echo of what the per-class incidents already say, not news worth a page of their own
        self.log_fail_at: Optional[float] = None
        self.log_dead_at: Optional[float] = None
        # the process of the last line touch() saw; procs only changes in touch(), which resets it
        self._touched_pid: object = _NOBODY
        self._touched_source: object = _NOBODY
        self._touched: Optional[ProcessState] = None
        self._max_jobs = settings.max_jobs_tracked

    def _remember(self, table: "OrderedDict", key, value) -> None:  # type: ignore[no-untyped-def, type-arg]
        remember(table, key, value, self.s.max_jobs_tracked)

    # ----- what the failure part saw --------------------------------------------------------
    def failure_logged(self, ts: Optional[float]) -> None:
        self.log_fail_at = ts or self.log_fail_at

    def dead_logged(self, ts: Optional[float]) -> None:
        self.log_dead_at = ts or self.log_dead_at

    # ----- long-running and stuck jobs ----------------------------------------------------
    def started(self, job: Job) -> None:
        running = self.running
        running[(job.source, job.pid, job.tid)] = job
        if len(running) > self.s.max_jobs_tracked:
            running.popitem(last=False)

    def job_moved(self, job: Job, started: bool) -> None:
        """``touch(job)`` then ``started(job)`` (or ``finished(job)``), step for step, in one call
        (hot path: every start and done line)."""
        pid, source = job.pid, job.source
        if pid == self._touched_pid and source == self._touched_source:
            proc = self._touched  # touch()'s own fast path
            ts = job.ts
            if ts is not None and ts >= proc.last_ts:  # type: ignore[union-attr]
                proc.last_ts = ts  # type: ignore[union-attr]
                proc.last_event = job  # type: ignore[union-attr]
            proc.suspect_since = None  # type: ignore[union-attr]
        else:
            self.touch(job)
        running = self.running
        if started:
            running[(source, pid, job.tid)] = job
            if len(running) > self._max_jobs:
                running.popitem(last=False)
        else:
            running.pop((source, pid, job.tid), None)

    def finished(self, job: Job) -> None:
        """A job's done or fail line: it no longer runs."""
        self.running.pop((job.source, job.pid, job.tid), None)

    def interrupted(self, job: Job) -> None:
        """A job killed by a deploy/restart (``Sidekiq::Shutdown``) and pushed back: not a failure."""
        p = self._long_running(job.job_class)
        p.facts["interrupted"] = int(p.facts.get("interrupted", 0)) + 1  # type: ignore[arg-type]
        p.occur(job.ts or 0.0, job, self.s.max_evidence)
        if p.facts["interrupted"] >= self.s.interrupted_min:  # type: ignore[operator]
            p.raise_to("warning", "interrupted")
            p.count += 1

    def _long_running(self, cls: str) -> Problem:
        return self.problems.open(("long_running", cls), {"job_class": cls, "problem": "long_running"})

    def _threshold(self, cls: str, floor: float, fallback: float) -> float:
        if self.durations.count(cls) >= self.s.slow_min_samples:
            return max(floor, self.s.slow_factor * (self.durations.p95(cls) or 0.0))
        return fallback

    def check_slow(self, job: Job) -> None:
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

    def check_stuck(self) -> None:
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
            limit = self.s.stuck_critical_count or self.facts.sidekiq_concurrency or 5
            if per_proc[(source, pid)] >= limit:
                p.raise_to("critical", "all_threads_stuck")

    # ----- processes and Redis ------------------------------------------------------------
    def touch(self, event: Event) -> ProcessState:
        """A line from a process: it is alive."""
        pid = getattr(event, "pid", "")
        source = event.source
        if pid == self._touched_pid and source == self._touched_source:
            proc = self._touched  # hot path: the same process as the line before (still in procs: see below)
        else:
            key = (source, pid)
            proc = self.procs.get(key)
            if proc is None:
                proc = ProcessState(pid, source)
                self._remember(self.procs, key, proc)  # the only place a process enters or leaves procs
            self._touched_pid, self._touched_source, self._touched = pid, source, proc
        ts = event.ts
        if ts is not None and ts >= proc.last_ts:
            proc.last_ts = ts
            proc.last_event = event
        proc.suspect_since = None  # it is alive
        return proc

    def process(self, event: Process) -> None:
        if event.component != "sidekiq":
            return  # Puma's boots and worker kills are another detector's business
        proc = self.touch(event)
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
                p = self.problems.open(("restart_loop",), {"component": "sidekiq", "problem": "restart_loop"})
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

    def _drop_running(self, proc: ProcessState) -> List[Job]:
        lost = [k for k in self.running if k[0] == proc.source and k[1] == proc.pid]
        return [self.running.pop(k) for k in lost]

    def _unclean_exit(self, proc: ProcessState, ts: float, event: Optional[Event], how: str) -> None:
        lost = self._drop_running(proc)
        self.unclean.append(ts)
        p = self.problems.open(("unclean_exit",), {"component": "sidekiq", "problem": "unclean_exit"})
        p.count += 1
        p.occur(ts, event, self.s.max_evidence)
        kinds = p.facts.setdefault("exits", [])  # type: ignore[assignment]
        if len(kinds) < 50:  # type: ignore[arg-type]
            kinds.append({"pid": proc.pid, "how": how, "at": to_iso(ts), "was_shutting_down": proc.shutting,  # type: ignore[union-attr]
                          "jobs_in_flight": sorted({j.job_class for j in lost})})
        recent = sum(1 for t in self.unclean if ts - self.s.crash_window_s < t <= ts)
        p.facts["unclean_exits_in_window"] = recent
        p.raise_to("critical" if recent >= self.s.crash_critical_count else "warning", how)

    def check_vanished(self, now: float) -> None:
        for proc in list(self.procs.values()):
            since = proc.suspect_since
            if since is None or proc.stopped or now - since < self.s.vanish_grace_s:
                continue
            proc.stopped = True
            proc.suspect_since = None
            self._unclean_exit(proc, proc.last_ts, proc.last_event, "vanished")
            if proc.boot_event is not None:
                self.problems.open(("unclean_exit",), {}).occur(proc.boot_event.ts or now, proc.boot_event, self.s.max_evidence)

    def error(self, event: Error) -> None:
        if event.pid and event.origin == "sidekiq":
            self.touch(event)
        text = f"{event.error_class}: {event.message}"
        if REDIS_ERROR.search(text) or (event.origin == "sidekiq" and event.error_class == "ConnectionPool::TimeoutError"):
            self._redis(event, down=True)

    def _redis(self, event: Event, down: bool) -> None:
        ts = event.ts or 0.0
        p = self.problems.open(("redis",), {"component": "redis"})
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
    def metric(self, m: Metric) -> None:
        if m.ts is None or m.name not in ("sidekiq.retry_size", "sidekiq.dead_size", "sidekiq.queue_latency_s"):
            return
        queue = m.labels.get("queue", "")
        series = self.metrics.setdefault((m.name, queue), deque(maxlen=1000))
        series.append((m.ts, m.value))
        while series and series[0][0] <= m.ts - self.s.window_s:
            series.popleft()
        s = self.s
        if m.name == "sidekiq.queue_latency_s":
            if len(series) < 2:
                return
            p = self.problems.open(("latency", queue), {"queue": queue, "problem": "queue_latency"})
            low = min(v for _, v in list(series)[-2:])  # two samples in a row: one slow poll is not latency
            sev = "critical" if low >= s.latency_critical_s else "warning" if low >= s.latency_warning_s else None
            value, signal = low, "queue_latency"
        else:
            growth = m.value - min(v for _, v in series)
            seen_in_logs = self.log_fail_at if m.name == "sidekiq.retry_size" else self.log_dead_at
            if seen_in_logs is not None and m.ts - seen_in_logs <= s.window_s:
                return  # the logs show these failures per job class: those incidents already page
            if m.name == "sidekiq.retry_size":
                sev = "critical" if growth >= s.retry_growth_critical else "warning" if growth >= s.retry_growth_warning else None
                p, signal = self.problems.open(("retry_set",), {"problem": "retry_set_growth"}), "retry_set_growth"
            else:
                sev = "critical" if growth >= s.dead_burst_min else None
                p, signal = self.problems.open(("dead_set",), {"problem": "dead_set_growth"}), "dead_set_growth"
            value = growth
        if sev is not None:
            p.count += 1
            p.occur(m.ts, m, s.max_evidence)
            p.facts.update(value=value, metric=m.name)
            p.raise_to(sev, signal)
