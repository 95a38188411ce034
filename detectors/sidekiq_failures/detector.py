"""Sidekiq failure patterns: failing job classes, retry storms, dead jobs, stuck jobs, Redis, crashes.

Goal: page when background work is really broken, never for the noise every busy Sidekiq makes.
A failure only counts once it is *settled unrecovered*, judged per job or per class:

    per job    its job (jid) died, or no ``done`` of that jid arrived within ``recovery_grace_s``
               of its last attempt;
    per class  the class is *failing*: >= total_failure_min_jobs distinct jobs of it failed again on
               a retry (a second failed attempt of the jid, or a logged ``retry_count``) within
               ``window_s`` and no ``done`` of the class in that window. Its pending failures are then
               unrecovered at once, and so is each later failure of the class, until a ``done`` of it:
               whatever the retry schedule (25 retries over weeks), retrying does not help.
    end        at the end of the input (``flush(None)``: the end of a scan, the daemon's shutdown),
               failures still within their grace are reported as *still failing at the end of the
               log* (signal and ``details["still_failing_at_end"]``) when their class has no
               ``done`` in the window; those of a class that succeeds are dropped (probably
               recovering on their retry).

A job that fails once and succeeds on its retry is therefore never an incident, however many of
them there are: its ``done`` is a success of the class, which also stops the class rule. The class
rule waits for failed *retries* on purpose: a burst of first attempts that all recover ~20 s later
looks the same until the retries run. A single flaky job is judged per job. Fewer failing jobs than
total_failure_min_jobs (say 3, every attempt failing) are judged per job: a warning (new error, or
still failing at the end of the log), critical only through a retry storm or a dead burst.

The daemon and a scan decide the same way on the same lines: the class rule runs on each failure
(event time), not on ``flush(until)``; only ``flush(None)`` reports what is still failing at the end.

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

    critical = page now: a class failing 100% over >= total_failure_min_jobs jobs (settled per job,
               or found failing by the class rule, or still failing at the end of the log); a retry storm;
               >= dead_burst_min dead-set additions in the window; Redis unreachable for
               >= redis_down_critical_s; >= crash_critical_count unclean exits in crash_window_s;
               every thread of a process stuck; retry set +retry_growth_critical or queue latency
               >= latency_critical_s.
    warning  = look today: a new error class with few failures; a rate spike; any dead job; a slow,
               stuck or repeatedly interrupted job; failures still failing at the end of the log with
               no success of their class (below the critical rules); a short Redis blip or slow RTT; one crash;
               a restart loop; moderate retry-set growth or latency.
    nothing  = recovered failures; a one-off failure of an error class already known; failures young
               at the end of the log in a class that succeeds in the window.

One incident per problem: findings are emitted per flush with the *new* failures only (the
pipeline adds counts up by fingerprint), and again when the severity rises. Subject keys:
``job_class``, ``error_class``, ``queue`` (when known) for failures; ``job_class`` + ``problem`` for
long-running jobs; ``component`` (+ ``problem``) for Redis and processes; ``problem`` (+ ``queue``) for
metrics. Baselines come from ``detectors.shared.baseline``, deploy markers from
``detectors.shared.deploys``.

The package: ``settings`` (the thresholds above), ``state`` (problems, failed jobs, outcome shares,
processes), ``health`` (``SidekiqHealth``: slow/stuck jobs, processes, Redis and metrics, a part this
detector owns), ``triage`` (titles and triage text).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from agent.events import Error, Event, Finding, Job, Metric, Process
from agent.timeparse import to_iso
from detectors.base import Detector, Settings
from detectors.shared.baseline import LastValues
from detectors.shared.deploys import DeployMarkers
from detectors.sidekiq_failures.health import SidekiqHealth
from detectors.sidekiq_failures.settings import SidekiqFailuresSettings
from detectors.sidekiq_failures.state import FailedJob, Outcomes, Problem, Problems, rank, remember
from detectors.sidekiq_failures.triage import failure_triage, long_running_triage, metric_triage, process_triage, redis_triage

__all__ = ["SidekiqFailuresDetector", "SidekiqFailuresSettings"]

#: the oldest pending failure's time when there is none: ``ts - _NONE_PENDING >= grace`` never holds
_NONE_PENDING = float("inf")


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
        self.problems = Problems(s.max_problems)
        self.failed: "OrderedDict[str, FailedJob]" = OrderedDict()  # jid -> attempts not yet settled
        # the last_ts of failed's first entry (_NONE_PENDING when it is empty), None when not known: feed's
        # settle test reads it on every line, and whatever may change failed (_job, _done's recovery,
        # _settle) sets it back to None
        self._oldest_pending_ts: Optional[float] = None
        self.settled: "OrderedDict[str, Tuple[Tuple[str, str], List[float]]]" = OrderedDict()  # for late recoveries
        self.dead_first: "OrderedDict[str, bool]" = OrderedDict()  # jids whose dead line came before their fail
        self.dead_jids: "OrderedDict[str, bool]" = OrderedDict()  # jids seen dead: a later fail line of theirs cannot recover
        self.retried: Dict[str, "OrderedDict[str, float]"] = {}  # class -> jids whose retry failed again -> when
        self.failing: "OrderedDict[str, float]" = OrderedDict()  # classes the class rule found failing -> last failure
        self.known_errors: "OrderedDict[Tuple[str, str], float]" = OrderedDict()  # (class, error) -> first seen
        self.new_keys: "OrderedDict[Tuple[str, str], str]" = OrderedDict()  # why a key counted as new when first seen
        self.last_done: Dict[str, float] = {}
        self.durations = LastValues(max_keys=s.max_problems, max_samples=200)  # read only for slow/stuck jobs
        self.outcomes = Outcomes(s.max_problems, s.spike_recent_jobs, s.spike_baseline_jobs)
        self.deploys = DeployMarkers(self.context.facts, max_keys=s.max_jobs_tracked)
        self.health = SidekiqHealth(s, self.context.facts, self.problems, self.durations)
        self._seq = 0
        # read on every event (hot path)
        self._grace = s.recovery_grace_s
        self._max_problems = s.max_problems
        self._slow_min_s = s.slow_min_s
        self._outcome_histories = self.outcomes._keys  # class -> outcomes (see _done)
        self._duration_table = self.durations._table  # class -> [durations, sorted or None] (see _done)

    # ----- input --------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is not None:
            now = self.now
            if now is None or ts > now:
                if now is None:
                    self.deploys.watch(ts)  # deploys only count as "before" what we watched
                self.now = ts
                # the oldest pending failure is first: settle only when it is old enough
                oldest = self._oldest_pending_ts
                if oldest is None:
                    failed = self.failed
                    oldest = self._oldest_pending_ts = next(iter(failed.values())).last_ts if failed else _NONE_PENDING
                if ts - oldest >= self._grace:
                    self._settle(ts, final=False)
        if type(event) is Job:  # the exact type first: start and done are nearly every line of a Sidekiq log
            state = event.state
            if state == "start":
                self.health.job_moved(event, True)
            elif state == "done":
                self.health.job_moved(event, False)
                self._done(event)
            else:
                self._job(event)
        elif isinstance(event, Job):
            self._job(event)
        elif isinstance(event, Process):
            self.health.process(event)
        elif isinstance(event, Error):
            self.health.error(event)
        elif event.kind == "deploy":
            self.deploys.observe(event)  # type: ignore[arg-type]
        elif isinstance(event, Metric):
            self.health.metric(event)

    def _remember(self, table: "OrderedDict", key, value) -> None:  # type: ignore[no-untyped-def, type-arg]
        remember(table, key, value, self.s.max_jobs_tracked)

    def _job(self, job: Job) -> None:
        """Any job line, step by step: the reference of feed's fast path for start and done lines
        (health's job_moved is its touch() + started()/finished() in one call)."""
        self._oldest_pending_ts = None  # a fail or dead line may change failed
        health = self.health
        health.touch(job)
        state = job.state
        if state == "start":
            health.started(job)
        elif state == "done":
            health.finished(job)
            self._done(job)
        elif state == "fail":
            self._fail(job)
        elif state == "dead":
            self._dead(job)

    # ----- jobs -----------------------------------------------------------------------------
    def _done(self, job: Job) -> None:
        """A done line, its process touched and its running entry dropped by the caller.

        Hot path (every finished job): settings read once in __init__, and the per-class updates
        of Outcomes.update and LastValues.update inlined for a class they already hold."""
        cls = job.job_class
        ts = job.ts
        if ts is not None:
            last_done = self.last_done
            if cls not in last_done and len(last_done) >= self._max_problems:
                last_done.pop(next(iter(last_done)))  # room for a new class: the oldest one goes
            last_done[cls] = ts
            if self.failing:
                self.failing.pop(cls, None)  # a success: the class works again, back to per-job judgement
            history = self._outcome_histories.get(cls)
            if history is None:
                self.outcomes.update(cls, False)
            else:
                history.append(False)  # Outcomes.update of a known class
        jid = job.jid
        if jid:
            failed = self.failed
            if jid in failed:
                self._oldest_pending_ts = None
                known = self.problems.get(failed.pop(jid).key)
                if known is not None:
                    known.recovered += 1
            elif jid in self.settled:
                self._late_recovery(jid)
        elapsed = job.elapsed_s
        if elapsed is not None and ts is not None:
            if not elapsed < self._slow_min_s:  # the same test check_slow starts with
                self.health.check_slow(job)
            entry = self._duration_table.get(cls)
            if entry is None:
                self.durations.update(cls, elapsed)
            else:  # LastValues.update of a known key
                self._duration_table.move_to_end(cls)
                entry[0].append(float(elapsed))
                entry[1] = None

    def _fail(self, job: Job) -> None:
        self.health.failure_logged(job.ts)
        self.health.finished(job)
        if job.error_class == "Sidekiq::Shutdown":  # killed by a deploy/restart and pushed back: not a failure
            self.health.interrupted(job)
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
        if jid in self.dead_jids:  # the fail line of the attempt that sent it to the dead set: no recovery to wait for
            self._unrecovered(self.failed.pop(jid), dead=None)
            return
        if len(pending.attempts) > 1 or job.retry_count is not None:  # a retry failed again: retrying does not help
            self._judge_class(job.job_class, jid, job.ts)
        elif self._is_failing(job.job_class, job.ts):
            self._unrecovered(self.failed.pop(jid), dead=None)

    def _is_failing(self, cls: str, ts: Optional[float]) -> bool:
        """Whether the class rule holds for ``cls``: it lapses after ``window_s`` without a failure of the class."""
        since = self.failing.get(cls)
        if since is None:
            return False
        now = ts if ts is not None else (self.now or 0.0)
        if now - since > self.s.window_s:
            del self.failing[cls]
            return False
        self.failing[cls] = now
        return True

    def _judge_class(self, cls: str, jid: str, ts: Optional[float]) -> None:
        """The class rule: >= total_failure_min_jobs jobs whose retry failed again and no success of the class in
        ``window_s`` is a failing class, whatever the retry schedule: its failures are unrecovered now."""
        s = self.s
        now = ts if ts is not None else (self.now or 0.0)
        retried = self.retried.get(cls)
        if retried is None:
            retried = self.retried[cls] = OrderedDict()
            if len(self.retried) > s.max_problems:
                self.retried.pop(next(iter(self.retried)))
        retried[jid] = now
        retried.move_to_end(jid)
        while len(retried) > s.total_failure_min_jobs:  # only the newest few matter: are there enough in the window?
            retried.popitem(last=False)
        if self._is_failing(cls, now):
            self._unrecovered(self.failed.pop(jid), dead=None)
            return
        last_done = self.last_done.get(cls)
        if last_done is not None and last_done > now - s.window_s:
            return  # the class also succeeds: its failures are judged per job
        if sum(1 for t in retried.values() if t > now - s.window_s) < s.total_failure_min_jobs:
            return
        self._remember(self.failing, cls, now)
        for other in [j for j, pending in self.failed.items() if pending.key[0] == cls]:  # once, when the class is found failing
            self._unrecovered(self.failed.pop(other), dead=None)

    def _dead(self, job: Job) -> None:
        self.health.dead_logged(job.ts)
        if job.jid:
            self._remember(self.dead_jids, job.jid, True)
        pending = self.failed.pop(job.jid, None)
        if pending is None:
            known = self.settled.get(job.jid)
            pending = FailedJob(known[0] if known else (job.job_class, job.error_class))
            if job.jid and not known:
                self._remember(self.dead_first, job.jid, True)
        self._unrecovered(pending, dead=job)

    def _settle(self, now: float, final: bool) -> None:
        """Failed jobs with no success ``recovery_grace_s`` after their last attempt are unrecovered.

        ``final`` (the end of the input): the failures still within their grace are reported as still
        failing at the end of the log when their class has no success in the window; those of a class
        that does succeed are probably about to recover and are dropped."""
        grace = self.s.recovery_grace_s
        self._oldest_pending_ts = None
        while self.failed:
            jid, pending = next(iter(self.failed.items()))
            if now - pending.last_ts < grace:
                if not final:
                    break
                del self.failed[jid]
                last_done = self.last_done.get(pending.key[0])
                if last_done is None or last_done <= now - self.s.window_s:
                    self._unrecovered(pending, dead=None, at_end=True)
                continue
            del self.failed[jid]
            self._unrecovered(pending, dead=None)

    def _unrecovered(self, pending: FailedJob, dead: Optional[Job], at_end: bool = False) -> None:
        s = self.s
        p = self.problems.open(pending.key, {"job_class": pending.key[0], "error_class": pending.key[1]})
        if at_end:
            p.facts["still_failing_at_end"] = True
            p.raise_to("warning", "still_failing_at_end")
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
            earlier = self.settled.get(jid)
            times = earlier[1] if earlier is not None and earlier[0] == pending.key else []
            self._remember(self.settled, jid, (pending.key, times + [j.ts or 0.0 for j in pending.attempts]))
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
        if (len(jobs) >= s.total_failure_min_jobs and not succeeded) or now - self.failing.get(cls, float("-inf")) <= s.window_s:
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
        self.health.check_stuck()
        self.health.check_vanished(self.now if until is None else min(until, self.now))
        out: List[Finding] = []
        for key, p in self.problems.items():
            finding = self._finding(key, p)
            if finding is not None:
                out.append(finding)
            if p.last_ts is not None and self.now - p.last_ts > self.s.resolve_after_s:
                self.problems.forget(key)
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
