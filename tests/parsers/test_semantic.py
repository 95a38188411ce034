"""The semantic_logger parser on JSON lines built from the formatter source (no corpus log exists).

fixtures/logs/semantic/rails_semantic_logger_built.log is built from reidmorrison/semantic_logger
``formatters/raw.rb`` + ``json.rb`` and rails_semantic_logger's ``process_action`` (see PROVENANCE.md there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List


from agent.events import Error, Event, Request
from agent.parsers import FORMATS, sniff
from agent.parsers.semantic import SemanticLoggerParser
from agent.sources.replay import iter_events
from agent.timeparse import to_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "semantic"
LOG = FIXTURES / "rails_semantic_logger_built.log"


def events() -> List[Event]:
    return list(iter_events(str(LOG), log_format="semantic"))


def lines() -> List[str]:
    return LOG.read_text().splitlines()


def test_completed_record_becomes_a_request_with_runtimes_and_query_counts():
    req = [e for e in events() if isinstance(e, Request)][0]
    assert (req.endpoint, req.method, req.path, req.status) == ("PostsController#index", "GET", "/posts", 200)
    assert (req.duration_ms, req.view_ms, req.db_ms) == (58.33, 40.43, 15.26)
    assert (req.queries, req.cached, req.allocations) == (12, 3, 25210)
    assert req.request_id == "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77" and req.pid == "4321" and req.line == 2
    assert to_iso(req.ts) == "2024-05-01T12:00:00.159Z"


def test_pool_timeout_500_request_has_no_query_counts_before_rails_7_2():
    req = [e for e in events() if isinstance(e, Request)][1]
    assert (req.endpoint, req.status, req.duration_ms) == ("PostsController#show", 500, 5009.12)
    assert req.queries is None and req.cached is None


def test_exception_records_become_rails_errors_with_backtrace_and_request_id():
    errs = [e for e in events() if isinstance(e, Error)]
    assert [(e.origin, e.error_class, e.level) for e in errs] == [
        ("rails", "ActiveRecord::ConnectionTimeoutError", "FATAL"), ("rails", "Stripe::APIConnectionError", "ERROR"),
    ]
    fatal = errs[0]
    assert fatal.message.startswith("could not obtain a connection from the pool within 5.000 seconds")
    assert fatal.backtrace[-1] == "/app/app/controllers/posts_controller.rb:12:in `show'"
    assert fatal.request_id == "9b1d2c3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e" and fatal.endpoint == ""


def test_request_id_falls_back_to_an_id_like_tag():
    err = [e for e in events() if isinstance(e, Error)][1]
    assert err.request_id == "5b6f1c2d7e8a9b0c1d2e3f4a"


def test_processing_started_and_sql_records_are_skipped_without_being_unparsed():
    parser = SemanticLoggerParser("app.log")
    out: List[Event] = []
    for n, line in enumerate(lines(), 1):
        out.extend(parser.feed(line, n))
    assert [e.line for e in out] == [2, 4, 5, 6] and parser.unparsed == 0


def test_controller_exception_with_action_in_payload_gets_the_endpoint():
    record = {  # built: a controller logger's `logger.error("…", exception)` with an action payload
        "timestamp": "2024-05-01T12:00:09.000000Z", "level": "error", "level_index": 4, "pid": 1, "name": "OrdersController",
        "message": "Checkout failed", "payload": {"action": "create"},
        "exception": {"name": "ActiveRecord::Deadlocked", "message": "PG::TRDeadlockDetected: ERROR:  deadlock detected", "stack_trace": []},
    }
    (err,) = SemanticLoggerParser("x").feed(json.dumps(record, separators=(",", ":")), 1)
    assert err.endpoint == "OrdersController#create" and err.error_class == "ActiveRecord::Deadlocked"


def test_text_lines_and_broken_json_are_unparsed():
    parser = SemanticLoggerParser("x")
    parser.feed("2024-05-01 12:00:00.123456 I [4321:puma srv tp 001] PostsController -- Completed #index", 1)
    parser.feed('{"message":"Completed #index", "payload":', 2)
    assert parser.unparsed == 2


# -- sniffing ----------------------------------------------------------------------------------------------


def test_semantic_logger_lines_score_full():
    assert SemanticLoggerParser.sniff(lines()) == 1.0


def test_a_semantic_logger_file_is_not_taken_for_lograge():
    parser, _ = sniff(lines())
    assert parser is SemanticLoggerParser



def test_lograge_json_is_not_semantic_logger():
    line = '{"method":"GET","path":"/posts","format":"html","controller":"PostsController","action":"index","status":200,"duration":58.33,"view":40.43,"db":15.26}'
    assert SemanticLoggerParser.sniff([line]) == 0.0


def test_registered_in_formats():
    assert SemanticLoggerParser in FORMATS
