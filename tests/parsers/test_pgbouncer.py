"""The PgBouncer parser on a real pgbouncer 1.21 log and on error lines built from its format strings.

The corpus log (production, 100k lines) has no pooler error at all: ``built_pool_errors.log``
is written from pgbouncer's source strings (see fixtures/logs/pgbouncer/PROVENANCE.md).
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import List, Sequence

import pytest

from agent.events import Error, Event, Metric
from agent.parsers import FORMATS, sniff
from agent.parsers.pgbouncer import PgBouncerParser
from agent.parsers.postgres import PostgresParser
from agent.sources.replay import iter_events
from agent.timeparse import to_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "pgbouncer"
from support import CORPUS, feed_lines, require  # noqa: E402
FULL_LOG = CORPUS / "pgbadger" / "pgbouncer.1.21.log.gz"


def feed(lines: Sequence[str]) -> List[Event]:
    return feed_lines(PgBouncerParser("pgbouncer.log"), lines)


def events_of(name: str) -> List[Event]:
    return list(iter_events(str(FIXTURES / name)))


def test_stats_line_becomes_one_metric_per_figure_with_pid_label():
    metrics = [e for e in events_of("pgbouncer_1.21_excerpt.log") if isinstance(e, Metric)]
    by_name = {m.name: m.value for m in metrics}
    assert by_name == {
        "pgbouncer.xacts_per_s": 4874, "pgbouncer.queries_per_s": 7318, "pgbouncer.client_parses_per_s": 0,
        "pgbouncer.server_parses_per_s": 0, "pgbouncer.binds_per_s": 0, "pgbouncer.in_bytes_per_s": 2138226,
        "pgbouncer.out_bytes_per_s": 17457184, "pgbouncer.avg_xact_us": 1392, "pgbouncer.avg_query_us": 820,
        "pgbouncer.avg_wait_us": 45079,
    }
    assert {m.line for m in metrics} == {16} and metrics[0].labels == {"pid": "10384"}
    assert to_iso(metrics[0].ts) == "2023-12-19T02:06:37.241Z"  # CET is UTC+1


def test_client_closes_logins_and_sighup_are_skipped_silently():
    parser = PgBouncerParser("x.log")
    lines = (FIXTURES / "pgbouncer_1.21_excerpt.log").read_text().splitlines()
    events = []
    for n, line in enumerate(lines, 1):
        events.extend(parser.feed(line, n))
    assert all(isinstance(e, Metric) for e in events) and parser.unparsed == 0


def test_max_client_conn_close_and_its_pooler_error_are_one_error():
    errs = [e for e in events_of("built_pool_errors.log") if isinstance(e, Error)]
    first = errs[0]
    assert (first.origin, first.error_class, first.line) == ("pgbouncer", "max_client_conn", 2)
    assert first.message == "no more connections allowed (max_client_conn)"
    assert sum(1 for e in errs if e.error_class == "max_client_conn") == 1


def test_query_wait_timeout_and_client_connection_limits_are_errors():
    errs = [e for e in events_of("built_pool_errors.log") if isinstance(e, Error)]
    assert [e.error_class for e in errs] == [
        "max_client_conn", "query_wait_timeout", "max_db_client_connections", "server_login_retry",
    ]
    assert errs[3].level == "WARNING" and errs[3].message.startswith("server login has been failing")
    assert to_iso(errs[1].ts) == "2023-12-19T02:20:03.415Z"


def test_a_pooler_error_for_another_client_is_not_swallowed():
    lines = [
        "2023-12-19 03:20:01.102 CET [10384] LOG C-0x7f3bd6c47f40: retail/game_api@192.168.0.80:38296 closing because: query_wait_timeout (age=120s)",
        "2023-12-19 03:20:01.103 CET [10384] WARNING C-0x7f3bd777a748: retail/game_api@192.168.0.80:38306 pooler error: query_wait_timeout",
    ]  # built from objects.c / proto.c format strings
    assert [e.line for e in feed(lines)] == [1, 2]


def test_ordinary_server_recycling_is_not_an_error():
    lines = (FIXTURES / "built_pool_errors.log").read_text().splitlines()
    errs = [e for e in feed(lines) if isinstance(e, Error)]
    assert not any("lifetime" in e.message or "close request" in e.message for e in errs)


def test_pre_1_8_stats_line_is_read_too():
    metrics = [e for e in events_of("built_pool_errors.log") if isinstance(e, Metric) and e.line == 12]
    assert {m.name: m.value for m in metrics} == {
        "pgbouncer.req_per_s": 12, "pgbouncer.in_bytes_per_s": 1234, "pgbouncer.out_bytes_per_s": 5678,
        "pgbouncer.avg_query_us": 345,
    }


def test_envelope_stripped_lines_without_time_use_the_hint():
    lines = ["LOG stats: 10 xacts/s, 12 queries/s, in 100 B/s, out 200 B/s, xact 900 us, query 700 us, wait 30 us"]
    parser = PgBouncerParser("syslog")
    metrics = parser.feed(lines[0], 1, 1700000000.0)
    assert {m.name for m in metrics} >= {"pgbouncer.avg_wait_us", "pgbouncer.xacts_per_s"}
    assert all(m.ts == 1700000000.0 and m.labels == {} for m in metrics)


def test_junk_lines_count_as_unparsed():
    parser = PgBouncerParser("x.log")
    parser.feed("pg_ctl: could not start server", 1)
    parser.feed("", 2)
    assert parser.unparsed == 1


# -- sniffing --------------------------------------------------------------------------------------


def test_pgbouncer_files_are_sniffed_as_pgbouncer_and_not_as_postgres():
    lines = (FIXTURES / "pgbouncer_1.21_excerpt.log").read_text().splitlines()
    parser, score = sniff(lines)
    assert parser is PgBouncerParser and score == 1.0
    assert PostgresParser.sniff(lines) == 0.0


def test_postgres_stderr_lines_are_not_pgbouncer_lines():
    lines = (Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "postgres" / "light_head.log").read_text().splitlines()
    assert PgBouncerParser.sniff(lines) == 0.0



def test_registered_in_formats():
    assert PgBouncerParser in FORMATS


def test_whole_production_log_gives_nine_stats_samples_and_no_errors():
    with gzip.open(require(FULL_LOG), "rt", encoding="utf-8") as f:
        events = feed([line.rstrip("\n") for line in f])
    waits = [e.value for e in events if isinstance(e, Metric) and e.name == "pgbouncer.avg_wait_us"]
    assert waits == [45079, 5734, 6411, 2850, 1538, 468, 560, 855, 608]
    assert not any(isinstance(e, Error) for e in events)


def test_error_class_is_low_cardinality_for_messages_with_details():
    lines = [  # built from objects.c's "closing because: %s (age=%llus)" with a login failure reason
        '2023-12-19 03:20:09.001 CET [10384] LOG C-0x7f3bdae85a20: retail/ghost@192.168.0.80:38410 closing because: password authentication failed (age=0s)',
        '2023-12-19 03:20:09.101 CET [10384] WARNING C-0x7f3bdae85a30: (nodb)/(nouser)@192.168.0.80:38412 pooler error: no such database: retail_old',
    ]
    assert [e.error_class for e in feed(lines)] == ["password_authentication_failed", "no_such_database"]
