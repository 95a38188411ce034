"""Tagged Postgres statements are judged per request while the log is still being written.

The daemon flushes ``REORDER_SLACK_S`` behind the newest event, and no Rails ``Completed``
line closes a request seen only in the Postgres log: the detector finishes a tagged request
once its own log has moved ``orphan_gap_s`` past it. Lines: the reference app (Rails 6.1,
marginalia tags, Bullet off) against a cluster with ``log_min_duration_statement = 0``
(tests/fixtures/logs/accuracy/n_plus_one_info_tagged_pg_log, see PROVENANCE.md there).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from agent.events import Event
from agent.parsers.postgres import PostgresParser
from agent.pipeline import REORDER_SLACK_S
from detectors.n_plus_one.detector import NPlusOneDetector

PG_LOG = Path(__file__).resolve().parents[1] / "fixtures/logs/accuracy/n_plus_one_info_tagged_pg_log/postgresql.log"
N_PLUS_ONE_REQUESTS = 10  # GET /posts in the capture (phases.jsonl)


def _events() -> List[Event]:
    parser = PostgresParser(str(PG_LOG))
    out: List[Event] = []
    with open(PG_LOG, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            out += parser.feed(line.rstrip("\n"), lineno)
    return out + parser.finish()


def _last_statement_of_each_posts_request(events: List[Event]) -> Dict[str, float]:
    """request_id -> time of its last tagged statement, for GET /posts (PostsController#index)."""
    last: Dict[str, float] = {}
    for e in events:
        tags = getattr(e, "tags", None) or {}
        if tags.get("action") == "index" and e.ts is not None:
            last[tags["request_id"]] = e.ts
    return last


def test_a_live_tagged_n_plus_one_is_reported_without_waiting_for_the_reorder_slack():
    events = _events()
    newest = max(e.ts for e in events if e.ts is not None)
    last = _last_statement_of_each_posts_request(events)
    assert len(last) == N_PLUS_ONE_REQUESTS
    # the capture goes on with 4 s of /posts_fixed after the last /posts: every /posts request is over
    assert max(last.values()) < newest - NPlusOneDetector().s.orphan_gap_s - 1.0
    d = NPlusOneDetector()
    for e in events:
        d.feed(e)
    live = [f for f in d.flush(newest - REORDER_SLACK_S) if f.detector == "n_plus_one"]
    assert [f.subject for f in live] == [{"endpoint": "PostsController#index"}]
    assert live[0].details["evidence_sources"] == ["postgres_log"]
    assert live[0].details["sql_shapes"] == ['SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?']
    assert live[0].count == N_PLUS_ONE_REQUESTS
    assert [f for f in d.flush(None) if f.detector == "n_plus_one"] == []  # counted once, not again at the end


def test_silent_tagged_requests_of_one_log_are_not_finished_by_another_logs_time():
    events = [e for e in _events() if e.ts is not None]
    index = [e for e in events if "action:index," in getattr(e, "sql", "")]
    d = NPlusOneDetector()
    for e in index[:40]:  # the first /posts request, still open
        d.feed(e)
    later = index[-1]
    later.source = "replica.log"  # the same statement, from another cluster's log, seconds later
    d.feed(later)
    assert [f for f in d.flush(later.ts - REORDER_SLACK_S) if f.detector == "n_plus_one"] == []
