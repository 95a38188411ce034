"""N+1 queries and N+1 *spikes*, from Rails logs at any level and tagged Postgres logs.

An N+1 needs repetition evidence. Sources, best first:

1. Debug SQL (``Sql`` events): statements are grouped per request (``request_id``;
   untagged single-process logs use the parser's per-pid request key; statements
   outside any request are grouped per file+pid, split by ``orphan_gap_s`` of
   silence, and named by their QueryLogs tags). Within a request, a read whose
   fingerprint repeats ``min_repeats``+ times with ``min_repeats`` distinct binds is an
   N+1 (Sentry: 5 repeats; prosopite: same fingerprint). It must also cost
   ``min_total_ms`` or repeat ``min_repeats_fast`` times, since local dev logs print
   ``0.0ms``. The ``Request`` (at ``Completed``, after its SQL) gives the endpoint.
2. Tagged Postgres statement logs (``DbStatement`` with QueryLogs/marginalia tags,
   ``log_min_duration_statement = 0``): the same rule, per request as grouped by
   ``tagged`` (the tags' request id, else backend pid + controller/action split by
   silence). This is how an info-level Rails < 7.2 app shows an N+1. No Completed line
   closes such a request: it is judged once its own log is ``orphan_gap_s`` past it.
3. Per-request query counts (Rails 7.2+ ``(N queries, M cached)``: N-M round trips;
   else the count of debug statements) against the endpoint's own lagged baseline
   (``RecentVsBaseline``): median of the last ``recent_size`` requests >= ``spike_ratio`` x
   and >= +``spike_min_increase`` over a baseline of >= ``min_baseline_requests``.
4. Bullet warnings (``Bullet`` events): an N+1 by definition (association-aware).
   Bullet names ``GET /posts``; the request records (``Started GET "/posts"`` …
   ``Processing by PostsController#index``) map it to the endpoint; evidence filed
   under the path before the mapping was known is merged at the next flush.
(Statement statistics, ``pg_stat_statements``, add evidence items of their own.)

DB time per request (``ActiveRecord: 15.3ms``, lograge ``db=``), compared the same
way when no query count exists, is *no* repetition evidence: alone it is a **slow
endpoint** finding (subject ``{"endpoint", "problem": "slow_endpoint"}``, a warning,
never an N+1 and never from an endpoint without ``min_baseline_requests`` of history);
with an N+1 incident on the endpoint it escalates that incident.

One incident per endpoint problem: subject ``{"endpoint": "Controller#action"}`` (or
the job class, or Bullet's ``METHOD /path`` while unmapped); its evidence items
(repeated SQL shapes with their source, Bullet associations) are listed in the
finding's details; count = affected requests (each counted once, whatever the number
of shapes or Bullet blocks; each flush reports the increment).

Severity rule ("page now"):
  critical  (a) the endpoint's queries (or DB time) per request spiked against its own
            baseline while the N+1 was seen; or
            (b) the N+1 is new -- it came with a NEW endpoint (no earlier request of it)
            or after a deploy marker (``Deploy`` events, ``AppFacts.revision_time``) on an
            endpoint that had ``min_requests_before_deploy`` clean requests before --
            AND it is large: its affected requests average >= ``critical_min_queries``
            queries each and arrive at >= ``critical_min_rate`` per second (over the
            incident's span, at least 60 s). A query-count spike alone is (a).
  warning   a long-standing N+1 (the endpoint ran clean before, no deploy between), a
            new but small or rare one, Bullet alone (no query count to size it), a
            steady ``steady_queries_warning``+ queries/request, a slow endpoint.

False-positive risks and how they are avoided:
* batched loads: ``WHERE id IN (…)`` with >1 item, ``ANY(ARRAY[…])``, and ``LIMIT n``
  >= ``batch_limit_min`` (``find_each``) are never counted as repeats.
* cached queries: ``CACHE`` hits are no round trip: ignored for repeats and counts.
* identical repeats (same SQL, same binds): a memoisation smell, not an N+1; a
  group needs ``min_repeats`` *distinct* binds (unlogged binds count as distinct).
* slow endpoint without N+1: DB time alone never names an N+1 (a slow-endpoint
  warning at most); a DB-time spike shared by most active endpoints at once (a slow or
  saturated database, not a code change) is dropped (``global_spike_share``).
* the same request seen twice (debug SQL and tagged Postgres logs of one app both
  scanned): one incident, but its affected-request count may double.
* intentional loops / long-standing N+1: never more than a warning unless they
  grow or are new after a deploy; ``ignore_endpoints``/``ignore_tables`` silence them.
* has_many-through counts and ``exists?`` in loops (``SELECT COUNT(*)``,
  ``SELECT 1 AS one``): real per-row queries but often cheap and deliberate, so they
  need ``min_repeats_aggregate`` repeats; triage suggests counter_cache / preloading.
* writes in loops (INSERT/UPDATE per row) are not N+1 reads: ignored unless
  ``include_writes``.
* a tiny fast loop (4 repeats, 0.0ms, as in select_rails_log/simple.log) stays below
  ``min_repeats``; raise it or lower it per app.

The package: ``state`` (bounded per-request / per-incident records), ``association``
(naming the association), ``tagged`` (tagged Postgres statements as per-request
statements), ``report`` (records -> findings), ``triage`` (their triage text); ``detectors.shared`` (``sqlfp``, ``baseline``, ``deploys``) is shared with other detectors.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from agent.events import Bullet, DbStatement, Deploy, Event, Finding, Metric, Request, Sql
from agent.settings import setting
from detectors.base import Detector, DetectorContext, Settings
from detectors.shared.baseline import RecentVsBaseline
from detectors.shared.deploys import DeployMarkers
from detectors.n_plus_one.association import infer_association
from detectors.n_plus_one.report import ReportInput, build_findings
from detectors.n_plus_one.state import Group, Incident, OpenRequest, Spike, endpoint_from_tags, group_of
from detectors.n_plus_one.tagged import KEY_PREFIX as TAGGED_KEY, statement_as_sql
from detectors.n_plus_one.statements import StatementCorrelator, StatementRules
from detectors.shared.sqlfp import SqlFingerprinter

_ID_SEGMENT = re.compile(r"/(?:\d+|[0-9a-f]{8}-[0-9a-f-]{27,})(?=/|$)")
_LIMIT_BIND = re.compile(r'\["LIMIT", (\d+)\]')
HISTORY = 32  # recent request times kept per endpoint (to tell "clean before the deploy")
TAGGED_SWEEP_S = 1.0  # how often (in a Postgres log's own time) its silent tagged requests are finished
_SKIP_NAMES = frozenset(("SCHEMA", "TRANSACTION", "EXPLAIN"))
#: a request keeps a shape's first statement as a tuple and builds its Group only when a second one
#: comes (most shapes run once per request: rails-debug.log, 31,763 of 37,304 groups). False: a Group
#: from the first statement on, the reference (tests/detectors/test_n_plus_one_groups.py)
LAZY_GROUPS = True


@dataclass(frozen=True)
class NPlusOneSettings(Settings):
    min_repeats: int = setting(5, min=1)  # Sentry's default count
    min_total_ms: float = setting(50.0, min=0.0)  # Sentry docs' duration threshold for the repeats
    min_repeats_fast: int = setting(10, min=1)  # enough repeats to report even at 0.0ms each
    min_repeats_aggregate: int = setting(10, min=1)  # COUNT(*) / exists? per row
    batch_limit_min: int = setting(100, min=1)  # LIMIT n >= this is a batch (find_each), not a lookup
    include_writes: bool = setting(False)
    recent_size: int = setting(10, min=1)  # requests in the "now" window of an endpoint
    baseline_size: int = setting(200, min=1)  # requests in its lagged baseline
    min_baseline_requests: int = setting(20, min=1)  # history needed before a spike can be called
    spike_ratio: float = setting(3.0, min=1.0)
    spike_min_increase: float = setting(20.0, min=0.0)  # queries per request
    db_spike_ratio: float = setting(3.0, min=1.0)
    db_spike_min_ms: float = setting(50.0, min=0.0)
    global_spike_share: float = setting(0.5, min=0.0, max=1.0)  # DB-time spikes on this share of active endpoints: a DB problem
    steady_queries_warning: float = setting(100.0, above=0.0)  # median queries/request worth a warning even if steady
    min_requests_before_deploy: int = setting(3, min=0)  # clean requests before a deploy to call an N+1 new
    max_endpoints: int = setting(5000, min=1)
    max_open_requests: int = setting(2000, min=1)
    max_groups_per_request: int = setting(300, min=1)
    max_incidents: int = setting(2000, min=1)
    request_timeout_s: float = setting(300.0, above=0.0)  # open request without Completed: analysed and dropped
    orphan_gap_s: float = setting(2.0, above=0.0)
    fingerprint_cache: int = setting(20000, min=1)
    max_example_requests: int = setting(5, min=1)
    ignore_endpoints: Tuple[str, ...] = setting(())
    ignore_tables: Tuple[str, ...] = setting(())
    # "page now" for an N+1 that is new (new endpoint, or after a deploy): see the module docstring
    critical_min_queries: float = setting(25.0, min=1.0)  # queries per affected request
    critical_min_rate: float = setting(0.2, above=0.0)  # affected requests per second
    # pg_stat_statements deltas against request rates (detectors/n_plus_one/statements.py)
    statement_min_intervals: int = setting(2, min=1)  # sampling intervals pairing calls with requests
    statement_window: int = setting(30, min=2)  # sampling intervals kept
    statement_max_ratio_cv: float = setting(0.5, min=0.0)  # calls/request must be this steady
    statement_settle_s: float = setting(0.5, min=0.0)  # wait for request lines after a sample
    statement_baseline_intervals: int = setting(5, min=1)  # history for "spike against baseline"
    statement_min_jump: float = setting(50.0, min=0.0)  # calls/interval over a shape's own baseline
    statement_flat_traffic_ratio: float = setting(1.5, min=1.0)  # requests "flat" within this factor


class NPlusOneDetector(Detector):
    """N+1 queries per request from debug SQL, and N+1 spikes from per-endpoint baselines."""

    name = "n_plus_one"
    kinds = frozenset(("sql", "db_statement", "request", "bullet", "deploy", "metric"))
    settings_type = NPlusOneSettings

    def __init__(self, settings: Optional[Settings] = None, context: Optional[DetectorContext] = None) -> None:
        super().__init__(settings, context)
        s: NPlusOneSettings = self.settings  # type: ignore[assignment]
        self.s = s
        self._fp = SqlFingerprinter(s.fingerprint_cache)
        self._deploys = DeployMarkers(self.context.facts, max_keys=s.max_endpoints)
        self._open: "OrderedDict[str, OpenRequest]" = OrderedDict()
        self._queries = RecentVsBaseline(s.max_endpoints, s.recent_size, s.baseline_size)
        self._db_ms = RecentVsBaseline(s.max_endpoints, s.recent_size, s.baseline_size)
        self._history: "OrderedDict[str, Deque[Tuple[float, bool]]]" = OrderedDict()  # endpoint -> (ts, had_sql)
        self._paths: "OrderedDict[str, str]" = OrderedDict()  # "GET /posts" -> endpoint, for Bullet
        self._incidents: "OrderedDict[str, Incident]" = OrderedDict()  # one per endpoint
        self._spikes: "OrderedDict[Tuple[str, str], Spike]" = OrderedDict()  # (endpoint, signal)
        self._tagged_sweep_at: Dict[str, float] = {}  # Postgres log -> its time of the next _expire_tagged sweep
        self._sql_sources: set = set()  # files that log SQL: a request there without SQL ran 0 queries
        self._statements = StatementCorrelator(StatementRules(
            s.min_repeats, s.statement_min_intervals, s.statement_window, s.statement_max_ratio_cv, s.statement_settle_s,
            s.statement_baseline_intervals, s.spike_ratio, s.statement_min_jump, s.statement_flat_traffic_ratio,
            s.ignore_endpoints, s.ignore_tables, s.critical_min_queries, s.critical_min_rate), self._fp)

    # ----- input ----------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        # hot path: the two types of nearly every event first; any other type takes the chain below
        of = type(event)
        if of is Request:
            self._request(event)  # type: ignore[arg-type]
            self._statements.observe_request(event)  # type: ignore[arg-type]
        elif of is Sql:
            self._sql(event)  # type: ignore[arg-type]
        else:
            self._feed_any(event)

    def _feed_any(self, event: Event) -> None:
        """``feed`` by ``isinstance`` (subclasses too): the reference dispatch."""
        if isinstance(event, Sql):
            self._sql(event)
        elif isinstance(event, Request):
            self._request(event)
            self._statements.observe_request(event)
        elif isinstance(event, Metric):
            self._statements.observe_metric(event)
        elif isinstance(event, Bullet):
            self._bullet(event)
        elif isinstance(event, DbStatement):
            tagged = statement_as_sql(event)
            if tagged is not None:
                self._expire_tagged(tagged[1])
                self._sql(tagged[1], tagged[0])
        elif isinstance(event, Deploy):
            self._deploys.observe(event)

    def _sql(self, e: Sql, key: str = "") -> None:
        """A debug statement, or (with ``key``) a tagged Postgres statement and its request key."""
        # hot path (every debug SQL line): keep attribute lookups and allocations low
        ts = e.ts
        if ts is None or e.name in _SKIP_NAMES:
            return
        rid = "" if key else e.request_id  # a tagged statement's group is split by silence too
        key = key or rid or f"orphan:{e.source}:{e.pid}"
        req = self._open.get(key)
        if req is None or (not rid and req.last_ts is not None and ts - req.last_ts > self.s.orphan_gap_s):
            req = self._open_request(key, e)
            if key.startswith(TAGGED_KEY):
                req.request_id = e.request_id
        req.last_ts = ts
        shape = self._fp.shape(e.sql)
        kind = shape.kind
        if kind == "transaction":
            return
        if shape.tags and not req.tags:
            req.tags = shape.tags
        if e.cached:
            req.cached += 1
            return
        req.queries += 1
        duration_ms = e.duration_ms
        if duration_ms:
            req.db_ms += duration_ms
        if kind == "other" or (kind == "write" and not self.s.include_writes):
            return
        limit = shape.limit
        binds = e.binds
        if limit is None and binds and "LIMIT" in binds:
            m = _LIMIT_BIND.search(binds)
            limit = int(m.group(1)) if m else None
        if shape.in_list_max > 1 or (limit is not None and limit >= self.s.batch_limit_min):
            req.remember_source(e, shape)  # a batched load: a fine parent, never a repeat
            return
        groups = req.groups
        fingerprint = shape.fingerprint
        group = groups.get(fingerprint)
        if group is None:
            if len(groups) >= self.s.max_groups_per_request:
                return
            # the first statement's binds name the association (parsed if the group turns out repeated)
            if LAZY_GROUPS:
                groups[fingerprint] = (shape, e, binds, req.source_event, req.source_shape)  # a FirstStatement
            else:  # the reference
                group = groups[fingerprint] = Group(shape, e, binds, req.source_event, req.source_shape)
                group.add(e)
        elif type(group) is tuple:  # the shape's second statement: now it needs a Group
            group = groups[fingerprint] = group_of(group)
            group.add(e)
        else:
            group.add(e)  # type: ignore[union-attr]
        if kind == "load":
            req.source_event, req.source_shape = e, shape

    def _expire_tagged(self, e: Sql) -> None:
        """Finish the tagged requests of ``e``'s log silent for ``orphan_gap_s`` of that log's own time.

        No Completed line closes a tagged request, and the daemon's ``flush`` runs the reorder
        slack (minutes) behind: without this a live N+1 from a Postgres log would wait for it.
        Swept at most once per ``TAGGED_SWEEP_S`` of a log's time (a hot path)."""
        ts = e.ts or 0.0  # statement_as_sql keeps timed statements only
        due = self._tagged_sweep_at.get(e.source)
        if due is not None and ts < due:
            return
        if due is None and len(self._tagged_sweep_at) >= 256:
            self._tagged_sweep_at.clear()
        self._tagged_sweep_at[e.source] = ts + TAGGED_SWEEP_S
        cutoff = ts - self.s.orphan_gap_s
        stale = [k for k, req in self._open.items()
                 if req.source == e.source and k.startswith(TAGGED_KEY) and (req.last_ts or 0.0) < cutoff]
        for key in stale:
            self._finish(self._open.pop(key), None)

    def _open_request(self, key: str, e: Sql) -> OpenRequest:
        """A request's first statement (or an orphan group after a silence)."""
        old = self._open.pop(key, None)
        if old is not None:
            self._finish(old, None)
        if e.source not in self._sql_sources and len(self._sql_sources) < 256:
            self._sql_sources.add(e.source)
        req = self._open[key] = OpenRequest(key, e.ts, e.source)
        if len(self._open) > self.s.max_open_requests:
            self._finish(self._open.popitem(last=False)[1], None)
        return req

    def _request(self, r: Request) -> None:
        if r.ts is None:
            return
        method, path = r.method, r.path
        if path:
            bare = path.split("?", 1)[0] if "?" in path else path  # hot path: split only a query string off
            endpoint = r.endpoint or f"{method} {_ID_SEGMENT.sub('/:id', bare)}"
            if method:
                # path -> endpoint for Bullet, an LRU of max_endpoints paths
                paths = self._paths
                key = f"{method} {bare}"
                paths[key] = endpoint
                paths.move_to_end(key)
                if len(paths) > self.s.max_endpoints:
                    paths.popitem(last=False)
        else:
            endpoint = r.endpoint
        rid = r.request_id
        self._finish(self._open.pop(rid, None) if rid else None, r, endpoint or "(unknown endpoint)")

    def _bullet(self, b: Bullet) -> None:
        if b.ts is None or b.detection not in ("n_plus_one", ""):
            return
        # Bullet names the request ("GET /posts"), not its id: the endpoint comes from that path
        request = b.request.split("?", 1)[0]
        endpoint = self._paths.get(request) or request or "(unknown endpoint)"
        self._note_bullet(endpoint, b)

    # ----- per request ----------------------------------------------------------------
    def _finish(self, req: Optional[OpenRequest], r: Optional[Request], endpoint: str = "") -> None:
        ts = r.ts if r is not None and r.ts is not None else (req.last_ts if req is not None else None)
        if ts is None:
            return
        if r is None and req is not None:
            endpoint = endpoint_from_tags(req.tags)
            if endpoint.startswith("(") and req.request_id:
                endpoint = "(unknown endpoint)"  # a request whose Completed line never came
        s = self.s
        if endpoint in s.ignore_endpoints:
            return
        deploys = self._deploys  # deploys.watch(ts), inlined (once per request)
        if deploys.watch_start is None or ts < deploys.watch_start:
            deploys.watch_start = ts
        histories = self._history
        history = histories.get(endpoint)
        if history is None:
            history = histories[endpoint] = deque(maxlen=max(s.min_requests_before_deploy + 1, HISTORY))
            if len(histories) > s.max_endpoints:
                histories.popitem(last=False)
        else:
            histories.move_to_end(endpoint)
        if req is not None:
            # a group below both repeat floors cannot qualify (most groups: one statement each)
            fewest = min(s.min_repeats, s.min_repeats_aggregate)
            groups = req.groups.values()
            if fewest <= 1:  # then one statement can qualify: every first statement becomes its Group
                groups = [group_of(g) if type(g) is tuple else g for g in groups]  # type: ignore[assignment]
            repeated = [g for g in groups if type(g) is not tuple and g.count >= fewest and self._qualifies(g)]  # type: ignore[union-attr]
            if repeated:
                self._note_n_plus_one(endpoint, repeated, req, r, ts, history)
            history.append((ts, req.queries > 0))
        else:
            history.append((ts, False))
        if r is None:
            return  # no Completed line: no per-request numbers for the baselines
        queries: Optional[float] = None
        if r.queries is not None:
            queries = float(r.queries - (r.cached or 0))
        elif req is not None:
            queries = float(req.queries)
        elif r.source in self._sql_sources:
            queries = 0.0
        if queries is not None:
            self._check_spike(endpoint, "queries", self._queries, queries, r, s.spike_ratio, s.spike_min_increase)
        elif r.db_ms is not None and not endpoint.startswith("("):  # a pool of unnamed requests has no history of its own
            self._check_spike(endpoint, "db_time", self._db_ms, r.db_ms, r, s.db_spike_ratio, s.db_spike_min_ms)

    def _qualifies(self, g: Group) -> bool:
        s = self.s
        need = s.min_repeats_aggregate if g.shape.kind in ("count", "exists") else s.min_repeats
        if g.count < need or g.distinct < need or g.shape.table in s.ignore_tables:
            return False
        return g.total_ms >= s.min_total_ms or g.count >= max(s.min_repeats_fast, need)

    def _note_n_plus_one(
        self, endpoint: str, groups: List[Group], req: OpenRequest, r: Optional[Request], ts: float, history: Deque[Tuple[float, bool]]
    ) -> None:
        inc = self._incidents.get(endpoint)
        if inc is None:
            inc = self._new_incident(endpoint, ts, history)
        named = [(g, infer_association(g.shape, g.first.name, g.binds, g.source_shape, g.source_event.name if g.source_event else ""))
                 for g in groups]
        queries: Optional[float] = float(req.queries)
        if r is not None and r.queries is not None:
            queries = float(r.queries - (r.cached or 0))
        source = "postgres_log" if req.key.startswith(TAGGED_KEY) else "debug_sql"
        inc.add_request(ts, req.request_id, source, named, queries, r, self.s.max_example_requests)

    def _note_bullet(self, endpoint: str, b: Bullet) -> None:
        inc = self._incidents.get(endpoint)
        if inc is None:
            inc = self._new_incident(endpoint, b.ts or 0.0, ())
        inc.add_bullet(b)

    def _new_incident(self, endpoint: str, ts: float, history) -> Incident:  # type: ignore[no-untyped-def]
        inc = self._incidents[endpoint] = Incident(endpoint, ts)
        if len(self._incidents) > self.s.max_incidents:
            self._incidents.popitem(last=False)
        # no earlier request of the endpoint: it arrived with the N+1 (history is the endpoint's
        # own requests, appended after this check; Bullet passes none, so it never claims "new")
        inc.new_endpoint = isinstance(history, deque) and not history
        deploy = self._deploys.last_deploy_before(ts)
        if deploy is not None:
            before = sum(1 for t, _ in history if t < deploy.ts)
            if before >= self.s.min_requests_before_deploy:
                inc.new_since_deploy = deploy
        return inc

    def _merge_bullet_paths(self) -> None:
        """Bullet evidence filed under ``GET /posts`` before the request records named the
        endpoint: one endpoint, one incident, once the mapping is known."""
        for key in [k for k in self._incidents if k in self._paths and self._paths[k] and self._paths[k] != k]:
            endpoint = self._paths[key]
            stray = self._incidents.pop(key)
            inc = self._incidents.get(endpoint)
            if inc is None:
                stray.subject = {"endpoint": endpoint}
                self._incidents[endpoint] = stray
            else:
                inc.absorb(stray)

    def _check_spike(self, endpoint: str, signal: str, base: RecentVsBaseline, value: float, r: Request, ratio: float, min_increase: float) -> None:
        # hot path (every completed request): one call for the update and both windows' numbers
        recent_count, baseline_count, now, before = base.push(endpoint, value, r.ts)  # type: ignore[arg-type]
        s = self.s
        ready = baseline_count >= s.min_baseline_requests and recent_count >= s.recent_size
        if ready and before is not None and now is not None:
            threshold = max(before * ratio, before + min_increase)
            if now >= threshold:
                key = (endpoint, signal)
                spike = self._spikes.get(key)
                if spike is None or not spike.active:
                    spike = self._start_spike(key, base, threshold, before, r)
                if value >= threshold:
                    spike.add(r, value, now)
                return
        if self._spikes:  # no spike so far (most logs): no key to build, nothing to end
            spike = self._spikes.get((endpoint, signal))
            if spike is not None:
                spike.active = False
        if signal == "queries" and ready and now is not None and now >= s.steady_queries_warning:
            steady = self._spikes.get((endpoint, "steady"))
            if steady is None:
                steady = self._start_spike((endpoint, "steady"), base, self.s.steady_queries_warning, before or 0.0, r)
            steady.add(r, value, now)

    def _start_spike(self, key: Tuple[str, str], base: RecentVsBaseline, threshold: float, before: float, r: Request) -> Spike:
        samples = base.recent.samples(key[0])
        start = next((ts for ts, v in samples if v >= threshold), r.ts or 0.0)
        spike = self._spikes.get(key)
        if spike is None:
            spike = self._spikes[key] = Spike(key[0], key[1], start, before)
            if len(self._spikes) > self.s.max_endpoints:
                self._spikes.popitem(last=False)
        spike.active = True
        spike.before = before
        baseline_end = base.baseline.last_seen(key[0])
        deploys = self._deploys.deploys_between(baseline_end, start)
        if deploys:
            spike.deploy = deploys[-1]
        # the high requests already in the window count too (the current one is added by the caller)
        spike.backfill(sum(1 for _, v in samples[:-1] if v >= threshold), start)
        return spike

    # ----- output ---------------------------------------------------------------------
    def flush(self, until: Optional[float]) -> List[Finding]:
        for key in [k for k, req in self._open.items() if until is None or (req.last_ts or 0.0) < until - self._timeout(k)]:
            self._finish(self._open.pop(key), None)
        self._merge_bullet_paths()
        found = build_findings(ReportInput(self.name, self._incidents, self._spikes, self._history, self._queries,
                                           self.s.global_spike_share, self.s.critical_min_queries, self.s.critical_min_rate))
        return found + self._statements.findings(until, self.name)

    def _timeout(self, key: str) -> float:
        return self.s.orphan_gap_s if key.startswith(("orphan:", TAGGED_KEY)) else self.s.request_timeout_s

