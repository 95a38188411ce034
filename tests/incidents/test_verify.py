"""FixVerifier on the reference app's real logs (tests/fixtures/logs/e2e/debug): each phase's
time from its phases.jsonl, a deploy marker placed between phases."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

from support import FIXTURES, feed_lines, require

from agent.events import Event
from agent.incidents.model import Incident
from agent.incidents.verify import EXPIRED, FIXED, NOT_FIXED, WAITING, FixVerifier, VerifyOptions, figures, verifiable
from agent.parsers.rails import RailsParser
from agent.parsers.sidekiq import SidekiqParser
from agent.timeparse import parse_iso

DEBUG = FIXTURES / "e2e" / "debug"


def _phases() -> Dict[str, float]:
    lines = require(DEBUG / "phases.jsonl").read_text().splitlines()
    return {d["phase"]: parse_iso(d["start"]) for d in map(json.loads, lines)}  # type: ignore[misc]


def _rails(rewrite_after: Optional[float] = None) -> List[Event]:
    """production.log's events; with ``rewrite_after``, requests to #index_fixed from then on are
    logged as #index (the deploy that made #index eager-load: the same lines, the new code)."""
    text = require(DEBUG / "production.log").read_text().splitlines(keepends=True)
    events = feed_lines(RailsParser(str(DEBUG / "production.log")), text)
    if rewrite_after is not None:
        for e in events:
            if e.kind == "request" and e.ts is not None and e.ts >= rewrite_after and e.endpoint == "PostsController#index_fixed":  # type: ignore[attr-defined]
                e.endpoint = "PostsController#index"  # type: ignore[attr-defined]
    return events


def _sidekiq() -> List[Event]:
    path = require(DEBUG / "sidekiq.log")
    return feed_lines(SidekiqParser(str(path)), path.read_text().splitlines(keepends=True))


def _incident(detector: str, subject: Dict[str, str], details: Optional[dict] = None) -> Incident:
    return Incident(id=f"{detector}-1", fingerprint="f", detector=detector, severity="critical", title="t", subject=subject,
                    status="open", opened_at=0.0, updated_at=0.0, last_reported_at=0.0, first_seen=0.0, last_seen=0.0,
                    finding={"details": details or {}})


def _run(events: List[Event], marker: float, inc: Incident, opts: VerifyOptions, revision: str = "r2"):  # type: ignore[no-untyped-def]
    v = FixVerifier(opts)
    events = sorted((e for e in events if e.ts is not None), key=lambda e: e.ts)  # type: ignore[no-any-return]
    v.feed([e for e in events if e.ts < marker])
    assert v.deploy(marker, revision, [inc]) == [inc.id]
    v.feed([e for e in events if e.ts >= marker])
    return v, v.results()


N1 = {"endpoint": "PostsController#index"}


def test_n_plus_one_still_there_after_the_marker_is_not_fixed():
    marker = _phases()["n_plus_one"]
    v, results = _run(_rails(), marker, _incident("n_plus_one", N1, {"queries_per_affected_request": 31}),
                      VerifyOptions(min_traffic=5))
    assert [r.status for r in results] == [NOT_FIXED]
    r = results[0]
    assert r.after["queries_per_request"] == 31 and r.hits == r.traffic == 10  # decided at the end of the batch
    assert r.before == {"queries_per_request": 31, "from": "incident"}  # no request of #index before the marker
    assert r.summary.startswith("not fixed by r2: queries per request 31 → 31")
    assert not v.watches


def test_n_plus_one_gone_after_the_deploy_is_fixed_with_before_and_after_figures():
    marker = _phases()["pool_exhaustion"]
    _, results = _run(_rails(rewrite_after=marker), marker, _incident("n_plus_one", N1), VerifyOptions(min_traffic=5))
    assert [r.status for r in results] == [FIXED]
    r = results[0]
    assert r.before["from"] == "traffic" and r.before["queries_per_request"] == 31 and r.before["requests"] == 10
    assert r.after["queries_per_request"] is not None and r.after["queries_per_request"] <= 2 and r.hits == 0
    assert "fixed in r2: queries per request 31 → " in r.summary


def test_job_still_failing_is_not_fixed_and_a_job_that_now_succeeds_is_fixed():
    phases = _phases()
    subject = {"job_class": "AlwaysFailsJob", "error_class": "PaymentGatewayError", "queue": "default"}
    _, results = _run(_sidekiq(), phases["sidekiq_failures"], _incident("sidekiq_failures", subject, {"jobs": 20}),
                      VerifyOptions(min_traffic=10))
    assert [(r.status, r.after["failure_rate"]) for r in results] == [(NOT_FIXED, 1.0)]
    assert "failure rate 100 % → 100 %" in results[0].summary

    flaky = [e for e in _sidekiq() if getattr(e, "job_class", "") == "FlakyOnceJob"]
    failed_at = next(e.ts for e in flaky if e.state == "fail")  # type: ignore[attr-defined]
    _, results = _run(flaky, failed_at + 0.001, _incident("sidekiq_failures", {"job_class": "FlakyOnceJob",
                                                                              "error_class": "Timeout::Error"}),
                      VerifyOptions(min_traffic=1))
    assert [r.status for r in results] == [FIXED]
    assert results[0].summary == "fixed in r2: failure rate 100 % → 0 % over 1 run(s) of the job"


POOL = {"pool": "database", "error_class": "ActiveRecord::ConnectionTimeoutError"}


def test_pool_timeouts_after_the_marker_are_not_fixed():
    _, results = _run(_rails(), _phases()["pool_exhaustion"], _incident("pool_exhaustion", POOL, {"errors": 12}),
                      VerifyOptions(min_traffic=10, pool_min_window_s=5))
    assert [r.status for r in results] == [NOT_FIXED]
    assert results[0].hits > 0 and results[0].before["from"] == "incident"


def test_no_pool_timeouts_after_the_marker_is_fixed_with_the_rate_before():
    marker = _phases()["sidekiq_failures"]
    _, results = _run(_rails() + _sidekiq(), marker, _incident("pool_exhaustion", POOL),
                      VerifyOptions(min_traffic=10, pool_min_window_s=10))
    assert [r.status for r in results] == [FIXED]
    r = results[0]
    assert r.before["from"] == "traffic" and r.before["timeouts"] == 12 and r.before["timeouts_per_min"] > 0
    assert r.after["timeouts"] == 0 and "→ 0 over" in r.summary


def test_too_little_traffic_says_so_once_keeps_watching_then_gives_up():
    marker = _phases()["n_plus_one"]
    v, results = _run(_rails(), marker, _incident("n_plus_one", N1, {"queries_per_affected_request": 31}),
                      VerifyOptions(min_traffic=1000, wait_s=20, timeout_s=600))
    assert [r.status for r in results] == [WAITING]
    assert "too little traffic so far (10 of 1000" in results[0].summary
    assert v.state("n_plus_one-1")["traffic"] == 10  # type: ignore[index]
    v.advance(marker + 100)
    assert v.results() == []
    v.advance(marker + 600)
    assert [r.status for r in v.results()] == [EXPIRED] and not v.watches


def test_only_the_detectors_own_subjects_are_verified():
    assert verifiable("n_plus_one", N1)
    assert not verifiable("n_plus_one", {"endpoint": "X#y", "problem": "slow_endpoint"})
    assert not verifiable("sidekiq_failures", {"process": "sidekiq"})
    assert not verifiable("pool_exhaustion", {"pool": "database", "metric": "waiting"})
    assert figures("pool_exhaustion", {"timeouts_per_min": 12}, {"timeouts_per_min": 0}) == "pool timeouts 12/min → 0"
