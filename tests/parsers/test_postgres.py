"""The PostgreSQL parser on real server logs (fixtures/logs/postgres, from pgbadger's fixtures).

``built_pool_errors.log`` and the inline lines marked "built" are written from PostgreSQL's
message strings (rails-signals.md B.4) because no corpus log has a connection-limit FATAL.
"""
from __future__ import annotations

import bz2
import gzip
import itertools
from pathlib import Path
from typing import List, Sequence

import pytest

from agent.events import DbStatement, Error, Event
from agent.parsers import FORMATS, sniff
from agent.parsers.envelope import ENVELOPES
from agent.parsers.postgres import PostgresParser
from agent.parsers.postgres_fields import local_ts, sql_tags
from agent.sources.replay import iter_events
from agent.timeparse import to_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "postgres"
from support import CORPUS, feed_lines, require  # noqa: E402


def read(path: Path) -> List[str]:
    opener = gzip.open if path.suffix == ".gz" else bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:  # type: ignore[operator]
        return [line.rstrip("\r\n") for line in f]


def feed(lines: Sequence[str], parser: PostgresParser = None) -> List[Event]:  # type: ignore[assignment]
    return feed_lines(parser or PostgresParser("test.log"), lines)


def events_of(name: str) -> List[Event]:
    return list(iter_events(str(FIXTURES / name)))


def errors(events: Sequence[Event]) -> List[Error]:
    return [e for e in events if isinstance(e, Error)]


def statements(events: Sequence[Event]) -> List[DbStatement]:
    return [e for e in events if isinstance(e, DbStatement)]


# -- connection limits, timeouts, deadlocks -------------------------------------------------


def test_too_many_clients_and_both_reserved_slot_wordings_are_fatal_53300_errors():
    errs = errors(events_of("built_pool_errors.log"))
    limit = [e for e in errs if e.code == "53300"]
    assert [e.message for e in limit] == [
        "sorry, too many clients already",
        "remaining connection slots are reserved for non-replication superuser connections",
        "remaining connection slots are reserved for roles with the SUPERUSER attribute",
        'remaining connection slots are reserved for roles with privileges of the "pg_use_reserved_connections" role',
    ]
    assert {(e.origin, e.level, e.error_class) for e in limit} == {("postgres", "FATAL", "PG::TooManyConnections")}
    assert [e.pid for e in limit] == ["4101", "4102", "4103", "4104"]
    assert to_iso(limit[0].ts) == "2024-05-01T12:00:01.000Z"


def test_statement_timeout_keeps_its_statement_line_in_raw():
    err = next(e for e in errors(events_of("built_pool_errors.log")) if "statement timeout" in e.message)
    assert (err.code, err.error_class, err.line) == ("57014", "PG::QueryCanceled", 5)
    assert err.raw.count("\n") == 1 and 'STATEMENT:  SELECT "posts".*' in err.raw


def test_lock_timeout_is_lock_not_available():
    err = next(e for e in errors(events_of("built_pool_errors.log")) if "lock timeout" in e.message)
    assert err.code == "55P03" and err.message == "canceling statement due to lock timeout"


def test_deadlock_collects_detail_tab_lines_hint_context_and_statement_of_the_same_backend():
    err = next(e for e in errors(events_of("built_pool_errors.log")) if e.code == "40P01")
    lines = err.raw.split("\n")
    assert len(lines) == 8 and lines[-1].endswith('STATEMENT:  UPDATE "accounts" SET "balance" = $1 WHERE "accounts"."id" = $2')
    assert err.message == "deadlock detected" and err.pid == "3994"


def test_heroku_logplex_deadlock_takes_sqlstate_from_the_prefix_and_its_syslog_continuations():
    events = events_of("logplex.gz")
    (err,) = errors(events)
    assert (err.code, err.error_class, err.pid, err.line) == ("40P01", "PG::TRDeadlockDetected", "4849", 9)
    assert err.raw.count("\n") == 9  # [19-1] … [19-10]
    assert "[19-7] \tProcess 4796:" in err.raw
    assert to_iso(err.ts) == "2019-03-14T00:23:00.000Z"


def test_lock_wait_and_checkpoint_lines_are_skipped_without_counting_as_unparsed():
    parser = PostgresParser("x.log")
    events = feed(read(FIXTURES / "logplex.gz"), parser)
    assert parser.unparsed == 0
    assert not any("still waiting" in e.raw.split("\n")[0] for e in events)
    parser = PostgresParser("y.log")
    assert feed(read(FIXTURES / "begin_end.log"), parser) == [] and parser.unparsed == 0


def test_cancel_on_user_request_carries_its_multi_line_statement():
    err = errors(events_of("queryid.log.gz"))[0]
    assert (err.code, err.message, err.pid) == ("57014", "canceling statement due to user request", "691")
    assert "STATEMENT:  explain (analyze,buffers) SELECT" in err.raw and err.raw.count("\n") >= 3


def test_rds_prefix_gives_user_database_and_pid():
    events = events_of("rds_head.log")
    errs = errors(events)
    assert [e.message[:30] for e in errs] == ["no pg_hba.conf entry for host "] * 2
    assert errs[0].pid == "12795" and errs[0].code == ""
    stmt = statements(events)[0]
    assert (stmt.user, stmt.database, stmt.pid, stmt.duration_ms) == ("postgres", "template1", "12774", 0.027)
    assert to_iso(stmt.ts) == "2020-03-11T19:40:44.000Z"  # CET is UTC+1


def test_pg17_stderr_error_keeps_detail_and_statement_and_skips_pg_ctl_lines_as_unparsed():
    parser = PostgresParser("pg.log")
    errs = errors(feed(read(FIXTURES / "pg_rawcsv.log"), parser))
    assert [e.level for e in errs] == ["FATAL", "ERROR", "ERROR"]
    assert errs[1].raw.count("\n") == 2 and "DETAIL:" in errs[1].raw and "STATEMENT:" in errs[1].raw
    assert parser.unparsed == 2  # "pg_ctl: could not start server", "Examine the log output."


# -- timed statements --------------------------------------------------------------------------


def test_duration_statements_become_db_statements_with_user_database_and_local_time():
    stmts = statements(events_of("tempfile_only_head.log"))
    first = stmts[0]
    assert (first.duration_ms, first.user, first.database, first.pid) == (11215.838, "creward", "creward", "28414")
    assert first.sql == 'SELECT COUNT(*) FROM "view_no_allocations"'
    assert to_iso(first.ts) == "2014-04-01T09:13:21.000Z"  # CEST is UTC+2
    assert all(s.kind == "db_statement" for s in stmts) and len(stmts) == 5


def test_temp_file_statement_line_is_not_a_db_statement():
    stmts = statements(events_of("tempfile_only_head.log"))
    assert [s.line for s in stmts] == [1, 2, 5, 8, 9]  # line 4 is the STATEMENT of a temp-file LOG


def test_execute_durations_keep_the_parameters_detail_in_raw_but_not_in_sql():
    stmts = statements(events_of("built_pool_errors.log"))
    execute = next(s for s in stmts if s.duration_ms == 1532.118)
    assert execute.sql.endswith("controller='posts'*/") and "parameters" not in execute.sql
    assert execute.raw.endswith("DETAIL:  parameters: $1 = '7'")


def test_sqlcommenter_and_legacy_query_log_tags_are_parsed_from_statements():
    stmts = statements(events_of("built_pool_errors.log"))
    assert [s.tags for s in stmts] == [
        {"action": "index", "application": "Blog", "controller": "posts"},
        {"application": "Blog", "controller": "posts", "action": "show"},
    ]


def test_marginalia_comment_with_colons_in_values_on_a_multi_line_heroku_statement():
    stmt = next(s for s in statements(events_of("logplex.gz")) if s.duration_ms == 85756.273)
    assert stmt.sql.startswith('UPDATE "checkers" SET redundant_missions_count =\n')
    assert stmt.tags["job"] == "RedundantUpdates::UpdateCheckersWithMissions"
    assert stmt.tags["line"] == "/app/workers/redundant_updates/update_checkers_with_missions.rb:5:in `perform'"
    assert stmt.pid == "5925" and stmt.raw.count("\n") == 5


def test_stderr_tab_continuations_extend_the_sql():
    stmt = statements(events_of("queryid.log.gz"))[1]
    assert stmt.duration_ms == 25.45 and stmt.sql.count("\n") >= 8
    assert "FROM pg_catalog.pg_class c" in stmt.sql


def test_verbose_error_verbosity_durations_are_read_past_the_sqlstate():
    stmts = statements(events_of("rla_postgresql.log"))
    assert len(stmts) == 10
    assert stmts[1].sql.startswith("SELECT tablename\n") and stmts[1].sql.count("\n") == 2
    assert all("LOCATION" not in s.sql for s in stmts)


def test_crlf_file_and_appli_prefix():
    stmts = statements(events_of("postgresql_param_range.log"))
    assert [s.duration_ms for s in stmts] == [778.166, 747.825, 133.424]
    assert (stmts[0].user, stmts[0].database) == ("usr6", "progdb")


# -- syslog, csvlog, JSON ------------------------------------------------------------------------


def test_raw_syslog_lines_join_split_statements_and_count_other_programs_as_unparsed():
    parser = PostgresParser(str(FIXTURES / "pg_syslog_head.log"))
    events = feed(read(FIXTURES / "pg_syslog_head.log"), parser)
    stmts = statements(events)
    assert stmts[0].pid == "10819" and stmts[0].database == "postgres" and stmts[0].user == "postgres"
    assert stmts[0].sql.count("\n") == 7 and stmts[0].sql.endswith("ORDER BY 1;")
    assert "#011" not in stmts[0].sql
    assert parser.unparsed == 3  # the three systemd[1] lines


def test_syslog_lines_with_the_envelope_stripped_give_the_same_statements():
    syslog = next(e for e in ENVELOPES if e.name == "syslog")
    raw = read(FIXTURES / "pg_syslog_head.log")
    stripped = [syslog.split(line, 2019) for line in raw]
    assert stripped[0][0].startswith("[1-1] db=,user=,app=,client= LOG:")
    parser = PostgresParser("stripped.log")
    events: List[Event] = []
    for n, (line, hint) in enumerate(stripped, 1):
        events.extend(parser.feed(line, n, hint))
    events.extend(parser.finish())
    assert [(s.pid, s.duration_ms, s.sql) for s in statements(events)] == [
        ("", s.duration_ms, s.sql) for s in statements(feed(raw))
    ]
    assert to_iso(statements(events)[0].ts) == "2019-02-11T13:15:40.000Z"


def test_csvlog_durations_skip_bind_and_keep_execute():
    stmts = statements(events_of("anonymize.log"))
    assert [s.duration_ms for s in stmts] == [26.12, 0.24, 36.388, 21.083, 1221.083]
    assert stmts[0].sql == "select * from testZustaendigkeiten($1, $2, $3, $4, $5)"
    assert (stmts[0].user, stmts[0].database, stmts[0].pid) == ("aaaa", "aaaa", "1486")
    assert to_iso(stmts[0].ts) == "2021-01-22T09:03:22.785Z"


def test_csvlog_record_with_a_newline_inside_a_quoted_field_is_one_error():
    # built: a PG 12 csvlog line whose message field holds a newline (csvlog quotes it)
    lines = [
        '2024-05-01 12:00:03.001 UTC,"rails","app",3990,"10.0.0.12:51000",6632f0a1.f96,57,"SELECT",'
        '2024-05-01 11:59:00 UTC,3/1201,0,ERROR,57014,"canceling statement due to statement timeout",,,,,,"SELECT pg_sleep(10)',
        '/* slow */",,,"puma"',
        '2024-05-01 12:00:04.001 UTC,"rails","app",3991,"10.0.0.12:51002",6632f0a1.f97,1,"SELECT",'
        '2024-05-01 11:59:00 UTC,3/1202,0,LOG,00000,"duration: 12.5 ms  statement: SELECT 1",,,,,,,,,"puma"',
    ]
    events = feed(lines)
    assert [e.kind for e in events] == ["error", "db_statement"]
    err = events[0]
    assert (err.code, err.line, err.level) == ("57014", 1, "ERROR") and err.raw.count("\n") == 1
    assert events[1].line == 3 and events[1].duration_ms == 12.5


def test_cloud_sql_json_fatal_lines_take_the_entry_timestamp():
    events = events_of("cloudsql_excerpt.log")
    errs = errors(events)
    assert [e.code for e in errs] == ["57P01", "57P01", "57P01", "57P03"]
    assert errs[0].message == "terminating connection due to administrator command"
    assert errs[0].pid == "24976" and to_iso(errs[0].ts) == "2020-05-02T13:31:41.270Z"
    assert errs[0].raw.startswith('{"insertId"')


def test_cloudnativepg_records_give_errors_with_sqlstate_and_statements():
    parser = PostgresParser("cnpg.log")
    events = feed(read(FIXTURES / "cnpg_excerpt.log"), parser)
    errs = errors(events)
    assert [(e.level, e.code, e.error_class) for e in errs] == [
        ("ERROR", "42703", "PG::UndefinedColumn"), ("ERROR", "42601", "PG::SyntaxError"), ("FATAL", "57P03", "PG::CannotConnectNow"),
    ]
    assert errs[0].message == 'column "names" does not exist' and errs[0].pid == "464"
    stmts = statements(events)
    assert len(stmts) == 1 and stmts[0].sql == ";" and stmts[0].user == "postgres" and stmts[0].duration_ms == 0.097
    assert parser.unparsed == 0  # the operator's own JSON lines are not PostgreSQL's


# -- helpers ----------------------------------------------------------------------------------------


def test_local_ts_honours_zone_abbreviations_and_offsets():
    assert local_ts("2014-04-01 11:13:21 CEST [28414]") == local_ts("2014-04-01 09:13:21 UTC")
    assert local_ts("2022-02-17 14:45:10.440 UTC [691]") == local_ts("2022-02-17T14:45:10.440Z")
    assert local_ts("2019-03-14T00:22:56+00:00 app[postgres.4882]:") == local_ts("2019-03-14 00:22:56")
    assert local_ts("2024-05-01 12:00:00 XYZ") == local_ts("2024-05-01 12:00:00 UTC")  # unknown zone: UTC


def test_comments_that_are_not_query_tags_give_no_tags():
    assert sql_tags("SELECT 1 /* hand-written note: ignore */") == {}
    assert sql_tags("SELECT /*+ IndexScan(posts) */ 1") == {}
    assert sql_tags("SELECT 1") == {}
    assert sql_tags("SELECT 1 /*controller='posts%2Fadmin',action='index'*/") == {"controller": "posts/admin", "action": "index"}


# -- sniffing ------------------------------------------------------------------------------------------


def head(path: Path, n: int = 64) -> List[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:  # type: ignore[operator]
        return [l.rstrip("\r\n") for l in itertools.islice(f, n) if l.strip()]


@pytest.mark.parametrize("name", [
    "logplex.gz", "queryid.log.gz", "tempfile_only_head.log", "light_head.log", "rds_head.log", "pg_syslog_head.log",
    "cloudsql_excerpt.log", "cnpg_excerpt.log", "anonymize.log", "pg_rawcsv.log", "begin_end.log",
    "postgresql_param_range.log", "rla_postgresql.log", "built_pool_errors.log",
])
def test_every_postgres_fixture_is_sniffed_as_postgres(name):
    parser, score = sniff(head(FIXTURES / name))
    # the CloudNativePG excerpt over-represents the operator's own (non-PostgreSQL) JSON lines
    assert parser is PostgresParser and score >= (0.6 if name.startswith("cnpg") else 0.8)


OTHER_FORMATS = [
    ("rails_log_parser", "example.log"),
    ("sidekiq_log_analyzer", "sidekiq.log"),
    ("request-log-analyzer", "merb.log"),
    ("request-log-analyzer", "sinatra.log"),
    ("request-log-analyzer", "mysql_slow_query.log"),
]



def test_a_sidekiq_warning_quoting_a_postgres_fatal_is_not_a_postgres_line():
    # built from ISSUE_QUOTES.md's Sidekiq shape and the PG::ConnectionBad text of https://github.com/fjordllc/bootcamp/issues/3162
    line = "2016-11-23T02:22:34.607Z 27199 TID-7ykv36o WARN: PG::ConnectionBad: FATAL:  remaining connection slots are reserved for non-replication superuser connections"
    assert PostgresParser.sniff([line]) == 0.0


def test_registered_in_formats():
    assert PostgresParser in FORMATS


def test_whole_rds_corpus_file_gives_every_duration_line():
    events = list(iter_events(str(require(CORPUS / "pgbadger" / "rds.log.bz2"))))
    assert sum(1 for e in events if e.kind == "db_statement") == 114594
    assert sum(1 for e in events if e.kind == "error") == 2  # the "deadlock" column names are not deadlocks
