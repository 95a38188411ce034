"""Connection-pool exhaustion: the app's ActiveRecord pool, the database server's
connection limit, PgBouncer's limits, and connection_pool (Redis) pools.

Goal: one incident per exhausted pool (subject ``{"pool": …, "error_class": …}``), not
one per endpoint: the endpoints and job classes that failed are the blast radius and
are listed in the details, with the requests that held connections meanwhile.

Signals (error wordings of Rails 3 to 8, Sidekiq, Postgres, MySQL, PgBouncer)::

    ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool
        within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use)   Rails 5+
    … could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)  Rails 4
    … within 5 seconds (waited 5.008 seconds). The max pool size is currently 25; …       Rails 3
    ActiveRecord::ExclusiveConnectionTimeoutError (could not obtain ownership of all database connections …)
    PG::ConnectionBad / ActiveRecord::ConnectionNotEstablished: FATAL:  sorry, too many clients already
    …  FATAL:  remaining connection slots are reserved for …  (also as Postgres' own log line)
    Mysql2::Error: Too many connections  |  … already has more than 'max_user_connections' …
    no more connections allowed (max_client_conn) | query_wait_timeout   (PgBouncer, and its clients)
    ConnectionPool::TimeoutError: Waited 1 sec, 0/5 available      ("Waited 1 sec": Sidekiq's Redis pool)
    Sidekiq ``fail: 5.002 sec`` + the ConnectionTimeoutError (a ``Job`` with ``error_class``)

Pools: ``database`` (the app-side ActiveRecord pool), ``database_server`` (Postgres
max_connections / MySQL max_connections), ``pgbouncer``, ``redis`` (connection_pool gem).
Metric samples (Puma ``backlog``/``pool_capacity``, ActiveRecord ``pool.stat``, connection
counts; names in metrics.py) saturated for ``metric_sustained_samples`` in a
row are warnings of their own (subject ``{"pool": …, "metric": …}``) and are summarised in
the error incident of the same time (``metrics_peak``).

Severity rule: **critical** when errors are sustained: at least ``critical_errors``
within any ``critical_window_s``, or at least ``critical_share`` of the requests that
completed in the incident window with at least ``share_min_errors`` errors. Anything
less is a **warning**: a single isolated timeout, including one during a deploy or
restart. ExclusiveConnectionTimeoutError alone (a deploy/reload symptom) and metric-only
findings are warnings at most. An incident closes after ``episode_gap_s`` without errors.

Counting: a failure is counted once. Rails' FATAL block and lograge's ``error=`` share
the request id; a Sidekiq ``fail`` line, its error-handler record and ActiveJob's
``Error performing`` line pair up by jid or by pid within ``job_pair_tolerance_s``.
The server's own log (Postgres, PgBouncer) is counted only when no app-side error of
that pool was seen, as it reports the same refused connections.

False-positive risks:
* a one-off ConnectionTimeoutError at boot or during a deploy/restart (old and new
  processes, a slow first connection): reported as a warning, with the deploy named;
* statement timeouts (``PG::QueryCanceled … statement timeout``, ``ActiveRecord::QueryCanceled``,
  Rack::Timeout) are NOT pool exhaustion and do not match; slow queries appear only as
  the connection holders of a real pool incident;
* ``ActiveRecord::ConnectionNotEstablished`` / ``PG::ConnectionBad`` for a database that is
  down or unreachable (``Connection refused``, ``could not translate host name``) is a
  different problem: only the too-many-clients / reserved-slots wordings count;
* ``ConnectionPool::TimeoutError`` is raised by any connection_pool (Rails cache,
  ActionCable, HTTP clients): "Waited 1 sec" points at Sidekiq's Redis pool, other
  waits are reported as a connection_pool incident with the wait time;
* a pool of the database server at its limit can be an intended, healthy PgBouncer set-up:
  that metric signal is a warning only; ``db.connections`` at the pool size only says the
  pool grew to its maximum once (idle connections stay open) and is no signal at all;
* an ActiveJob job run by Sidekiq logs its failure twice (ActiveJob's ``Error performing``
  in the Rails log, Sidekiq's ``fail``); they pair by pid and time, so clock skew between
  the two files of more than ``job_pair_tolerance_s`` counts it twice.

Time order (logs are merged, clocks skew, a line can carry any stamp): an event without a
finite time is ignored. An episode never spans more than ``max_episode_s``. An error (or
saturated metric sample) of an open episode's pool that is older than the episode's
start minus ``episode_gap_s``, or that would stretch the episode past ``max_episode_s``
back in time, is *late*: it is dropped from all episode arithmetic and counted in
``late_dropped`` (a line stamped a year early must not drag an incident's start back a
year). One more than ``episode_gap_s`` after the episode's last error closes it, as does
one more than ``max_episode_s`` after its first (a long outage is then reported as
successive findings of the same subject, which update one incident). Known limit: an
error stamped far in the *future* opens an episode that later, correctly stamped errors
of that pool cannot join (they are late) until a flush closes it.
"""
from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from agent.events import Deploy, Error, Event, Evidence, Finding, Job, Metric, Process, Request
from agent.settings import setting
from detectors.base import Detector, Settings
from detectors.shared.deploys import DeployMarkers
from detectors.pool_exhaustion.metrics import PoolMetrics
from detectors.pool_exhaustion.signals import Signal, classify
from detectors.pool_exhaustion.state import Episode
from detectors.pool_exhaustion.triage import triage_for

_isfinite = math.isfinite
SERVER_ORIGINS = frozenset({"postgres", "pgbouncer", "mysql"})
CLOSED_JOB_STATES = frozenset({"done", "fail"})
BOOT_STATES = frozenset({"boot", "worker_boot"})


@dataclass(frozen=True)
class PoolExhaustionSettings(Settings):
    critical_errors: int = setting(5, min=1)  # errors within critical_window_s that make it critical
    critical_window_s: float = setting(60.0, above=0.0)
    critical_share: float = setting(0.05, min=0.0, max=1.0)  # errors / completed requests in the incident window
    share_min_errors: int = setting(3, min=1)  # the share rule needs at least this many errors
    min_errors: int = setting(1, min=1)  # fewer errors than this: no finding at all
    episode_gap_s: float = setting(300.0, above=0.0)  # quiet time that closes an incident
    max_episode_s: float = setting(7200.0, above=0.0)  # longest span of one episode (the per-second request counters' reach)
    deploy_window_s: float = setting(120.0, min=0.0)  # errors starting this soon after a deploy/restart are "during a deploy"
    holder_min_ms: float = setting(1000.0, min=0.0)  # a request or job this long may have held a connection
    holder_min_db_ms: float = setting(500.0, min=0.0)  # ... if it spent this long in ActiveRecord (when the log says)
    holder_lead_s: float = setting(30.0, min=0.0)  # holders that ended this long before the first error still count
    top_n: int = setting(5, min=1)  # endpoints, job classes, holders listed
    evidence_samples: int = setting(3, min=1)  # error lines quoted per incident
    job_pair_tolerance_s: float = setting(0.5, min=0.0)
    metric_sustained_samples: int = setting(3, min=1)
    pg_reserved_slots: int = setting(3, min=0)  # superuser_reserved_connections
    max_tracked_requests: int = setting(4096, min=1)  # request ids remembered for correlation
    max_request_seconds: int = setting(7200, min=1)  # per-second request counters kept
    max_holders: int = setting(512, min=1)
    max_keys_per_incident: int = setting(200, min=1)  # distinct endpoints / job classes / pids counted

class PoolExhaustionDetector(Detector):
    """Finds exhausted connection pools from error lines, job failures and pool metrics."""

    name = "pool_exhaustion"
    kinds = frozenset({"error", "request", "job", "metric", "deploy", "process"})
    settings_type = PoolExhaustionSettings

    def __init__(self, settings=None, context=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings, context)
        self.s: PoolExhaustionSettings = self.settings  # type: ignore[assignment]
        self.deploys = DeployMarkers(self.context.facts)
        self.episodes: Dict[Tuple[str, str, str], Episode] = {}
        self.requests: "OrderedDict[str, Request]" = OrderedDict()  # request id -> Completed request
        self.failed_rids: "OrderedDict[str, Tuple[str, str, str]]" = OrderedDict()  # rid -> episode key
        self.per_second: "OrderedDict[int, int]" = OrderedDict()  # completed requests per second
        self.holders: Deque[Tuple[float, float, float, Dict[str, object], Evidence]] = deque(maxlen=self.s.max_holders)
        self.job_failures: Deque[Dict[str, object]] = deque(maxlen=256)
        self.metrics = PoolMetrics(self.s.metric_sustained_samples, self.s.pg_reserved_slots)
        self.active_pids: "OrderedDict[Tuple[str, str], float]" = OrderedDict()  # (web|jobs, pid) -> last seen
        # the newest entry of active_pids (written only by _active): a line of the same process updates it in place
        self._newest_tier, self._newest_pid, self._newest_key = "", "", ("", "")
        self.pending: List[Finding] = []  # findings of episodes closed between flushes
        self.restarts: Deque[Tuple[float, str]] = deque(maxlen=64)  # (time, component) of process boots
        self.late_dropped = 0  # errors/samples too far behind their open episode (see "Time order")
        # settings read on every request or job line (hot path)
        self._holder_min_ms = self.s.holder_min_ms
        self._holder_min_db_ms = self.s.holder_min_db_ms
        self._max_request_seconds = self.s.max_request_seconds
        self._max_tracked_requests = self.s.max_tracked_requests

    # ------------------------------------------------------------------ input
    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is None or not _isfinite(ts):
            return
        of = type(event)  # the two kinds of every line first (hot path); any other type: the isinstance chain
        if of is Job:
            # _on_job inlined (hot path: every job line), with _active's fast path; a start line tells nothing more
            pid = event.pid  # type: ignore[attr-defined]
            if pid:
                if pid == self._newest_pid and self._newest_tier == "jobs":
                    self.active_pids[self._newest_key] = ts or 0.0
                else:
                    self._active("jobs", pid, ts or 0.0)
            state = event.state  # type: ignore[attr-defined]
            if state == "done":  # most lines past a start: only a long job matters (_on_job_end's holder test)
                elapsed = event.elapsed_s  # type: ignore[attr-defined]
                if elapsed is not None and elapsed * 1000.0 >= self._holder_min_ms:
                    self._on_job_end(event)  # type: ignore[arg-type]
            elif state != "start":
                self._on_job_end(event)  # type: ignore[arg-type]
        elif of is Request:
            self._on_request(event)  # type: ignore[arg-type]
        elif isinstance(event, Error):
            signal = classify(event.error_class, event.message)
            if signal is not None:
                self._on_error(event, signal)
        elif isinstance(event, Request):
            self._on_request(event)
        elif isinstance(event, Job):
            self._on_job(event)
        elif isinstance(event, Metric):
            self._on_metric(event)
        elif isinstance(event, Deploy):
            self.deploys.observe(event)
        elif isinstance(event, Process) and event.state in BOOT_STATES:
            self.restarts.append((event.ts, event.component or "process"))  # boot-time timeouts are expected

    def _on_error(self, event: Error, signal: Signal) -> None:
        if event.origin in SERVER_ORIGINS:
            ep = self._occurrence(signal, event, server=True)
            if ep is not None:
                ep.bump(ep.by_origin, event.origin)
            return
        if event.origin in ("sidekiq", "activejob") or event.job_class or event.jid:
            if self._paired_job_failure(event.origin or "job-error", event.pid, event.ts, event.jid, event.job_class, signal):
                return
            ep = self._occurrence(signal, event)
            if ep is None:
                return
            ep.bump(ep.by_origin, event.origin or "job")
            if event.job_class:
                ep.bump(ep.job_classes, event.job_class)
            return
        rid = event.request_id
        if rid and rid in self.failed_rids:
            return  # lograge's error= already counted this request
        request = self.requests.get(rid) if rid else None
        ep = self._occurrence(signal, event, pid=event.pid or (request.pid if request is not None else ""))
        if ep is None:
            return
        ep.bump(ep.by_origin, event.origin or "rails")
        endpoint = event.endpoint or (request.endpoint if request is not None else "")
        ep.bump(ep.endpoints, endpoint or (f"{request.method} {request.path}".strip() if request is not None else "") or "(unknown)")
        if rid:
            self._remember(self.failed_rids, rid, ep.key)
            if request is not None:
                self._failed_request(ep, request)

    def _on_request(self, r: Request) -> None:
        # hot path (every request): _active's fast path and _remember inlined, settings read in __init__
        ts = r.ts or 0.0
        pid = r.pid
        if pid:
            if pid == self._newest_pid and self._newest_tier == "web":
                self.active_pids[self._newest_key] = ts
            else:
                self._active("web", pid, ts)
        second = int(ts)
        per_second = self.per_second
        seen = per_second.get(second)
        if seen is not None:
            per_second[second] = seen + 1  # a second already counted: the table does not grow
        else:
            per_second[second] = 1
            if len(per_second) > self._max_request_seconds:
                per_second.popitem(last=False)
        if r.error:
            cls, _, message = r.error.partition(": ")
            signal = classify(cls, message)
            if signal is not None and not (r.request_id and r.request_id in self.failed_rids):
                ep = self._occurrence(signal, r)
                if ep is None:
                    return
                ep.bump(ep.by_origin, "lograge")
                ep.bump(ep.endpoints, r.endpoint or f"{r.method} {r.path}".strip() or "(unknown)")
                self._failed_request(ep, r)
                if r.request_id:
                    self._remember(self.failed_rids, r.request_id, ep.key)
                return
        rid = r.request_id
        if rid:
            key = self.failed_rids.get(rid)
            if key is not None and key in self.episodes:
                self._failed_request(self.episodes[key], r)  # the Completed line came after the error
                return
            requests = self.requests  # _remember(self.requests, rid, r), inlined
            if rid in requests:
                requests.move_to_end(rid)  # a new id is put last by the assignment itself
            requests[rid] = r
            if len(requests) > self._max_tracked_requests:
                requests.popitem(last=False)
        duration = r.duration_ms or 0.0
        # a request that waited for a connection and then ran briefly shows little ActiveRecord time
        if duration >= self._holder_min_ms and (r.db_ms is None or r.db_ms >= self._holder_min_db_ms):
            label = r.endpoint or f"{r.method} {r.path}".strip()
            info: Dict[str, object] = {
                "endpoint": label, "path": r.path, "status": r.status, "duration_ms": duration,
                "db_ms": r.db_ms, "request_id": r.request_id, "pid": r.pid,
            }
            self._holder(r.db_ms if r.db_ms is not None else duration, ts - duration / 1000.0, ts, info, r)

    def _active(self, tier: str, pid: str, ts: float) -> None:
        if pid:
            if pid == self._newest_pid and tier == self._newest_tier:
                self.active_pids[self._newest_key] = ts  # already the newest entry: nothing moves
                return
            key = (tier, pid)
            active = self.active_pids
            active[key] = ts
            active.move_to_end(key)
            if len(active) > 1000:
                active.popitem(last=False)  # never the newest: it was just added, with 1000 others
            self._newest_tier, self._newest_pid, self._newest_key = tier, pid, key

    def _on_job(self, job: Job) -> None:
        """Any job line: the reference of the steps feed inlines for an exact ``Job``."""
        self._active("jobs", job.pid, job.ts or 0.0)
        if job.state != "start":  # a start line tells nothing more
            self._on_job_end(job)

    def _on_job_end(self, job: Job) -> None:
        """A job line past its start: a failure may be a pool timeout, a long job may have held a connection."""
        state = job.state
        if state == "fail" and (job.error_class or job.error_message):
            signal = classify(job.error_class, job.error_message)
            if signal is not None:
                if not self._paired_job_failure("job", job.pid, job.ts, job.jid, job.job_class, signal):
                    ep = self._occurrence(signal, job)
                    if ep is None:
                        return
                    ep.bump(ep.by_origin, "sidekiq")
                    if job.job_class:
                        ep.bump(ep.job_classes, job.job_class)
                return
        elapsed = job.elapsed_s
        if elapsed is not None and state in CLOSED_JOB_STATES and elapsed * 1000.0 >= self._holder_min_ms:
            end = job.ts or 0.0
            info = {"job_class": job.job_class, "jid": job.jid, "elapsed_s": job.elapsed_s, "state": job.state, "pid": job.pid}
            self._holder(job.elapsed_s * 1000.0, end - job.elapsed_s, end, info, job)

    def _paired_job_failure(
        self, kind: str, pid: str, ts: Optional[float], jid: str, job_class: str, signal: Signal
    ) -> bool:
        """True if another record of this same job failure was already counted."""
        ts = ts or 0.0
        for rec in reversed(self.job_failures):
            near = abs(float(rec["ts"]) - ts)  # type: ignore[arg-type]
            same_jid = bool(jid) and rec["jid"] == jid and near <= 2.0
            same_pid = rec["pid"] == pid and near <= self.s.job_pair_tolerance_s and kind not in rec["kinds"]  # type: ignore[operator]
            if rec["pool"] == signal.pool and (same_jid or same_pid):
                rec["kinds"].add(kind)  # type: ignore[union-attr]
                ep = self.episodes.get(rec["key"])  # type: ignore[arg-type]
                if ep is not None and job_class and not rec["job_class"]:
                    rec["job_class"] = job_class
                    ep.bump(ep.job_classes, job_class)
                return True
        key = (signal.pool, signal.error_class, "")
        self.job_failures.append(
            {"pid": pid, "ts": ts, "jid": jid, "kinds": {kind}, "pool": signal.pool, "key": key, "job_class": job_class}
        )
        return False

    # ------------------------------------------------------------------ bookkeeping
    def _occurrence(self, signal: Signal, event: Event, server: bool = False, pid: str = "") -> Optional[Episode]:
        """Count one error in its episode; None when it is late and dropped (module docstring)."""
        key = (signal.pool, signal.error_class, "")
        ts = event.ts or 0.0
        if self._is_late(key, ts):
            return None
        ep = self._open_episode(key, ts)
        if ep is None:
            ep = self.episodes[key] = Episode(key, ts, self.s.max_keys_per_incident)
            for h in self.holders:
                self._offer_holder(ep, h)
        ep.first, ep.last = min(ep.first, ts), max(ep.last, ts)
        if server:
            ep.server_count += 1
        else:
            ep.app_count += 1
        times = ep.windows[server]  # kept sorted: a slightly late error goes in its place
        if times and ts < times[-1]:
            times.insert(bisect.bisect_right(times, ts), ts)
        else:
            times.append(ts)
        while times and times[0] < times[-1] - self.s.critical_window_s:
            times.popleft()
        ep.window_max[server] = max(ep.window_max[server], len(times))
        ep.bump(ep.wordings, signal.wording)
        pid = pid or getattr(event, "pid", "")
        if pid:
            ep.bump(ep.pids, str(pid))
        if signal.timeout_s is not None:
            ep.bump(ep.timeouts, f"{signal.timeout_s:g}")
        if signal.waited_s is not None:
            w = signal.waited_s
            ep.waited = [min(ep.waited[0], w), max(ep.waited[1], w)] if ep.waited else [w, w]
        if signal.pool_size is not None:
            ep.bump(ep.pool_sizes, str(signal.pool_size))
        if len(ep.samples) < self.s.evidence_samples:
            ep.samples.append(Evidence.of(event))
        return ep

    def _is_late(self, key: Tuple[str, str, str], ts: float) -> bool:
        """True (and counted) if ``ts`` lies too far before key's open episode to join it."""
        ep = self.episodes.get(key)
        if ep is not None and (ts < ep.first - self.s.episode_gap_s or ts < ep.last - self.s.max_episode_s):
            self.late_dropped += 1
            return True
        return False

    def _open_episode(self, key: Tuple[str, str, str], ts: float) -> Optional[Episode]:
        """The open episode for key, unless ``ts`` comes after a quiet gap or past the
        longest span: then that one is closed."""
        ep = self.episodes.get(key)
        if ep is not None and (ts - ep.last > self.s.episode_gap_s or ts - ep.first > self.s.max_episode_s):
            self._close(key)  # a flush may come late (files merged, slack): split by event time here
            return None
        return ep

    def _close(self, key: Tuple[str, str, str]) -> None:
        ep = self.episodes.pop(key)
        if ep.count >= self.s.min_errors:
            self.pending.append(self._finding(ep, self._severity(ep)))

    def _failed_request(self, ep: Episode, r: Request) -> None:
        if r.duration_ms is not None and len(ep.failed_ms) < 10000:
            ep.failed_ms.append(r.duration_ms)
        if len(ep.failed_requests) < 2:
            ep.failed_requests.append(Evidence.of(r))

    def _holder(self, rank: float, start: float, end: float, info: Dict[str, object], event: Event) -> None:
        item = (rank, start, end, info, Evidence.of(event))
        self.holders.append(item)
        for ep in self.episodes.values():
            self._offer_holder(ep, item)

    def _offer_holder(self, ep: Episode, item: Tuple[float, float, float, Dict[str, object], Evidence]) -> None:
        if ep.key[2] or item[2] < ep.first - self.s.holder_lead_s:
            return
        ep.holders.append(item)
        if len(ep.holders) > self.s.top_n * 4:
            ep.holders.sort(key=lambda h: -h[0])
            del ep.holders[self.s.top_n * 2 :]

    def _remember(self, store: "OrderedDict", key: str, value: object) -> None:  # type: ignore[type-arg]
        store[key] = value
        store.move_to_end(key)
        if len(store) > self.s.max_tracked_requests:
            store.popitem(last=False)

    # ------------------------------------------------------------------ metrics
    def _on_metric(self, m: Metric) -> None:
        hit = self.metrics.observe(m)
        if hit is None:
            return
        key, labels, value = hit
        ts = m.ts or 0.0
        if self._is_late(key, ts):
            return
        ep = self._open_episode(key, ts)
        if ep is None:
            ep = self.episodes[key] = Episode(key, ts, self.s.max_keys_per_incident)
        ep.first, ep.last = min(ep.first, ts), max(ep.last, ts)
        ep.app_count += 1
        ep.bump(ep.pids, ",".join(f"{k}={v}" for k, v in labels) or "-")
        ep.metric_peak[key[2]] = max(ep.metric_peak.get(key[2], 0.0), value)
        if len(ep.samples) < self.s.evidence_samples:
            text = m.raw or f"{m.name}{dict(labels)} = {m.value:g}"
            ep.samples.append(Evidence(m.source, m.line, text))
        for other in self.episodes.values():  # summarised in the error incidents of that time
            if not other.key[2] and other.first - self.s.episode_gap_s <= ts:
                other.metric_peak[key[2]] = max(other.metric_peak.get(key[2], 0.0), value)

    # ------------------------------------------------------------------ output
    def flush(self, until: Optional[float]) -> List[Finding]:
        for key, ep in list(self.episodes.items()):
            if until is None or until - ep.last > self.s.episode_gap_s:
                self._close(key)
        out, self.pending = self.pending, []
        for ep in self.episodes.values():
            severity = self._severity(ep)
            if severity == "critical" and not ep.emitted_critical:
                ep.emitted_critical = True  # alert now; the closing finding adds the rest
                out.append(self._finding(ep, severity))
        if until is not None:
            horizon = min([until - self.s.episode_gap_s] + [ep.first for ep in self.episodes.values()]) - 60
            while self.per_second and next(iter(self.per_second)) < horizon:
                self.per_second.popitem(last=False)
        return out

    def _severity(self, ep: Episode) -> str:
        if ep.key[2] or ep.exclusive_only:
            return "warning"
        share = self._share(ep)
        if ep.max_in_window >= self.s.critical_errors:
            return "critical"
        if share is not None and share >= self.s.critical_share and ep.count >= self.s.share_min_errors:
            return "critical"
        return "warning"

    def _requests_in(self, ep: Episode) -> int:
        first, last = int(ep.first), int(ep.last)
        counts = self.per_second
        if last - first < len(counts):  # walk the shorter of the span and the counters
            return sum(counts.get(s, 0) for s in range(first, last + 1))
        return sum(n for s, n in counts.items() if first <= s <= last)

    def _share(self, ep: Episode) -> Optional[float]:
        if ep.app_count == 0 or ep.key[2]:
            return None
        requests = self._requests_in(ep)
        request_errors = sum(ep.endpoints.values())
        return min(1.0, request_errors / requests) if requests and request_errors else None

    def _change_before(self, ep: Episode) -> Optional[Dict[str, object]]:
        """The deploy, or restart of a failing tier's process, at most deploy_window_s before the episode."""
        ts, window = ep.first, self.s.deploy_window_s
        components = {"puma" if tier == "web" else "sidekiq" for tier in self._tiers(ep)} | {"process"}
        deploy = self.deploys.last_deploy_before(ts)
        if deploy is not None and ts - deploy.ts <= window:
            return {"kind": "deploy", "revision": deploy.revision, "at": deploy.ts, "seconds_before": round(ts - deploy.ts, 1)}
        boots = [(t, c) for t, c in self.restarts if 0 <= ts - t <= window and c in components]
        if boots:
            t, component = max(boots)
            return {"kind": "restart", "component": component, "at": t, "seconds_before": round(ts - t, 1)}
        return None

    @staticmethod
    def _tiers(ep: Episode) -> set:  # type: ignore[type-arg]
        return {"web" if o in ("rails", "lograge") else "jobs" for o in ep.by_origin if o not in SERVER_ORIGINS}

    def _active_in(self, ep: Episode) -> int:
        """Processes of the failing tier(s) that logged requests/jobs around the episode."""
        tiers = self._tiers(ep)
        lo, hi = ep.first - self.s.episode_gap_s, ep.last + self.s.episode_gap_s
        return sum(1 for (tier, _), t in self.active_pids.items() if tier in tiers and lo <= t <= hi)

    def _finding(self, ep: Episode, severity: str) -> Finding:
        n = self.s.top_n
        holders = sorted((h for h in ep.holders if h[1] <= ep.last), key=lambda h: -h[0])
        seen_rids = set()
        top_holders = []
        for h in holders:
            rid = h[3].get("request_id")
            if rid and (rid in seen_rids or rid in self.failed_rids):
                continue
            seen_rids.add(rid)
            top_holders.append(h)
            if len(top_holders) >= n:
                break
        failed_ms = sorted(ep.failed_ms)
        details: Dict[str, object] = {
            "errors": ep.count,
            "errors_app": ep.app_count,
            "errors_server_log": ep.server_count,
            "errors_by_origin": dict(ep.by_origin),
            "max_errors_in_window": ep.max_in_window,
            "critical_window_s": self.s.critical_window_s,
            "requests_in_window": self._requests_in(ep),
            "error_share": self._share(ep),
            "endpoints": ep.endpoints.most_common(n),
            "job_classes": ep.job_classes.most_common(n),
            "processes": len(ep.pids),
            "processes_active": self._active_in(ep),
            "pids": [p for p, _ in ep.pids.most_common(n)],
            "wordings": dict(ep.wordings),
            "checkout_timeout_s": [float(t) for t, _ in ep.timeouts.most_common()],
            "waited_s": {"min": ep.waited[0], "max": ep.waited[1]} if ep.waited else None,
            "pool_size_in_message": [int(p) for p, _ in ep.pool_sizes.most_common()],
            "failed_request_ms_median": failed_ms[len(failed_ms) // 2] if failed_ms else None,
            "holders": [dict(h[3]) for h in top_holders],
            "metrics_peak": dict(ep.metric_peak),
            "during_deploy": self._change_before(ep),
            "pg_max_connections": self.metrics.pg_max_connections,
        }
        evidence = list(ep.samples) + list(ep.failed_requests[:1]) + [h[4] for h in top_holders[:3]]
        subject = {"pool": ep.key[0], "metric": ep.key[2]} if ep.key[2] else {"pool": ep.key[0], "error_class": ep.key[1]}
        title, triage = triage_for(ep.key, details, self.context.facts)
        count = ep.count - ep.reported
        ep.reported = ep.count
        return Finding(
            detector=self.name, severity=severity, title=title, subject=subject, first_seen=ep.first,
            last_seen=ep.last, count=count, evidence=evidence, triage=triage, details=details,
        )
