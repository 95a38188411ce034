"""N+1 from pg_stat_statements deltas against the request rates of a real info-level log.

The requests are the reference app's real info log (Rails < 7.2: no SQL, no query
count). The statement metrics come from the real collector (``PostgresCollector.deltas``)
fed cumulative ``pg_stat_statements`` rows that grow the way the app's endpoints run
them: PostsController#index loads 30 posts then each author by id (the N+1);
#index_fixed loads the authors in one ``IN`` query; every request runs ``SELECT 1``
and a BEGIN/COMMIT pair.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from agent.events import Event, Finding, Metric, Request
from agent.parsers.rails import RailsParser
from agent.sources.collectors.postgres import PostgresCollector
from agent.testing import FakeClock
from detectors.n_plus_one import NPlusOneDetector, NPlusOneSettings
from support import FIXTURES, feed_lines, require

INFO_LOG = FIXTURES / "e2e" / "info" / "production.log"

AUTHOR_BY_ID = 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2'
POSTS_PAGE = 'SELECT "posts".* FROM "posts" ORDER BY "posts"."id" ASC LIMIT $1'
AUTHORS_IN = 'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
PER_REQUEST: Dict[str, Dict[str, int]] = {  # statements each endpoint runs per request
    "PostsController#index": {POSTS_PAGE: 1, AUTHOR_BY_ID: 30},
    "PostsController#index_fixed": {POSTS_PAGE: 1, AUTHORS_IN: 1},
}
CONSTANT = {"SELECT $1": 1, "BEGIN": 3, "COMMIT": 3}  # per request, any endpoint: never an N+1
QUERY_IDS = {q: 1000 + i for i, q in enumerate([AUTHOR_BY_ID, POSTS_PAGE, AUTHORS_IN] + sorted(CONSTANT))}


def info_requests() -> List[Request]:
    events = feed_lines(RailsParser(str(INFO_LOG)), require(INFO_LOG).read_text().splitlines(keepends=True))
    return [e for e in events if isinstance(e, Request) and e.ts is not None]


def statement_metrics(requests: List[Request], interval_s: float, per_request=None) -> List[Metric]:
    """The collector's metrics for pg_stat_statements sampled every ``interval_s`` over these requests.

    A request's statements run at its start (Completed time minus duration), so requests
    that straddle a sample land their calls and their Completed line in different intervals.
    """
    per_request = per_request or (lambda r: PER_REQUEST.get(r.endpoint, {}))
    runs: List[Tuple[float, Dict[str, int]]] = []
    for r in requests:
        calls = dict(CONSTANT)
        calls.update(per_request(r))
        runs.append((r.ts - (r.duration_ms or 0.0) / 1000.0, calls))
    runs.sort(key=lambda run: run[0])
    collector = PostgresCollector(lambda: None, FakeClock(0.0))
    totals = {q: 0 for q in QUERY_IDS}
    out: List[Metric] = []
    t = requests[0].ts - interval_s
    end = max(r.ts for r in requests) + 2 * interval_s
    i = 0
    while t <= end:
        while i < len(runs) and runs[i][0] <= t:
            for q, n in runs[i][1].items():
                totals[q] += n
            i += 1
        rows = [(QUERY_IDS[q], calls, calls * 0.05, q) for q, calls in totals.items()]
        out.append(Metric(ts=t, source="poll:postgres", name="pg.connections", value=3.0, raw="pg.connections 3"))
        out.extend(collector.deltas(rows, t))
        t += interval_s
    return out


def run(events: List[Event], settings: Optional[NPlusOneSettings] = None) -> List[Finding]:
    det = NPlusOneDetector(settings)
    found: List[Finding] = []
    for e in sorted(events, key=lambda e: (e.ts, isinstance(e, Request))):
        det.feed(e)
    found.extend(det.flush(None))
    return [f for f in found if f.details.get("source") == "pg_stat_statements"]


def test_the_metric_stream_is_the_collectors_shape():
    metrics = statement_metrics(info_requests(), 1.0)
    calls = [m for m in metrics if m.name == "pg.statement_calls"]
    assert calls and all(set(m.labels) == {"queryid", "query"} and m.value > 0 for m in calls)
    assert {m.labels["query"] for m in calls} >= {AUTHOR_BY_ID, "BEGIN"}


def test_an_info_level_n_plus_one_is_attributed_to_its_endpoint_and_shape():
    requests = info_requests()
    assert sum(r.endpoint == "PostsController#index" for r in requests) == 10
    findings = run(list(requests) + statement_metrics(requests, 1.0))
    assert [f.subject for f in findings] == [{"endpoint": "PostsController#index"}]
    f = findings[0]
    assert f.detector == "n_plus_one" and f.severity == "warning"  # a new endpoint: no baseline to spike against
    assert f.details["statement"] == 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?'
    assert 20 <= f.details["calls_per_request"] <= 40 and f.details["intervals"] >= 2
    assert f.count == 10
    assert any('"/posts"' in ev.text or "Completed 200" in ev.text for ev in f.evidence)
    assert any(ev.path == "poll:postgres" and "pg.statement_calls" in ev.text for ev in f.evidence)


def test_the_fixed_twin_and_per_request_constants_stay_silent():
    requests = [r for r in info_requests() if r.endpoint != "PostsController#index"]
    assert run(list(requests) + statement_metrics(requests, 1.0)) == []


def test_statements_without_the_endpoints_requests_are_not_attributed_to_other_endpoints():
    """The N+1's calls reach the database but its requests are missing from the log: no endpoint
    tracks them, and the calls were not a jump over a baseline long enough: silent, never misattributed."""
    everything = info_requests()
    logged = [r for r in everything if r.endpoint != "PostsController#index"]
    found = run(list(logged) + statement_metrics(everything, 1.0))
    assert all(f.subject.get("endpoint") != "PostsController#index_fixed" for f in found)
    assert all("endpoint" not in f.subject for f in found)


def test_a_jump_without_any_request_log_is_reported_by_statement_shape():
    requests = info_requests()
    metrics = statement_metrics(requests, 2.0)  # the database's view only: no request events at all
    found = run(metrics)
    assert [f.subject for f in found] == [{"sql": 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?'}]
    assert found[0].severity == "warning" and "traffic stayed flat" in found[0].title


def test_an_n_plus_one_that_appears_on_an_endpoint_with_clean_history_is_critical():
    """#index_fixed regresses half way through (a bad deploy): 30 author lookups per request
    after ts X, on an endpoint that served many clean intervals before."""
    requests = [r for r in info_requests() if r.endpoint == "PostsController#index_fixed"]
    cut = requests[len(requests) // 2].ts

    def per_request(r: Request) -> Dict[str, int]:
        return {POSTS_PAGE: 1, AUTHOR_BY_ID: 30} if r.ts >= cut else {POSTS_PAGE: 1, AUTHORS_IN: 1}

    found = run(list(requests) + statement_metrics(requests, 1.0, per_request))
    assert [(f.subject, f.severity) for f in found] == [({"endpoint": "PostsController#index_fixed"}, "critical")]


def test_settings_come_from_config_tables():
    s = NPlusOneSettings.from_mapping({"statement_min_intervals": 3, "statement_max_ratio_cv": 0.3})
    assert (s.statement_min_intervals, s.statement_max_ratio_cv) == (3, 0.3)


def test_traffic_moving_from_the_fixed_twin_to_the_n_plus_one_endpoint_is_attributed_not_a_shape_jump():
    """Total traffic stays flat while it moves from #index_fixed to #index (the live e2e set-up):
    the request log explains the jump, so it is the endpoint's incident, decided on the first
    interval (the new endpoint is the only one that was not served before the calls began)."""
    requests = info_requests()
    fixed = [r for r in requests if r.endpoint == "PostsController#index_fixed"]
    n_plus_one = [r for r in requests if r.endpoint == "PostsController#index"]
    shift = fixed[-1].ts + 5.0 - n_plus_one[0].ts  # the N+1 requests come after the fixed ones
    moved = [Request(ts=r.ts + shift, source=r.source, line=r.line, endpoint=r.endpoint, duration_ms=r.duration_ms,
                     status=r.status) for r in n_plus_one]
    stream = fixed + moved
    found = run(list(stream) + statement_metrics(stream, 2.0))
    assert [f.subject for f in found] == [{"endpoint": "PostsController#index"}]
    assert found[0].details["intervals"] >= 1


def test_a_large_n_plus_one_arriving_with_a_new_endpoint_pages_as_the_log_based_rule_says():
    """Twice the reference app's N+1 traffic on a new endpoint: 30 lookups per request and 20
    requests (over at least 60 s: 0.33/s) are "large", so the new endpoint's N+1 is critical;
    the app's own 10 requests (0.17/s) stay a warning (test above)."""
    requests = info_requests()
    fixed = [r for r in requests if r.endpoint == "PostsController#index_fixed"]
    n_plus_one = [r for r in requests if r.endpoint == "PostsController#index"]
    start = fixed[-1].ts + 5.0 - n_plus_one[0].ts
    span = n_plus_one[-1].ts - n_plus_one[0].ts + 1.0
    moved = [Request(ts=r.ts + start + k * span, source=r.source, line=r.line, endpoint=r.endpoint,
                     duration_ms=r.duration_ms, status=r.status) for k in range(2) for r in n_plus_one]
    stream = fixed + moved
    found = run(list(stream) + statement_metrics(stream, 2.0))
    assert {f.severity for f in found} == {"critical"} and {tuple(f.subject.items()) for f in found} == {
        (("endpoint", "PostsController#index"),)}
    assert sum(f.count for f in found) == 20
