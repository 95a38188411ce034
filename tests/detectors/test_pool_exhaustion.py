"""detectors/pool_exhaustion/ on real wordings, real corpus logs and built events.

Sidekiq lines below are quoted from GitHub issues (corpus/ISSUE_QUOTES.md; URL next to
each). They are reference quotes, written to tmp_path by the tests, not shipped data.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest

from agent.events import Deploy, Error, Event, Finding, Job, Metric, Request
from agent.scan import scan
from agent.sources.replay import iter_events
from detectors import REGISTRY
from detectors.base import AppFacts, DetectorContext
from detectors.pool_exhaustion import PoolExhaustionDetector, PoolExhaustionSettings
from detectors.pool_exhaustion.signals import classify

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "logs"
OWN = FIXTURES / "pool_exhaustion"
CORPUS = HERE.parent / "fixtures" / "corpus"  # the real-log corpus, copied into the repository
T0 = 1714564800.0  # 2024-05-01T12:00:00Z
E2E_FACTS = AppFacts(db_pool=3, db_checkout_timeout=2.0, puma_max_threads=8, puma_workers=0, sidekiq_concurrency=5)

TIMEOUT_5 = "could not obtain a connection from the pool within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use"


def run(events: List[Event], facts: AppFacts = AppFacts(), **settings: object) -> List[Finding]:
    detector = PoolExhaustionDetector(PoolExhaustionSettings(**settings), DetectorContext(facts=facts))  # type: ignore[arg-type]
    for e in events:
        detector.feed(e)
    return detector.flush(None)


def timeout_error(ts: float, rid: str = "", endpoint: str = "PostsController#index", pid: str = "4321", message: str = TIMEOUT_5) -> Error:
    return Error(ts=ts, source="production.log", line=int(ts - T0) + 1, raw=f"ActiveRecord::ConnectionTimeoutError ({message}):",
                 origin="rails", error_class="ActiveRecord::ConnectionTimeoutError", message=message,
                 request_id=rid, endpoint=endpoint, pid=pid, level="FATAL")


def request(ts: float, rid: str, status: int = 200, duration: float = 20.0, db: Optional[float] = 3.0, endpoint: str = "PostsController#index") -> Request:
    return Request(ts=ts, source="production.log", line=1, raw=f"Completed {status} in {duration:.0f}ms", request_id=rid,
                   method="GET", path="/posts", endpoint=endpoint, status=status, duration_ms=duration, db_ms=db, pid="4321")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def pool_incidents(paths: List[str], facts: AppFacts = AppFacts()) -> List[Finding]:
    return scan(paths, detectors=["pool_exhaustion"], facts=facts).incidents


# --------------------------------------------------------------------------- wordings

@pytest.mark.parametrize(
    "error_class, message, pool, subject_class, timeout, waited",
    [
        # Rails 3.2 era, https://github.com/sidekiq/sidekiq/issues/523
        ("ActiveRecord::ConnectionTimeoutError", "could not obtain a database connection within 5 seconds (waited 5.008356846 seconds). The max pool size is currently 25; consider increasing it.",
         "database", "ActiveRecord::ConnectionTimeoutError", 5.0, 5.008356846),
        # Rails 4.1/4.2, https://github.com/sidekiq/sidekiq/issues/2903
        ("ActiveRecord::ConnectionTimeoutError", "could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)",
         "database", "ActiveRecord::ConnectionTimeoutError", 5.0, 5.0),
        # Rails 5+, https://github.com/sidekiq/sidekiq/issues/3254
        ("ActiveRecord::ConnectionTimeoutError", "could not obtain a connection from the pool within 5.000 seconds (waited 5.145 seconds); all pooled connections were in use",
         "database", "ActiveRecord::ConnectionTimeoutError", 5.0, 5.145),
        # line break inside the message as pasted, https://github.com/sidekiq/sidekiq/issues/3126
        ("ActiveRecord::ConnectionTimeoutError", "could not obtain a database connection within 5.000 seconds (waited\n 5.000 seconds)",
         "database", "ActiveRecord::ConnectionTimeoutError", 5.0, 5.0),
        # wrapped by a view error: the message still says it
        ("ActionView::Template::Error", TIMEOUT_5, "database", "ActiveRecord::ConnectionTimeoutError", 5.0, 5.001),
        ("ActiveRecord::ExclusiveConnectionTimeoutError", "could not obtain ownership of all database connections in 5 seconds (#<PG::Connection> is owned by #<Thread:0x1 run>)",
         "database", "ActiveRecord::ExclusiveConnectionTimeoutError", 5.0, None),
        # https://github.com/fjordllc/bootcamp/issues/3162
        ("PG::ConnectionBad", "FATAL:  remaining connection slots are reserved for non-replication superuser connections",
         "database_server", "too_many_connections", None, None),
        # https://github.com/fjordllc/bootcamp/issues/6434 (socket path abbreviated there too)
        ("ActiveRecord::ConnectionNotEstablished", 'connection to server on socket "/cloudsql/<project>:<region>:<instance>/.s.PGSQL.5432" failed: FATAL: sorry, too many clients already',
         "database_server", "too_many_connections", None, None),
        ("", "remaining connection slots are reserved for roles with the SUPERUSER attribute", "database_server", "too_many_connections", None, None),
        ("Mysql2::Error::ConnectionError", "Too many connections", "database_server", "too_many_connections", None, None),
        ("PG::ConnectionBad", "ERROR:  no more connections allowed (max_client_conn)", "pgbouncer", "max_client_conn", None, None),
        ("", "pooler error: query_wait_timeout", "pgbouncer", "query_wait_timeout", None, None),
        ("ConnectionPool::TimeoutError", "Waited 1 sec, 0/5 available", "redis", "ConnectionPool::TimeoutError", None, 1.0),
        ("ConnectionPool::TimeoutError", "Waited 1 sec", "redis", "ConnectionPool::TimeoutError", None, 1.0),
    ],
)
def test_every_pool_wording_is_recognised(error_class: str, message: str, pool: str, subject_class: str,
                                          timeout: Optional[float], waited: Optional[float]) -> None:
    signal = classify(error_class, message)
    assert signal is not None
    assert (signal.pool, signal.error_class, signal.timeout_s, signal.waited_s) == (pool, subject_class, timeout, waited)


def test_rails3_message_carries_the_pool_size() -> None:
    # https://github.com/sidekiq/sidekiq/issues/2943
    signal = classify("ActiveRecord::ConnectionTimeoutError", "could not obtain a database connection within 5 seconds (waited 5.000166496 seconds). The max pool size is currently 5; consider increasing it.")
    assert signal is not None and signal.pool_size == 5


@pytest.mark.parametrize(
    "error_class, message",
    [
        ("PG::QueryCanceled", "ERROR:  canceling statement due to statement timeout"),
        ("ActiveRecord::QueryCanceled", "PG::QueryCanceled: ERROR:  canceling statement due to statement timeout"),
        # https://github.com/sidekiq/sidekiq/issues/594 (its other error is a pool one; this one is not)
        ("ActiveRecord::StatementInvalid", ": execution expired: SELECT COUNT(*) FROM"),
        ("ActiveRecord::ConnectionNotEstablished", 'connection to server at "127.0.0.1", port 5432 failed: Connection refused'),
        ("PG::ConnectionBad", 'could not translate host name "db" to address: Name or service not known'),
        ("Rack::Timeout::RequestTimeoutException", "Request ran for longer than 15000ms"),
        ("RedisClient::CannotConnectError", "Connection refused - connect(2) for 127.0.0.1:6379"),
        ("Faraday::TooManyRequestsError", "Too many connections from this IP, slow down"),
        ("ActiveRecord::RecordNotFound", "Couldn't find User with 'id'=12"),
    ],
)
def test_look_alikes_are_not_pool_exhaustion(error_class: str, message: str) -> None:
    assert classify(error_class, message) is None


# --------------------------------------------------------------------------- Sidekiq quotes

def test_sidekiq_fail_after_5s_then_timeout_is_one_job_failure(tmp_path: Path) -> None:
    # Sidekiq + ActiveRecord 4.1.14.1, https://github.com/sidekiq/sidekiq/issues/2903
    path = write(tmp_path, "sidekiq.log", (
        "2016-03-28T15:32:56.167Z 2839 TID-ow54a682o ChangeAwayStatusWorker JID-462f59a3632454ab7061741e INFO: fail: 5.001 sec\n"
        "2016-03-28T15:32:56.168Z 2839 TID-ow54a682o WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)\n"
    ))
    [incident] = pool_incidents([path])
    assert incident.subject == {"pool": "database", "error_class": "ActiveRecord::ConnectionTimeoutError"}
    assert incident.count == 1
    assert incident.severity == "warning"  # one isolated timeout
    assert incident.details["job_classes"] == [("ChangeAwayStatusWorker", 1)]
    assert incident.details["checkout_timeout_s"] == [5.0]


def test_sidekiq_foreman_quote_without_its_prefix_names_the_job(tmp_path: Path) -> None:
    # ActiveRecord 4.2.5 under Foreman, https://github.com/sidekiq/sidekiq/issues/2769
    # ("HH:MM:SS worker.1 | " removed: no envelope reads Foreman's prefix)
    path = write(tmp_path, "sidekiq.log", (
        "2016-01-14T05:59:23.653Z 42480 TID-ov6c4r79k DripContentJob JID-9cd3d4c8b1cfe2d050229ae1 INFO: start\n"
        "2016-01-14T05:59:28.655Z 42480 TID-ov6c4r79k DripContentJob JID-9cd3d4c8b1cfe2d050229ae1 INFO: fail: 5.002 sec\n"
        "2016-01-14T05:59:28.655Z 42480 TID-ov6c4r79k WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited 5.001 seconds)\n"
    ))
    [incident] = pool_incidents([path], facts=AppFacts(db_pool=5, sidekiq_concurrency=10))
    assert incident.details["job_classes"] == [("DripContentJob", 1)]
    assert incident.details["waited_s"] == {"min": 5.001, "max": 5.001}
    assert "pool 5 < Sidekiq concurrency 10" in incident.triage.likely_cause
    assert "Puma" not in incident.triage.likely_cause  # only the job tier failed
    assert any("lower Sidekiq concurrency to 5" in c for c in incident.triage.containment)


def test_sidekiq_warn_only_rails5_wording(tmp_path: Path) -> None:
    # Sidekiq 4.2.6 / ActiveRecord 5.0.0.1, https://github.com/sidekiq/sidekiq/issues/3254
    path = write(tmp_path, "sidekiq.log",
                 "2016-11-23T02:22:34.607Z 27199 TID-7ykv36o WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a connection from the pool within 5.000 seconds (waited 5.145 seconds); all pooled connections were in use\n")
    [incident] = pool_incidents([path])
    assert incident.details["waited_s"] == {"min": 5.145, "max": 5.145}
    assert incident.details["wordings"] == {"rails5+": 1}


def test_sidekiq_message_broken_over_two_lines(tmp_path: Path) -> None:
    # runit/svlogd, https://github.com/sidekiq/sidekiq/issues/3126 (svlogd time prefix removed)
    path = write(tmp_path, "sidekiq.log", (
        "2016-09-07T03:22:10.943Z 9614 TID-gnofc4fis WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited\n"
        " 5.000 seconds)\n"
    ))
    [incident] = pool_incidents([path])
    assert incident.count == 1 and incident.details["waited_s"] == {"min": 5.0, "max": 5.0}


def test_sidekiq_job_fail_and_activejob_error_of_one_failure_count_once() -> None:
    fail = Job(ts=T0, source="sidekiq.log", line=1, state="fail", job_class="ImportJob", jid="abc", pid="77", tid="t1",
               elapsed_s=5.002, error_class="ActiveRecord::ConnectionTimeoutError", error_message=TIMEOUT_5)
    aj = Error(ts=T0 - 0.004, source="production.log", line=9, origin="activejob", error_class="ActiveRecord::ConnectionTimeoutError",
               message=TIMEOUT_5, job_class="ImportJob", jid="0f6b-aj-id", pid="77")
    [incident] = run([aj, fail])
    assert incident.count == 1
    assert incident.details["job_classes"] == [("ImportJob", 1)]


def test_concurrent_job_failures_in_one_process_are_all_counted() -> None:
    fails = [Job(ts=T0 + i * 0.001, source="sidekiq.log", line=i, state="fail", job_class="ImportJob", jid=f"j{i}", pid="77",
                 tid=f"t{i}", elapsed_s=5.0, error_class="ActiveRecord::ConnectionTimeoutError", error_message=TIMEOUT_5) for i in range(5)]
    [incident] = run(fails)
    assert incident.count == 5
    assert incident.severity == "critical"


# --------------------------------------------------------------------------- Rails logs

def test_rails_log_pool_timeouts_are_one_critical_incident_with_blast_radius_and_holders() -> None:
    [incident] = pool_incidents([str(OWN / "rails61_pool_timeouts.log")], facts=E2E_FACTS)
    assert incident.severity == "critical"
    assert incident.subject == {"pool": "database", "error_class": "ActiveRecord::ConnectionTimeoutError"}
    assert incident.count == 6
    d = incident.details
    assert dict(d["endpoints"]) == {"PostsController#index": 2, "PostsController#show": 2, "HealthController#show": 2}
    assert d["checkout_timeout_s"] == [2.0] and d["waited_s"] == {"min": 2.002, "max": 2.002}
    assert d["failed_request_ms_median"] == 2003.0
    assert [h["endpoint"] for h in d["holders"]] == ["SlowController#hold"] * 3
    assert d["error_share"] == 1.0
    texts = [e.text for e in incident.evidence]
    assert any("ActiveRecord::ConnectionTimeoutError (could not obtain" in t for t in texts)
    assert any("Completed 500 Internal Server Error in 2003ms" in t for t in texts)
    assert any("ActiveRecord: 10004.6ms" in t for t in texts)  # a request that held a connection
    assert "pool 3 < Puma max threads 8: up to 5 web threads" in incident.triage.likely_cause
    assert "SlowController#hold x3" in incident.triage.likely_cause
    assert any("raise `pool` to 8" in c and "lower Puma threads (RAILS_MAX_THREADS) to 3" in c for c in incident.triage.containment)


def test_without_app_facts_triage_names_the_files_to_check() -> None:
    [incident] = pool_incidents([str(OWN / "rails61_pool_timeouts.log")])
    assert "config/database.yml" in incident.triage.likely_cause and "config/puma.rb" in incident.triage.likely_cause
    assert "config/sidekiq.yml" in incident.triage.likely_cause


def test_pool_larger_than_threads_blames_holders_not_sizing() -> None:
    [incident] = pool_incidents([str(OWN / "rails61_pool_timeouts.log")], facts=AppFacts(db_pool=10, puma_max_threads=5))
    assert "pool 10 > Puma max threads 5" in incident.triage.likely_cause
    assert "held too long" in incident.triage.likely_cause
    assert not any(c.startswith("Make pool >= threads") for c in incident.triage.containment)


def test_lograge_error_and_fatal_block_of_one_request_count_once() -> None:
    [incident] = pool_incidents([str(OWN / "lograge_pool_timeouts.log")])
    assert incident.count == 4
    assert incident.details["errors_by_origin"] == {"lograge": 4}
    assert [h["endpoint"] for h in incident.details["holders"]] == ["ReportsController#export"] * 2


@pytest.mark.parametrize("name", ["rails52_production.log", "rails6_production.log"])
def test_500s_from_other_errors_are_not_pool_exhaustion(name: str) -> None:
    # rails_log_parser's example logs: RecordNotFound, PG::UndefinedColumn, InvalidAuthenticityToken … (copied from the corpus)
    path = str(FIXTURES / "rails" / name)
    assert any(isinstance(e, Request) and e.status == 500 for e in iter_events(path))  # the 500s are there
    assert pool_incidents([path]) == []


CORPUS_FILES = [
    "pgbadger/anonymize.log", "pgbadger/begin_end.log", "pgbadger/cloudsql.log.gz", "pgbadger/cnpg.log.gz",
    "pgbadger/logplex.gz", "pgbadger/pg_rawcsv.log", "pgbadger/pgbouncer.1.21.log.gz", "pgbadger/queryid.log.gz",
    "pgbadger/tempfile_only.log.gz", "pgbadger/rds.log.bz2", "sidekiq_log_analyzer/sidekiq.log.gz",
    "request-log-analyzer/rails3_failure.log", "select_rails_log/simple.log",
]


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_logs_without_pool_errors_yield_nothing(name: str) -> None:
    # no "too many clients", no ConnectionTimeoutError in these (grep-checked); FATALs there are other problems
    path = CORPUS / name
    assert path.exists(), f"missing test data: {path}"
    assert pool_incidents([str(path)]) == []


# --------------------------------------------------------------------------- severity

def test_single_isolated_timeout_is_a_warning() -> None:
    [incident] = run([request(T0 + i, f"r{i}") for i in range(50)] + [timeout_error(T0 + 20, "x")])
    assert incident.severity == "warning" and incident.count == 1
    assert incident.details["during_deploy"] is None


def test_single_timeout_right_after_a_deploy_is_a_warning_that_names_the_deploy() -> None:
    deploy = Deploy(ts=T0, source="REVISION", revision="5e2d1c0b9a8f")
    [incident] = run([deploy, timeout_error(T0 + 40, "x")])
    assert incident.severity == "warning"
    assert incident.details["during_deploy"]["revision"] == "5e2d1c0b9a8f"  # type: ignore[index]
    assert "deploy" in incident.triage.likely_cause


def test_five_timeouts_within_a_minute_are_critical_but_four_are_not() -> None:
    traffic = [request(T0 + i * 0.1, f"r{i}") for i in range(1000)]  # 4 errors are ~1% of it
    assert run(traffic + [timeout_error(T0 + 10 * i, f"e{i}") for i in range(5)])[0].severity == "critical"
    assert run(traffic + [timeout_error(T0 + 10 * i, f"e{i}") for i in range(4)])[0].severity == "warning"


def test_share_of_requests_makes_a_slow_trickle_critical() -> None:
    # 3 errors over 3 minutes (never 5 a minute) among 20 requests = 15%
    events: List[Event] = [request(T0 + i * 9, f"r{i}") for i in range(17)]
    events += [timeout_error(T0 + i * 80, f"e{i}") for i in range(3)]
    events += [request(T0 + i * 80, f"e{i}", status=500, duration=5004, db=0.0) for i in range(3)]
    events.sort(key=lambda e: e.ts or 0)
    [incident] = run(events)
    assert incident.severity == "critical"
    assert incident.details["error_share"] == pytest.approx(3 / 20)


def test_the_same_trickle_in_heavy_traffic_is_a_warning() -> None:
    events: List[Event] = [request(T0 + i * 0.2, f"r{i}") for i in range(1000)]
    events += [timeout_error(T0 + i * 80, f"e{i}") for i in range(3)]
    events.sort(key=lambda e: e.ts or 0)
    assert run(events)[0].severity == "warning"


def test_exclusive_timeouts_alone_stay_a_warning() -> None:
    errors = [Error(ts=T0 + i, source="production.log", line=i, origin="rails", error_class="ActiveRecord::ExclusiveConnectionTimeoutError",
                    message="could not obtain ownership of all database connections in 5 seconds") for i in range(10)]
    [incident] = run(errors)
    assert incident.severity == "warning"
    assert incident.subject["error_class"] == "ActiveRecord::ExclusiveConnectionTimeoutError"


def test_thresholds_are_settings() -> None:
    errors = [timeout_error(T0 + i, f"e{i}") for i in range(2)]
    assert run(errors)[0].severity == "warning"
    assert run(errors, critical_errors=2)[0].severity == "critical"
    assert run(errors, min_errors=3) == []


def test_errors_in_one_of_several_web_processes_point_at_a_leak() -> None:
    traffic = [Request(ts=T0 + i, source="production.log", line=i, request_id=f"r{i}", status=200, duration_ms=20.0,
                       db_ms=2.0, pid=("4321" if i % 2 else "4400")) for i in range(40)]
    [incident] = run(traffic + [timeout_error(T0 + 10 + i, f"e{i}", pid="4321") for i in range(3)])
    assert "one process (pid 4321) of 2 active" in incident.triage.likely_cause


def test_a_single_web_process_is_not_called_a_leak() -> None:
    [incident] = run([request(T0 + i, f"r{i}") for i in range(40)] + [timeout_error(T0 + 10 + i, f"e{i}") for i in range(3)])
    assert "leak in that process" not in incident.triage.likely_cause


def test_a_request_that_waited_for_a_connection_is_not_a_holder() -> None:
    # e2e shape: /posts_fixed took 1833 ms but only 13.5 ms in ActiveRecord: it waited, it did not hold
    waited = request(T0 + 3, "w", duration=1833.0, db=13.5, endpoint="PostsController#index_fixed")
    held = request(T0 + 4, "h", duration=4024.0, db=4014.6, endpoint="SlowController#hold")
    [incident] = run([timeout_error(T0 + 2, "e"), waited, held])
    assert [h["endpoint"] for h in incident.details["holders"]] == ["SlowController#hold"]  # type: ignore[union-attr]


def test_sidekiq_restart_just_before_a_job_timeout_is_named() -> None:
    from agent.events import Process

    boot = Process(ts=T0, source="sidekiq.log", line=1, component="sidekiq", state="boot", pid="77")
    fail = Job(ts=T0 + 8, source="sidekiq.log", line=2, state="fail", job_class="ImportJob", jid="j1", pid="77",
               elapsed_s=5.0, error_class="ActiveRecord::ConnectionTimeoutError", error_message=TIMEOUT_5)
    [incident] = run([boot, fail])
    assert incident.severity == "warning"
    assert incident.details["during_deploy"]["kind"] == "restart"  # type: ignore[index]
    assert "8s after a sidekiq restart" in incident.triage.likely_cause


# --------------------------------------------------------------------------- other pools

def test_postgres_too_many_clients_from_the_server_log_alone() -> None:
    errors = [Error(ts=T0 + i * 3, source="postgresql.log", line=i, origin="postgres", error_class="",
                    message="sorry, too many clients already", code="53300", level="FATAL", pid=str(900 + i)) for i in range(6)]
    [incident] = run(errors, facts=AppFacts(db_pool=5, puma_workers=4))
    assert incident.subject == {"pool": "database_server", "error_class": "too_many_connections"}
    assert incident.severity == "critical" and incident.count == 6
    assert "SHOW max_connections;" in incident.triage.likely_cause
    assert "pg_stat_activity" in incident.triage.likely_cause
    assert "4 x 5 = 20" in incident.triage.likely_cause


def test_app_side_too_many_clients_counts_the_app_errors_not_the_server_echo() -> None:
    app = [Error(ts=T0 + i, source="production.log", line=i, origin="rails", error_class="ActiveRecord::ConnectionNotEstablished",
                 message="connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  sorry, too many clients already",
                 request_id=f"r{i}", endpoint="PostsController#index") for i in range(2)]
    server = [Error(ts=T0 + i + 0.01, source="postgresql.log", line=i, origin="postgres", message="sorry, too many clients already", level="FATAL") for i in range(2)]
    [incident] = run(app + server)
    assert incident.count == 2
    assert incident.details["errors_by_origin"] == {"rails": 2, "postgres": 2}


def test_mysql_too_many_connections_triage_uses_mysql_commands() -> None:
    [incident] = run([Error(ts=T0, source="production.log", line=1, origin="rails", error_class="Mysql2::Error::ConnectionError", message="Too many connections")])
    assert incident.subject["pool"] == "database_server"
    assert "SHOW VARIABLES LIKE 'max_connections'" in incident.triage.likely_cause


def test_pgbouncer_limit_is_its_own_incident() -> None:
    [incident] = run([Error(ts=T0, source="pgbouncer.log", line=1, origin="pgbouncer", message="no more connections allowed (max_client_conn)")])
    assert incident.subject == {"pool": "pgbouncer", "error_class": "max_client_conn"}
    assert "SHOW POOLS;" in incident.triage.likely_cause


def test_redis_pool_and_database_pool_are_separate_incidents() -> None:
    # Sidekiq client pool wording, https://github.com/sidekiq/sidekiq/issues/5815
    redis = Error(ts=T0, source="production.log", line=1, origin="rails", error_class="ConnectionPool::TimeoutError",
                  message="Waited 1 sec, 0/5 available", request_id="r1", endpoint="SignupsController#create")
    findings = run([redis, timeout_error(T0 + 1, "r2")], facts=AppFacts(puma_max_threads=16))
    subjects = {f.subject["pool"]: f for f in findings}
    assert set(subjects) == {"redis", "database"}
    assert subjects["redis"].fingerprint != subjects["database"].fingerprint
    assert "Sidekiq's Redis client pool" in subjects["redis"].triage.likely_cause
    assert "Pool size 5 is shared by up to 16 Puma threads" in subjects["redis"].triage.likely_cause


# --------------------------------------------------------------------------- metrics

def puma_sample(ts: float, backlog: float, capacity: float, worker: str = "0") -> List[Event]:
    labels = {"worker": worker}
    return [Metric(ts=ts, source="poll:puma", name="puma.backlog", labels=labels, value=backlog),
            Metric(ts=ts, source="poll:puma", name="puma.pool_capacity", labels=labels, value=capacity)]


def test_puma_backlog_with_no_capacity_sustained_is_a_warning() -> None:
    events = [e for i in range(4) for e in puma_sample(T0 + i * 10, backlog=7, capacity=0)]
    [incident] = run(events)
    assert incident.subject == {"pool": "puma", "metric": "puma.pool_capacity"}
    assert incident.severity == "warning"
    assert incident.details["metrics_peak"] == {"puma.pool_capacity": 7}


def test_puma_saturation_that_does_not_last_yields_nothing() -> None:
    events = [e for i, cap in enumerate([0, 0, 2, 0, 0, 3]) for e in puma_sample(T0 + i * 10, backlog=4, capacity=cap)]
    assert run(events) == []


def test_pool_stat_busy_at_size_with_waiters_is_reported() -> None:
    events: List[Event] = []
    for i in range(3):
        for name, value in (("db.pool.size", 5), ("db.pool.busy", 5), ("db.pool.dead", 0), ("db.pool.waiting", 3)):
            events.append(Metric(ts=T0 + i * 10, source="poll:app", name=name, labels={"pid": "4321"}, value=value))
    [incident] = run(events)
    assert incident.subject == {"pool": "database", "metric": "db.pool"}


def test_metric_group_order_and_fast_polling_do_not_double_count_samples() -> None:
    # capacity first, then backlog, every 0.5 s: two saturated samples are not three
    events = [e for i in range(2) for e in reversed(puma_sample(T0 + i * 0.5, backlog=3, capacity=0))]
    assert run(events) == []
    events = [e for i in range(3) for e in reversed(puma_sample(T0 + i * 0.5, backlog=3, capacity=0))]
    assert [f.subject["metric"] for f in run(events)] == ["puma.pool_capacity"]


def test_postgres_connections_at_max_connections_is_a_server_side_warning() -> None:
    events: List[Event] = [Metric(ts=T0, source="poll:pg", name="pg.max_connections", value=100)]
    events += [Metric(ts=T0 + i * 15, source="poll:pg", name="pg.connections", value=v) for i, v in enumerate([97, 98, 100])]
    [incident] = run(events)
    assert incident.subject == {"pool": "database_server", "metric": "pg.connections"}
    assert incident.severity == "warning"


def test_metric_saturation_is_summarised_in_the_error_incident_of_that_time() -> None:
    events = [timeout_error(T0, "e0")] + [e for i in range(3) for e in puma_sample(T0 + 1 + i, backlog=9, capacity=0)]
    errors = [f for f in run(events) if "error_class" in f.subject]
    assert errors[0].details["metrics_peak"] == {"puma.pool_capacity": 9}


# --------------------------------------------------------------------------- lifecycle and bounds

def test_two_bursts_an_hour_apart_are_two_findings_with_one_fingerprint() -> None:
    first = [timeout_error(T0 + i, f"a{i}") for i in range(5)]
    second = [timeout_error(T0 + 3600 + i, f"b{i}") for i in range(2)]
    findings = run(first + second)
    assert [f.count for f in findings] == [5, 2]
    assert [f.severity for f in findings] == ["critical", "warning"]
    assert findings[0].fingerprint == findings[1].fingerprint


def test_live_flush_alerts_once_critical_and_never_double_counts() -> None:
    detector = PoolExhaustionDetector()
    out: List[Finding] = []
    for i in range(8):
        detector.feed(timeout_error(T0 + i, f"e{i}"))
        out += detector.flush(T0 + i)  # still open: only the critical alert may come out
    assert [(f.severity, f.count) for f in out] == [("critical", 5)]
    out += detector.flush(T0 + 1000)  # quiet long enough: the incident closes
    assert sum(f.count for f in out) == 8
    assert detector.flush(None) == []


def test_state_stays_bounded_on_a_long_stream() -> None:
    settings = PoolExhaustionSettings(max_tracked_requests=100, max_request_seconds=50, max_holders=10)
    detector = PoolExhaustionDetector(settings)
    for i in range(5000):
        detector.feed(request(T0 + i, f"r{i}", duration=3000.0, db=2900.0))
    assert len(detector.requests) <= 100
    assert len(detector.per_second) <= 50
    assert len(detector.holders) <= 10


def test_registered_under_its_name() -> None:
    assert REGISTRY["pool_exhaustion"] is PoolExhaustionDetector
    assert PoolExhaustionDetector.kinds >= {"error", "request", "job", "metric", "deploy"}


# --------------------------------------------------------------------------- the reference app's captures

E2E = FIXTURES / "e2e"
E2E_APP = HERE.parent / "e2e" / "app"
E2E_SETUPS = ["debug", "info", "lograge", "stdout8"]  # the committed captures; a missing one fails
needs_e2e = pytest.mark.parametrize("setup", E2E_SETUPS)


def e2e_scan(setup: str, phase: Optional[str] = None) -> List[Finding]:
    """Scan one capture, optionally only the time of one phase (phases.jsonl: phase, start, end)."""
    import json

    from agent.appfacts import load_app_facts
    from agent.timeparse import parse_iso

    d = E2E / setup
    since = until = None
    if phase is not None:
        rec = next(json.loads(l) for l in (d / "phases.jsonl").read_text().splitlines() if l.strip() and json.loads(l)["phase"] == phase)
        since, until = parse_iso(rec["start"]), parse_iso(rec["end"])
        since, until = (since or 0) - 0.5, (until or 0) + 0.5
    logs = sorted(str(p) for p in d.iterdir() if p.suffix == ".log")
    return scan(logs, detectors=["pool_exhaustion"], facts=load_app_facts(str(E2E_APP)), since=since, until=until).incidents


@needs_e2e
def test_e2e_pool_phase_is_one_critical_database_pool_incident_with_the_slow_holders(setup: str) -> None:
    import json

    incidents = e2e_scan(setup, "pool_exhaustion")
    assert [i.subject for i in incidents] == [{"pool": "database", "error_class": "ActiveRecord::ConnectionTimeoutError"}]
    [incident] = incidents
    assert incident.severity == "critical"
    phase = next(json.loads(l) for l in (E2E / setup / "phases.jsonl").read_text().splitlines() if '"pool_exhaustion"' in l)
    http_500s = sum(counts.get("500", 0) for counts in phase["status_counts"].values())
    assert incident.count == http_500s  # every 500 the driver saw, each counted once
    assert incident.details["checkout_timeout_s"] == [2.0]
    holders = incident.details["holders"]
    assert holders and all("slow_hold" in str(h.get("path", "")) or "hold" in str(h.get("endpoint", "")) for h in holders)  # type: ignore[union-attr]
    assert "pool 3 < Puma max threads 8" in incident.triage.likely_cause


@needs_e2e
def test_e2e_healthy_phase_yields_nothing(setup: str) -> None:
    assert e2e_scan(setup, "healthy") == []


@needs_e2e
def test_e2e_whole_capture_has_only_the_database_pool_incident(setup: str) -> None:
    # N+1 and Sidekiq failure phases (PaymentGatewayError, NoMethodError) are not pool problems
    assert {i.subject["pool"] for i in e2e_scan(setup)} == {"database"}
