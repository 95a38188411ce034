"""Did the fix work? Watch an incident's own signal on the traffic a new revision serves.

``FixVerifier`` is pure: it is fed the same events as the detectors and reads event time
only (never the wall clock), so ``run`` and a replay decide the same. A deploy marker
(``deploy(ts, revision, incidents)``) puts every verifiable incident in "verifying on R";
from then on each request / job run / error *at or after the marker's time* is measured
against the incident's subject:

    n_plus_one       {"endpoint"}                queries per request of the endpoint and the
                                                 worst repetition of one SQL shape in a request
    sidekiq_failures {"job_class", "error_class"} runs of the job class: done vs failed (with
                                                 that error class)
    pool_exhaustion  {"pool", "error_class"}      pool timeouts per minute; all requests and job
                                                 runs are the traffic

``results()`` returns what was decided since the last call: ``fixed`` (enough traffic, the
signal gone), ``not_fixed`` (the signal in ``still_share`` or more of it), ``waiting`` (once,
when ``wait_s`` of event time passed with too little traffic; watching goes on) and
``expired`` (``timeout_s`` passed with too little traffic; watching stops). Each carries the
before/after figures. "Before" comes from the last observations before the marker (kept
for every endpoint, job class and pool in bounded rings), else from the incident's own
finding details (the agent may have started after the incident opened).
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.events import Error, Event, Job, Request, Sql
from detectors.pool_exhaustion.signals import classify
from detectors.shared.sqlfp import shape

VERIFYING, WAITING, FIXED, NOT_FIXED, EXPIRED = "verifying", "waiting", "fixed", "not_fixed", "expired"
VERIFIABLE = ("n_plus_one", "sidekiq_failures", "pool_exhaustion")
HISTORY = 200  # observations kept per key before a marker
MAX_KEYS = 5000  # endpoints + job classes + pools remembered
MAX_PENDING_REQUESTS = 5000  # requests whose SQL arrived but not yet their Completed line
BEFORE_WINDOW_S = 600.0  # pool timeouts per minute "before": the last 10 minutes before the marker


@dataclass(frozen=True)
class VerifyOptions:
    min_traffic: int = 20  # requests to the endpoint / runs of the job / requests (pool) after the marker
    still_share: float = 0.1  # share of that traffic still showing the signal that means "not fixed"
    min_repeats: int = 5  # one SQL shape this many times in a request is the N+1 still there
    wait_s: float = 300.0  # event time after the marker before "too little traffic so far" is said
    timeout_s: float = 3600.0  # event time after the marker before watching gives up
    pool_min_window_s: float = 60.0  # pool: watch at least this long after the marker before "fixed"


def verifiable(detector: str, subject: Mapping[str, str]) -> bool:
    if detector == "n_plus_one":
        return bool(subject.get("endpoint")) and "problem" not in subject
    if detector == "sidekiq_failures":
        return bool(subject.get("job_class")) and set(subject) <= {"job_class", "error_class", "queue"}
    if detector == "pool_exhaustion":
        return bool(subject.get("pool")) and "metric" not in subject
    return False


@dataclass
class Watch:
    """One incident under verification."""

    incident_id: str
    detector: str
    subject: Dict[str, str]
    revision: str
    since: float  # the marker's event time
    before: Dict[str, Any]
    traffic: int = 0
    hits: int = 0  # traffic that still showed the signal
    values: List[float] = field(default_factory=list)  # n+1: queries per request after the marker
    last_ts: float = 0.0
    waited: bool = False


@dataclass
class VerifyResult:
    incident_id: str
    status: str  # WAITING | FIXED | NOT_FIXED | EXPIRED
    revision: str
    since: float
    at: float  # event time of the decision
    traffic: int
    hits: int
    before: Dict[str, Any]
    after: Dict[str, Any]
    summary: str

    def to_dict(self) -> Dict[str, Any]:
        return {"status": self.status, "revision": self.revision, "since": self.since, "at": self.at,
                "traffic": self.traffic, "hits": self.hits, "before": dict(self.before), "after": dict(self.after),
                "summary": self.summary}


class _Rings:
    """Bounded recent values per key (LRU over keys)."""

    def __init__(self, size: int = HISTORY, max_keys: int = MAX_KEYS) -> None:
        self.size, self.max_keys = size, max_keys
        self._d: "OrderedDict[Tuple[str, str], Deque[Tuple[float, Any]]]" = OrderedDict()

    def add(self, key: Tuple[str, str], ts: float, value: Any) -> None:
        ring = self._d.get(key)
        if ring is None:
            ring = self._d[key] = deque(maxlen=self.size)
            if len(self._d) > self.max_keys:
                self._d.popitem(last=False)
        else:
            self._d.move_to_end(key)
        ring.append((ts, value))

    def before(self, key: Tuple[str, str], ts: float) -> List[Tuple[float, Any]]:
        return [(t, v) for t, v in self._d.get(key, ()) if t < ts]


class FixVerifier:
    """Watches incidents' signals after deploy markers; see the module docstring."""

    def __init__(self, options: Optional[VerifyOptions] = None) -> None:
        self.o = options or VerifyOptions()
        self.watches: Dict[str, Watch] = {}
        self._history = _Rings()
        # request id -> [statements so far, single-row loads per SQL shape]; counts only, never the text
        self._sql: "OrderedDict[str, Tuple[List[int], Dict[str, int]]]" = OrderedDict()
        self._done: List[VerifyResult] = []
        self.high_water: Optional[float] = None

    # ------------------------------------------------------------------ markers
    def deploy(self, ts: float, revision: str, incidents: Iterable[Any]) -> List[str]:
        """Start verifying ``incidents`` (Incident-like: id, detector, subject, finding) on ``revision``."""
        started = []
        for inc in incidents:
            if not verifiable(inc.detector, inc.subject) or getattr(inc, "test", False):
                continue
            before = self._before(inc.detector, inc.subject, ts, (inc.finding or {}).get("details") or {}, inc)
            self.watches[inc.id] = Watch(inc.id, inc.detector, dict(inc.subject), revision, ts, before, last_ts=ts)
            started.append(inc.id)
        return started

    def resume(self, incident_id: str, detector: str, subject: Mapping[str, str], state: Mapping[str, Any]) -> None:
        """Watch again after a restart, from the state recorded on the incident."""
        self.watches[incident_id] = Watch(incident_id, detector, dict(subject), str(state.get("revision", "")),
                                          float(state.get("since", 0.0)), dict(state.get("before") or {}),
                                          last_ts=float(state.get("since", 0.0)), waited=state.get("status") == WAITING)

    # ------------------------------------------------------------------ events
    def feed(self, events: Iterable[Event]) -> None:
        for e in events:
            if e.ts is None:
                continue
            if self.high_water is None or e.ts > self.high_water:
                self.high_water = e.ts
            if isinstance(e, Sql):
                self._on_sql(e)
            elif isinstance(e, Request):
                self._on_request(e)
            elif isinstance(e, Job):
                self._on_job(e)
            elif isinstance(e, Error):
                self._on_error(e)
        self.advance(self.high_water)

    def _on_sql(self, e: Sql) -> None:
        if not e.request_id or e.cached:
            return
        seen = self._sql.get(e.request_id)
        if seen is None:
            seen = self._sql[e.request_id] = ([0], {})
            if len(self._sql) > MAX_PENDING_REQUESTS:
                self._sql.popitem(last=False)
        seen[0][0] += 1
        sh = shape(e.sql)
        if sh.kind == "load" and sh.in_list_max <= 1:  # batched loads (IN (…) of many) are never a repeat
            seen[1][sh.fingerprint] = seen[1].get(sh.fingerprint, 0) + 1

    def _on_request(self, e: Request) -> None:
        assert e.ts is not None
        seen = self._sql.pop(e.request_id, None) if e.request_id else None
        queries: Optional[int] = None
        repeats: Optional[int] = None
        if seen:
            queries = seen[0][0]
            repeats = max(seen[1].values(), default=0)  # the most times one single-row lookup shape ran
        elif e.queries is not None:
            queries = e.queries - (e.cached or 0)
        self._history.add(("requests", ""), e.ts, 1)
        if e.endpoint and queries is not None:
            self._history.add(("endpoint", e.endpoint), e.ts, (queries, repeats))
        for w in self._watching(e.ts):
            if w.detector == "pool_exhaustion":
                w.traffic += 1
            elif w.detector == "n_plus_one" and w.subject.get("endpoint") == e.endpoint and queries is not None:
                w.traffic += 1
                w.values.append(float(queries))
                if self._n1_still(w, queries, repeats):
                    w.hits += 1

    def _n1_still(self, w: Watch, queries: int, repeats: Optional[int]) -> bool:
        if repeats is not None:
            return repeats >= self.o.min_repeats
        before = w.before.get("queries_per_request")
        return before is not None and queries >= max(float(before) / 2, self.o.min_repeats)

    def _on_job(self, e: Job) -> None:
        assert e.ts is not None
        if e.state not in ("done", "fail") or not e.job_class:
            return
        self._history.add(("job", e.job_class), e.ts, (e.state, e.error_class))
        for w in self._watching(e.ts):
            if w.detector == "pool_exhaustion":
                w.traffic += 1
            elif w.detector == "sidekiq_failures" and w.subject.get("job_class") == e.job_class:
                w.traffic += 1
                if e.state == "fail" and _same_error(w.subject.get("error_class", ""), e.error_class):
                    w.hits += 1

    def _on_error(self, e: Error) -> None:
        assert e.ts is not None
        signal = classify(e.error_class, e.message)
        if signal is None:
            return
        self._history.add(("pool", signal.pool), e.ts, signal.error_class)
        for w in self._watching(e.ts):
            if w.detector == "pool_exhaustion" and w.subject.get("pool") == signal.pool and \
                    w.subject.get("error_class", signal.error_class) == signal.error_class:
                w.hits += 1

    def _watching(self, ts: float) -> List[Watch]:
        out = []
        for w in self.watches.values():
            if ts >= w.since:
                w.last_ts = max(w.last_ts, ts)
                out.append(w)
        return out

    # ------------------------------------------------------------------ decisions
    def advance(self, until: Optional[float]) -> None:
        """Decide what event time ``until`` allows (also called when the logs are quiet)."""
        if until is None:
            return
        for w in list(self.watches.values()):
            w.last_ts = max(w.last_ts, until)
            result = self._decide(w)
            if result is not None:
                self._done.append(result)
                if result.status != WAITING:
                    del self.watches[w.incident_id]

    def _decide(self, w: Watch) -> Optional[VerifyResult]:
        elapsed = w.last_ts - w.since
        enough = w.traffic >= self.o.min_traffic
        if w.detector == "pool_exhaustion":
            if w.hits and w.hits >= self.o.still_share * max(w.traffic, 1) and enough:
                return self._result(w, NOT_FIXED)
            if enough and elapsed >= self.o.pool_min_window_s:
                return self._result(w, FIXED if not w.hits else NOT_FIXED)
        elif enough:
            return self._result(w, NOT_FIXED if w.hits >= self.o.still_share * w.traffic else FIXED)
        if elapsed >= self.o.timeout_s:
            return self._result(w, EXPIRED)
        if elapsed >= self.o.wait_s and not w.waited:
            w.waited = True
            return self._result(w, WAITING)
        return None

    def results(self) -> List[VerifyResult]:
        out, self._done = self._done, []
        return out

    def state(self, incident_id: str) -> Optional[Dict[str, Any]]:
        w = self.watches.get(incident_id)
        if w is None:
            return None
        return {"status": VERIFYING, "revision": w.revision, "since": w.since, "traffic": w.traffic, "hits": w.hits,
                "before": dict(w.before)}

    def _result(self, w: Watch, status: str) -> VerifyResult:
        after = self._after(w)
        return VerifyResult(w.incident_id, status, w.revision, w.since, w.last_ts, w.traffic, w.hits, dict(w.before),
                            after, describe(w.detector, status, w.revision, w.before, after, w.traffic, self.o.min_traffic))

    def _after(self, w: Watch) -> Dict[str, Any]:
        if w.detector == "n_plus_one":
            return {"queries_per_request": _mean(w.values), "requests": w.traffic, "requests_with_n_plus_one": w.hits}
        if w.detector == "sidekiq_failures":
            return {"failure_rate": (w.hits / w.traffic) if w.traffic else None, "runs": w.traffic, "failures": w.hits}
        minutes = max(w.last_ts - w.since, 60.0) / 60.0
        return {"timeouts_per_min": round(w.hits / minutes, 2), "timeouts": w.hits, "traffic": w.traffic}

    # ------------------------------------------------------------------ before
    def _before(self, detector: str, subject: Mapping[str, str], ts: float, details: Mapping[str, Any],
                inc: Any) -> Dict[str, Any]:
        if detector == "n_plus_one":
            seen = self._history.before(("endpoint", subject.get("endpoint", "")), ts)
            if seen:
                return {"queries_per_request": _mean([float(q) for _, (q, _r) in seen]), "requests": len(seen), "from": "traffic"}
            qpr = details.get("queries_per_affected_request") or details.get("queries_per_request_after")
            return {"queries_per_request": qpr, "from": "incident"}
        if detector == "sidekiq_failures":
            runs = self._history.before(("job", subject.get("job_class", "")), ts)
            if runs:
                fails = sum(1 for _, (state, cls) in runs if state == "fail" and _same_error(subject.get("error_class", ""), cls))
                return {"failure_rate": fails / len(runs), "runs": len(runs), "from": "traffic"}
            jobs, recovered = details.get("jobs"), details.get("recovered_jobs") or 0
            rate = (int(jobs) - int(recovered)) / int(jobs) if jobs else None
            return {"failure_rate": rate, "from": "incident"}
        seen = [t for t, cls in self._history.before(("pool", subject.get("pool", "")), ts)
                if t >= ts - BEFORE_WINDOW_S and cls == subject.get("error_class", cls)]
        if seen:
            minutes = max(seen[-1] - seen[0], 60.0) / 60.0
            return {"timeouts_per_min": round(len(seen) / minutes, 2), "timeouts": len(seen), "from": "traffic"}
        span = max(float(getattr(inc, "last_seen", 0.0)) - float(getattr(inc, "first_seen", 0.0)), 60.0) / 60.0
        errors = details.get("errors") or getattr(inc, "count", 0)
        return {"timeouts_per_min": round(float(errors) / span, 2) if errors else None, "from": "incident"}


def _same_error(wanted: str, seen: str) -> bool:
    return not wanted or not seen or wanted == seen


def _mean(values: List[float]) -> Optional[float]:
    return round(sum(values) / len(values), 1) if values else None


def _num(v: Any) -> str:
    if v is None:
        return "?"
    f = float(v)
    return str(int(f)) if f == int(f) else f"{f:g}"


def _pct(v: Any) -> str:
    return "?" if v is None else f"{round(float(v) * 100)} %"


def figures(detector: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """"queries per request 31 → 2", "failure rate 100 % → 0 %", "pool timeouts 12/min → 0"."""
    if detector == "n_plus_one":
        return f"queries per request {_num(before.get('queries_per_request'))} → {_num(after.get('queries_per_request'))}"
    if detector == "sidekiq_failures":
        return f"failure rate {_pct(before.get('failure_rate'))} → {_pct(after.get('failure_rate'))}"
    b, a = before.get("timeouts_per_min"), after.get("timeouts_per_min")
    return f"pool timeouts {_num(b)}/min → {_num(a)}" + ("/min" if a else "")


def describe(detector: str, status: str, revision: str, before: Mapping[str, Any], after: Mapping[str, Any],
             traffic: int, min_traffic: int) -> str:
    what = {"n_plus_one": "request(s) to the endpoint", "sidekiq_failures": "run(s) of the job",
            "pool_exhaustion": "request(s) and job run(s)"}.get(detector, "event(s)")
    rev = revision or "the new revision"
    if status == FIXED:
        return f"fixed in {rev}: {figures(detector, before, after)} over {traffic} {what}"
    if status == NOT_FIXED:
        return f"not fixed by {rev}: {figures(detector, before, after)} over {traffic} {what}"
    if status == WAITING:
        return f"verifying on {rev}: too little traffic so far ({traffic} of {min_traffic} {what}); still watching"
    if status == EXPIRED:
        return f"not verified on {rev}: too little traffic ({traffic} of {min_traffic} {what}) before the timeout"
    return f"verifying on {rev}"
