"""N+1 from the database's side: ``pg_stat_statements`` call deltas against request rates.

For apps that log at info on Rails < 7.2 there is no SQL and no query count in the log,
but the Postgres collector samples ``pg_stat_statements`` every ``interval_s`` and emits
``pg.statement_calls{queryid,query}`` (calls since the previous sample). An N+1 makes one
statement shape run k times per request of one endpoint, so per sampling interval

    calls(shape) ≈ k × requests(endpoint),  k ≥ min_repeats, k steady from interval to interval.

How an interval is built: every ``pg.*`` metric marks a sample time (the collector emits
``pg.connections`` even when no statement grew), so interval i is (t[i-1], t[i]]. Its
statement calls are the ``pg.statement_calls`` stamped t[i], summed per sqlfp
fingerprint (several queryids can share a shape). Its requests are the ``Request``
events with ts ≤ t[i] not yet counted; an interval is settled once a request at
t[i] + ``statement_settle_s`` was seen (the log caught up), a later sample arrived, or at
the end of input — so a late ``Completed`` line still counts, in the next interval.

Attribution (per shape with calls in the settled interval; only ``SELECT`` key lookups —
``WHERE id = ?`` / ``WHERE post_id = ?``, no ``IN`` list — so ``SELECT 1``, BEGIN/COMMIT,
schema and per-request constant queries never qualify, and neither do batched loads):
the *episode* is the intervals of the window since the shape's first calls in it. For each
endpoint with requests in the episode, the per-interval ratio calls/requests is taken
over every interval where the endpoint had requests (0 when the shape did not run: an
endpoint that runs without the statement does not explain it). The endpoint qualifies
when ≥ ``statement_min_intervals`` intervals pair calls with its requests, those
intervals hold ≥ 90 % of the shape's calls, the median ratio is ≥ ``min_repeats`` and the
ratios' coefficient of variation is ≤ ``statement_max_ratio_cv``. Of the qualifying
endpoints the one with the most stable ratio wins (then the most intervals, then name).
Two endpoints driven at exactly the same rate cannot be told apart this way; real
traffic mixes vary, and the tie-break is deterministic.

The newest intervals (one, or two when an endpoint's first requests complete after the
sample that counted their calls) are decided at once when only one endpoint can explain
them: it is new in the window, every other endpoint with requests in them was served
earlier in an interval where the statement did not run at all, and the new one runs it ≥
``min_repeats`` times per request — a new N+1 endpoint pages about one sampling interval
after its first calls. An endpoint that changed behaviour (a deploy) waits for
``statement_min_intervals`` intervals.

When no endpoint explains the calls — no request log at all in the window, or an episode
of ≥ 3 × ``statement_min_intervals`` intervals in which none qualified — a shape whose
median calls over the last ``statement_min_intervals`` intervals jump ≥ ``spike_ratio`` ×
and ≥ +``statement_min_jump`` over its own median in the ``statement_baseline_intervals``
before them, while the total request rate stayed within ``statement_flat_traffic_ratio``
(no traffic at all is flat), is reported by shape: subject ``{"sql": shape}``.

Severity: warning. Critical for a spike against the endpoint's own baseline: the
endpoint served ≥ ``statement_baseline_intervals`` intervals of traffic inside the
window before the shape first ran in it (a clean endpoint that suddenly runs ≥
``min_repeats`` lookups per request — typically a deploy); and, as the log-based rule
says, for an N+1 that arrives with a new endpoint (not served before the statement first
ran) and is large: ≥ ``critical_min_queries`` calls per request and ≥
``critical_min_rate`` affected requests per second (counted over at least 60 s). A
long-standing N+1 stays a warning. A shape spike without an endpoint is a
warning (nothing to compare per request).

Findings: detector ``n_plus_one``, subject ``{"endpoint": X}`` (so they merge with the
log-side N+1 evidence of that endpoint by fingerprint), ``count`` = the requests of newly
attributed intervals (each flush reports the increment), details ``source:
"pg_stat_statements"`` with the shape(s), calls per request and intervals. Pure: no clock,
no I/O; time is the events' ts.
"""
from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

from agent.events import Evidence, Finding, Metric, Request, Triage
from detectors.shared.sqlfp import SqlFingerprinter, SqlShape

CALLS = "pg.statement_calls"
RATE_MIN_SPAN_S = 60.0  # as the log-based rule: 3 requests in 2 s are not 1.5 per second
EXPLAINED_SHARE = 0.9  # an endpoint must account for this share of the shape's calls
MAX_PENDING_REQUESTS = 200_000  # request times waiting for their interval to settle
MAX_SHAPES = 5000


@dataclass(frozen=True)
class StatementRules:
    """The thresholds the component reads (taken from ``NPlusOneSettings``)."""

    min_repeats: int = 5
    min_intervals: int = 2
    window: int = 30
    max_ratio_cv: float = 0.5
    settle_s: float = 0.5
    baseline_intervals: int = 5
    spike_ratio: float = 3.0
    min_jump: float = 50.0
    flat_traffic_ratio: float = 1.5
    ignore_endpoints: Tuple[str, ...] = ()
    ignore_tables: Tuple[str, ...] = ()
    critical_min_queries: float = 25.0  # the log-based rule's "large": calls per request…
    critical_min_rate: float = 0.2  # …and affected requests per second (over >= RATE_MIN_SPAN_S)


@dataclass
class Interval:
    start: Optional[float]
    end: float
    calls: Dict[str, float] = field(default_factory=dict)  # fingerprint -> calls
    requests: Dict[str, int] = field(default_factory=dict)  # endpoint -> requests
    index: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass
class ShapeInfo:
    shape: SqlShape
    queryids: List[str] = field(default_factory=list)
    last_metric: Optional[Metric] = None


@dataclass
class Attribution:
    """One (subject, shape) the component has evidence for; reported increment by increment."""

    subject: Dict[str, str]
    fingerprint: str
    first_seen: float
    last_seen: float
    critical: bool
    ratios: List[float]
    intervals: int
    calls: float
    requests: int = 0
    reported: int = 0
    counted_through: int = -1  # last interval index whose requests are counted
    dirty: bool = True
    new_endpoint: bool = False  # not served in the window before the statement first ran


class StatementCorrelator:
    """Per sampling interval, a statement shape's call delta against each endpoint's requests."""

    def __init__(self, rules: StatementRules, fingerprinter: Optional[SqlFingerprinter] = None) -> None:
        self.rules = rules
        self._fp = fingerprinter or SqlFingerprinter()
        self._intervals: Deque[Interval] = deque(maxlen=max(rules.window, rules.baseline_intervals + rules.min_intervals))
        self._open: Optional[Interval] = None  # the newest sample: calls known, requests not settled
        self._last_end: Optional[float] = None
        self._pending: Deque[Tuple[float, str]] = deque()  # (ts, endpoint) not yet in an interval
        self._high_request_ts: Optional[float] = None
        self._shapes: "OrderedDict[str, ShapeInfo]" = OrderedDict()
        self._last_request: "OrderedDict[str, Request]" = OrderedDict()  # endpoint -> its latest line
        self._found: "OrderedDict[Tuple[str, str], Attribution]" = OrderedDict()
        self._count = 0

    # ----- input ----------------------------------------------------------------------
    def observe_request(self, r: Request) -> None:
        if r.ts is None:
            return
        endpoint = r.endpoint or (f"{r.method} {r.path.split('?', 1)[0]}" if r.path else "")
        if not endpoint or endpoint in self.rules.ignore_endpoints:
            return
        if len(self._pending) < MAX_PENDING_REQUESTS:
            self._pending.append((r.ts, endpoint))
        self._last_request[endpoint] = r
        self._last_request.move_to_end(endpoint)
        if len(self._last_request) > MAX_SHAPES:
            self._last_request.popitem(last=False)
        if self._high_request_ts is None or r.ts > self._high_request_ts:
            self._high_request_ts = r.ts
        if self._open is not None and r.ts >= self._open.end + self.rules.settle_s:
            self._settle()

    def observe_metric(self, m: Metric) -> None:
        if m.ts is None or not m.name.startswith("pg."):
            return
        if self._open is None or m.ts > self._open.end:
            if self._open is not None:
                self._settle()
            self._open = Interval(self._last_end, m.ts)
            self._last_end = m.ts
        if m.name != CALLS or m.ts != self._open.end or m.value <= 0:
            return
        shape = self._fp.shape(m.labels.get("query", ""))
        if not self._qualifies(shape):
            return
        fp = shape.fingerprint
        info = self._shapes.get(fp)
        if info is None:
            info = self._shapes[fp] = ShapeInfo(shape)
            if len(self._shapes) > MAX_SHAPES:
                self._shapes.popitem(last=False)
        qid = m.labels.get("queryid", "")
        if qid and qid not in info.queryids and len(info.queryids) < 10:
            info.queryids.append(qid)
        info.last_metric = m
        self._open.calls[fp] = self._open.calls.get(fp, 0.0) + m.value

    def _qualifies(self, shape: SqlShape) -> bool:
        # a lazy association load: SELECT … WHERE id = ? (or *_id = ?), one row per call
        return (shape.operation == "SELECT" and shape.kind in ("load", "count", "exists") and shape.key_lookup
                and shape.in_list_max <= 1 and shape.table not in self.rules.ignore_tables)

    # ----- per settled interval --------------------------------------------------------
    def _settle(self) -> None:
        iv, self._open = self._open, None
        if iv is None:
            return
        while self._pending and self._pending[0][0] <= iv.end:
            _, endpoint = self._pending.popleft()
            iv.requests[endpoint] = iv.requests.get(endpoint, 0) + 1
        # requests out of time order (a slow request's Completed line) may sit behind newer ones
        if self._pending and any(ts <= iv.end for ts, _ in self._pending):
            keep: Deque[Tuple[float, str]] = deque()
            for ts, endpoint in self._pending:
                if ts <= iv.end:
                    iv.requests[endpoint] = iv.requests.get(endpoint, 0) + 1
                else:
                    keep.append((ts, endpoint))
            self._pending = keep
        iv.index = self._count
        self._count += 1
        if iv.start is None:
            return  # the first sample only marks where intervals begin
        self._intervals.append(iv)
        for fp in iv.calls:
            self._evaluate(fp, iv)
        previous = self._intervals[-2] if len(self._intervals) > 1 else None
        for (endpoint, fp), att in self._found.items():
            served = iv.requests.get(endpoint, 0) if endpoint else 0
            # requests whose calls ran just before the sample and whose Completed line came after it
            if served and att.counted_through == iv.index - 1 and previous is not None and previous.calls.get(fp):
                att.requests += served
                att.counted_through = iv.index
                att.dirty = True

    def _evaluate(self, fp: str, newest: Interval) -> None:
        window = list(self._intervals)[-self.rules.window:]
        first = next(i for i, iv in enumerate(window) if iv.calls.get(fp))
        episode, before = window[first:], window[:first]
        best = self._best_endpoint(fp, episode) or self._only_new_endpoint(fp, window)
        if best is not None:
            endpoint, ratios = best
            clean_before = sum(1 for iv in before if iv.requests.get(endpoint))
            self._note((endpoint, fp), {"endpoint": endpoint}, fp, episode, ratios, endpoint,
                       critical=clean_before >= self.rules.baseline_intervals)
            if not clean_before:
                self._found[(endpoint, fp)].new_endpoint = True
        elif self._unexplained(episode, window) and self._shape_spike(fp):
            recent = list(self._intervals)[-self.rules.min_intervals:]
            self._note(("", fp), {"sql": self._shapes[fp].shape.normalized}, fp, recent, [], "", critical=False)

    def _best_endpoint(self, fp: str, episode: List[Interval]) -> Optional[Tuple[str, List[float]]]:
        r = self.rules
        total = sum(iv.calls.get(fp, 0.0) for iv in episode)
        candidates = {e for iv in episode if iv.calls.get(fp) for e in iv.requests}
        ranked = []
        for endpoint in candidates:
            ratios: List[float] = []
            explained = 0.0
            for iv in episode:
                n = iv.requests.get(endpoint, 0)
                if n:
                    c = iv.calls.get(fp, 0.0)
                    ratios.append(c / n)
                    explained += c
            paired = sum(1 for x in ratios if x > 0)
            if paired < r.min_intervals or explained < EXPLAINED_SHARE * total:
                continue
            median = statistics.median(ratios)
            mean = statistics.fmean(ratios) if hasattr(statistics, "fmean") else statistics.mean(ratios)
            cv = statistics.pstdev(ratios) / mean if mean > 0 else float("inf")
            if median < r.min_repeats or cv > r.max_ratio_cv:
                continue
            ranked.append((cv, -paired, endpoint, ratios))
        if not ranked:
            return None
        ranked.sort(key=lambda t: (t[0], t[1], t[2]))
        return ranked[0][2], ranked[0][3]

    def _only_new_endpoint(self, fp: str, window: List[Interval]) -> Optional[Tuple[str, List[float]]]:
        """The newest intervals, decided at once when only one endpoint can explain their calls.

        The endpoint is new: it had no requests earlier in the window. Every other endpoint
        with requests in the newest intervals was served earlier in an interval where the
        statement did not run at all (so it does not need it). The new one runs the statement
        ≥ ``min_repeats`` times per request. Its first requests may complete after the sample
        that counted their calls, so the newest two intervals are taken together. Anything
        less clear (an endpoint that changed behaviour, as after a deploy) waits for
        ``statement_min_intervals`` paired intervals."""
        recent, earlier = window[-2:], window[:-2]
        if not earlier:
            return None
        served = {e for iv in earlier for e in iv.requests}
        without = {e for iv in earlier if not iv.calls.get(fp) for e in iv.requests}
        in_recent = {e for iv in recent for e in iv.requests}
        new = in_recent - served
        if len(new) != 1 or not (in_recent - new) <= without:
            return None
        endpoint = new.pop()
        ratio = sum(iv.calls.get(fp, 0.0) for iv in recent) / sum(iv.requests.get(endpoint, 0) for iv in recent)
        return (endpoint, [ratio]) if ratio >= self.rules.min_repeats else None

    def _unexplained(self, episode: List[Interval], window: List[Interval]) -> bool:
        """Report by shape only when no request log gives rates, or when the episode has run
        long enough for an endpoint to qualify and none did."""
        if not any(iv.total_requests for iv in window):
            return True
        return len(episode) >= 3 * self.rules.min_intervals

    def _shape_spike(self, fp: str) -> bool:
        r = self.rules
        history = list(self._intervals)
        if len(history) < r.min_intervals + r.baseline_intervals:
            return False
        recent, base = history[-r.min_intervals:], history[-(r.min_intervals + r.baseline_intervals):-r.min_intervals]
        now = statistics.median(iv.calls.get(fp, 0.0) for iv in recent)
        before = statistics.median(iv.calls.get(fp, 0.0) for iv in base)
        if now < max(before * r.spike_ratio, before + r.min_jump):
            return False
        traffic_now = statistics.median(iv.total_requests for iv in recent)
        traffic_before = statistics.median(iv.total_requests for iv in base)
        low, high = sorted((traffic_now, traffic_before))
        return high == 0 or (low > 0 and high / low <= r.flat_traffic_ratio)

    def _note(self, key: Tuple[str, str], subject: Dict[str, str], fp: str, intervals: List[Interval],
              ratios: List[float], endpoint: str, critical: bool) -> None:
        att = self._found.get(key)
        calls = sum(iv.calls.get(fp, 0.0) for iv in intervals)
        if att is None:
            start = intervals[0].start if intervals[0].start is not None else intervals[0].end
            att = self._found[key] = Attribution(subject, fp, start, intervals[-1].end, critical, ratios, 0, calls)
            if len(self._found) > MAX_SHAPES:
                self._found.popitem(last=False)
        att.critical = att.critical or critical
        att.ratios = ratios or att.ratios
        att.last_seen = intervals[-1].end
        att.calls = max(att.calls, calls)
        for iv in intervals:
            served = iv.requests.get(endpoint, 0) if endpoint else 0
            if iv.index > att.counted_through and (iv.calls.get(fp) or served):
                att.intervals += 1 if iv.calls.get(fp) else 0
                att.requests += served  # a request whose calls fell in the previous interval counts too
                att.counted_through = iv.index
        att.dirty = True

    # ----- output ---------------------------------------------------------------------
    def findings(self, until: Optional[float], detector: str) -> List[Finding]:
        if self._open is not None and (until is None or until >= self._open.end + self.rules.settle_s):
            self._settle()
        out = []
        for att in self._found.values():
            if att.dirty:
                out.append(self._finding(att, detector))
                att.dirty = False
        return out

    def _large(self, att: Attribution) -> bool:
        """The log-based rule's "large" (report.is_large): calls per affected request and affected
        requests per second (over at least RATE_MIN_SPAN_S) both at the "page now" settings."""
        if not att.ratios:
            return False
        rate = att.requests / max(att.last_seen - att.first_seen, RATE_MIN_SPAN_S)
        return statistics.median(att.ratios) >= self.rules.critical_min_queries and rate >= self.rules.critical_min_rate

    def _finding(self, att: Attribution, detector: str) -> Finding:
        info = self._shapes.get(att.fingerprint)
        shape = info.shape.normalized if info else att.fingerprint
        table = info.shape.table if info else ""
        key_column = info.shape.key_column if info else ""
        endpoint = att.subject.get("endpoint", "")
        per_request = round(statistics.median(att.ratios), 1) if att.ratios else None
        details: Dict[str, object] = {
            "source": "pg_stat_statements",
            "statement": shape,
            "table": table,
            "queryids": list(info.queryids) if info else [],
            "intervals": att.intervals,
            "calls": att.calls,
            "statements": [{"sql": shape, "calls_per_request": per_request, "intervals": att.intervals}],
        }
        if per_request is not None:
            details["calls_per_request"] = per_request
        evidence = []
        if info is not None and info.last_metric is not None:
            evidence.append(Evidence.of(info.last_metric))
        request = self._last_request.get(endpoint) if endpoint else None
        if request is not None:
            evidence.append(Evidence.of(request))
        if endpoint:
            title = f"N+1 on {endpoint}: {shape} runs ~{per_request:g} times per request (pg_stat_statements)"
            summary = (f"pg_stat_statements shows `{shape}` running about {per_request:g} times per request of "
                       f"{endpoint}, steadily over {att.intervals} sampling intervals.")
        else:
            title = f"N+1 suspected: calls of {shape} jumped while request traffic stayed flat (pg_stat_statements)"
            summary = (f"pg_stat_statements shows `{shape}` jumping against its own baseline while requests stayed "
                       "flat; no endpoint's request rate explains it (is the request log followed?).")
        triage = Triage(
            summary=summary + (" It is new on an endpoint that ran without it." if att.critical else ""),
            likely_cause=(f"A lazy association load in a loop: one `{table}` row fetched by `{key_column}` per record "
                          "rendered, instead of one preloaded query."),
            containment=["If a recent release introduced it, roll it back or switch its feature flag off.",
                         f"Cap the page size of {endpoint or 'the endpoint'} so each request loads fewer rows."],
            prevention=[f"Preload the association (`includes`/`preload`) where {endpoint or 'the code'} iterates.",
                        "Turn on strict_loading (or Bullet/prosopite in CI) so lazy loads fail in tests."],
        )
        count = att.requests - att.reported if endpoint else att.intervals - att.reported
        att.reported += count
        critical = att.critical or (att.new_endpoint and self._large(att))
        return Finding(detector=detector, severity="critical" if critical else "warning", title=title,
                       subject=dict(att.subject), first_seen=att.first_seen, last_seen=att.last_seen, count=max(count, 0),
                       evidence=evidence, triage=triage, details=details)
