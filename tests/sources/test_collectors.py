"""Metric collectors against the real services of this machine: Postgres (127.0.0.1:5432),
Redis (127.0.0.1:6379, db 7, emptied before and after), real processes, and a real HTTP
server answering with Puma's documented /stats shapes (rails-signals.md B.6)."""
from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import psycopg
import pytest
import redis
import requests

from agent.config import CollectorsConfig, PostgresConfig, PumaConfig, SidekiqConfig
from agent.sources.collectors import CollectorRunner, build_collectors
from agent.sources.collectors.sample import metric
from agent.sources.collectors.postgres import PostgresCollector
from agent.sources.collectors.processes import ProcessCollector
from agent.sources.collectors.puma import PumaCollector
from agent.sources.collectors.sidekiq import SidekiqCollector, enqueued_seconds
from agent.testing import FakeClock
from support import free_port

PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 5  # outside the dbs (6-15) a reference stack claims for its Sidekiq: this test seeds fake jobs
NOW = 1_764_151_200.0


def by_name(metrics):
    out = {}
    for m in metrics:
        out.setdefault(m.name, []).append(m)
    return out


def value(metrics, name, **labels):
    found = [m.value for m in metrics if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# ----------------------------------------------------------------------------- Sidekiq (Redis)

@pytest.fixture
def rdb():
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def seed_sidekiq(r, prefix=""):
    # job hashes as Sidekiq 7 (float seconds) and 8 (integer milliseconds) write them (rails-signals.md D.5, D.6)
    r.sadd(prefix + "queues", "default", "mailers")
    old = {"retry": True, "queue": "default", "class": "HardJob", "args": [1], "jid": "b4a577edbccf1d805744efa9",
           "created_at": NOW - 30.5, "enqueued_at": NOW - 30.5}
    new = dict(old, jid="0d8a3f1c2b4e5f6a7b8c9d0e", enqueued_at=NOW - 2.0)
    r.lpush(prefix + "queue:default", json.dumps(old))  # LPUSH: the oldest job ends up at index -1
    r.lpush(prefix + "queue:default", json.dumps(new))
    r.lpush(prefix + "queue:mailers", json.dumps({"queue": "mailers", "class": "Mailer", "jid": "aa",
                                                  "created_at": int((NOW - 12) * 1000), "enqueued_at": int((NOW - 12) * 1000)}))
    r.zadd(prefix + "retry", {"job-a": NOW + 30, "job-b": NOW + 60})
    r.zadd(prefix + "dead", {"job-c": NOW - 100})
    r.zadd(prefix + "schedule", {"job-d": NOW + 3600})
    r.set(prefix + "stat:processed", 100)
    r.set(prefix + "stat:failed", 7)
    r.sadd(prefix + "processes", "web-1:123:abc", "web-2:999:gone")
    r.hset(prefix + "web-1:123:abc", mapping={"busy": 3, "beat": NOW, "info": json.dumps({"hostname": "web-1", "pid": 123, "concurrency": 5})})


def test_sidekiq_queue_sizes_latency_and_sets_come_from_redis(rdb):
    seed_sidekiq(rdb)
    got = SidekiqCollector(rdb, FakeClock(NOW)).collect()
    assert value(got, "sidekiq.queue_size", queue="default") == 2
    assert value(got, "sidekiq.queue_latency_s", queue="default") == pytest.approx(30.5)  # the oldest job, seconds (7.x)
    assert value(got, "sidekiq.queue_latency_s", queue="mailers") == pytest.approx(12.0)  # milliseconds (8.x)
    assert value(got, "sidekiq.enqueued") == 3
    assert (value(got, "sidekiq.retry_size"), value(got, "sidekiq.dead_size"), value(got, "sidekiq.scheduled_size")) == (2, 1, 1)
    assert (value(got, "sidekiq.processed_total"), value(got, "sidekiq.failed_total")) == (100, 7)
    # the process whose heartbeat hash expired is not counted
    assert (value(got, "sidekiq.processes"), value(got, "sidekiq.busy"), value(got, "sidekiq.concurrency")) == (1, 3, 5)
    assert all(m.source == "poll:sidekiq" and m.ts == NOW for m in got)


def test_sidekiq_namespace_prefixes_every_key(rdb):
    seed_sidekiq(rdb, prefix="myapp:")
    got = SidekiqCollector(rdb, FakeClock(NOW), namespace="myapp").collect()
    assert value(got, "sidekiq.queue_size", queue="default") == 2 and value(got, "sidekiq.dead_size") == 1
    assert value(SidekiqCollector(rdb, FakeClock(NOW)).collect(), "sidekiq.enqueued") == 0  # not without the prefix


def test_an_empty_sidekiq_reports_zeros_not_errors(rdb):
    got = SidekiqCollector(rdb, FakeClock(NOW)).collect()
    assert value(got, "sidekiq.enqueued") == 0 and value(got, "sidekiq.processes") == 0
    assert not [m for m in got if m.name == "sidekiq.queue_size"]


def test_enqueued_at_units_follow_the_sidekiq_8_rule():
    assert enqueued_seconds(1_700_000_000.25) == 1_700_000_000.25
    assert enqueued_seconds(1_700_000_000) == 1_700_000_000  # integer seconds (older clients)
    assert enqueued_seconds(1_700_000_000_250) == pytest.approx(1_700_000_000.25)
    assert enqueued_seconds("soon") is None


def test_sidekiq_queue_count_is_capped(rdb):
    rdb.sadd("queues", *[f"q{i:03d}" for i in range(30)])
    got = SidekiqCollector(rdb, FakeClock(NOW), max_queues=10).collect()
    assert len([m for m in got if m.name == "sidekiq.queue_size"]) == 10


# ----------------------------------------------------------------------------- Postgres

def pg_connect(dsn=PG_DSN):
    return lambda: psycopg.connect(dsn, autocommit=True)


def test_postgres_connections_by_state_against_max_connections():
    idle = [psycopg.connect(PG_DSN, autocommit=True) for _ in range(3)]
    try:
        collector = PostgresCollector(pg_connect(), FakeClock(NOW))
        got = collector.collect()
        with psycopg.connect(PG_DSN) as conn:
            max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
        assert value(got, "pg.max_connections") == max_conn
        assert value(got, "pg.connections") >= 4  # three idle ones and the collector's own
        assert value(got, "pg.connections_by_state", state="idle") >= 3
        assert value(got, "pg.connections_by_state", state="active") >= 1
        assert value(got, "pg.reserved_connections") >= 0
        assert not [m for m in got if m.name.startswith("pg.statement")]  # the extension is not installed here
        collector.close()
    finally:
        for c in idle:
            c.close()


def test_pg_stat_statements_not_preloaded_is_skipped_and_the_rest_still_works():
    name = "railwatch_test_pss"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            preloaded = "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        collector = PostgresCollector(pg_connect(dsn), FakeClock(NOW))
        first, second = collector.collect(), collector.collect()
        assert value(second, "pg.connections") >= 1
        if not preloaded:
            assert collector._statements == "" and not [m for m in first + second if m.name.startswith("pg.statement")]
        collector.close()
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_statement_call_deltas_rank_the_fastest_growing_queries():
    collector = PostgresCollector(lambda: None, FakeClock(NOW), top_n=2)
    q1, q2, q3 = "SELECT * FROM comments WHERE post_id = $1", "SELECT * FROM posts", "SELECT 1"
    assert collector.deltas([(11, 100, 5.0, q1), (22, 50, 10.0, q2), (33, 5, 1.0, q3)], NOW) == []  # baseline
    got = collector.deltas([(11, 1100, 55.0, q1), (22, 60, 12.0, q2), (33, 6, 1.5, q3), (44, 9, 1.0, "new")], NOW + 15)
    assert [(m.name, m.labels["queryid"], m.value) for m in got] == [
        ("pg.statement_calls", "11", 1000), ("pg.statement_time_ms", "11", 50.0),
        ("pg.statement_calls", "22", 10), ("pg.statement_time_ms", "22", 2.0),
    ]
    assert got[0].labels["query"] == q1
    assert collector.deltas([(11, 3, 0.1, q1)], NOW + 30) == []  # pg_stat_statements_reset(): no negative deltas


def test_a_statement_new_since_a_complete_sample_counts_all_its_calls():
    """The N+1 a deploy brings is a statement pg_stat_statements had never seen: its first
    sample's calls are all new, so it shows one interval earlier than as a mere baseline."""
    import agent.sources.collectors.postgres as pg

    collector = PostgresCollector(lambda: None, FakeClock(NOW))
    lookup = 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2'
    assert collector.deltas([(11, 100, 5.0, "SELECT 1")], NOW) == []
    got = collector.deltas([(11, 110, 5.5, "SELECT 1"), (44, 300, 9.0, lookup)], NOW + 2)
    assert [(m.labels["queryid"], m.value) for m in got if m.name == "pg.statement_calls"] == [("44", 300), ("11", 10)]
    # a previous sample cut at MAX_TRACKED rows proves nothing about a statement missing from it
    capped = PostgresCollector(lambda: None, FakeClock(NOW))
    rows = [(i, 1000 - i, 1.0, f"SELECT {i}") for i in range(pg.MAX_TRACKED)]
    capped.deltas(rows, NOW)
    got = capped.deltas(rows + [(99999, 500, 1.0, lookup)], NOW + 2)
    assert "99999" not in {m.labels["queryid"] for m in got}


def test_a_database_that_is_down_is_a_counted_collector_error_not_a_crash():
    port = free_port()
    collector = PostgresCollector(pg_connect(f"postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=2"), FakeClock(NOW))
    runner = CollectorRunner(collector, 10.0, queue.Queue(), FakeClock(NOW))
    runner.run_once()
    assert runner.errors == 1 and "OperationalError" in runner.last_error


# ----------------------------------------------------------------------------- Puma /stats

SINGLE = {"started_at": "2021-01-14T07:12:35Z", "backlog": 4, "running": 5, "pool_capacity": 0, "max_threads": 5, "requests_count": 3}
CLUSTER = {
    "started_at": "2021-01-14T07:09:17Z", "workers": 2, "phase": 0, "booted_workers": 2, "old_workers": 0,
    "worker_status": [
        {"started_at": "2021-01-14T07:09:24Z", "pid": 64136, "index": 0, "phase": 0, "booted": True, "last_checkin": "2021-01-14T07:11:09Z",
         "last_status": {"backlog": 0, "running": 5, "pool_capacity": 5, "max_threads": 5, "requests_count": 2, "busy_threads": 0}},
        {"started_at": "2021-01-14T07:09:24Z", "pid": 64137, "index": 1, "phase": 0, "booted": True, "last_checkin": "2021-01-14T07:11:09Z",
         "last_status": {"backlog": 7, "running": 5, "pool_capacity": 0, "max_threads": 5, "requests_count": 9, "busy_threads": 5}},
    ],
}


@pytest.fixture
def control_app():
    state = {"body": SINGLE, "token": "s3cret"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            ok = self.path.startswith("/stats") and f"token={state['token']}" in self.path
            body = json.dumps(state["body"] if ok else {"error": "Invalid auth token"}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_puma_single_mode_stats_become_unlabelled_metrics(control_app):
    with requests.Session() as session:
        got = PumaCollector(control_app["url"], "s3cret", session, FakeClock(NOW)).collect()
    assert {m.name: m.value for m in got} == {
        "puma.backlog": 4, "puma.running": 5, "puma.pool_capacity": 0, "puma.max_threads": 5, "puma.requests_count": 3,
    }
    assert all(m.labels == {} for m in got)


def test_puma_cluster_mode_reports_each_worker_by_index_and_pid(control_app):
    control_app["body"] = CLUSTER
    with requests.Session() as session:
        got = PumaCollector(control_app["url"], "s3cret", session, FakeClock(NOW)).collect()
    assert value(got, "puma.workers") == 2 and value(got, "puma.booted_workers") == 2
    assert value(got, "puma.backlog", worker="1", pid="64137") == 7
    assert value(got, "puma.pool_capacity", worker="1", pid="64137") == 0
    assert value(got, "puma.busy_threads", worker="0", pid="64136") == 0


def test_a_wrong_puma_token_fails_without_echoing_it(control_app):
    with requests.Session() as session:
        collector = PumaCollector(control_app["url"], "wrong-token", session, FakeClock(NOW))
        with pytest.raises(RuntimeError) as exc:
            collector.collect()
    assert "403" in str(exc.value) and "wrong-token" not in str(exc.value)


# ----------------------------------------------------------------------------- processes

CHILD = """
import socket, sys
conns = [socket.create_connection(("127.0.0.1", port)) for port in (5432, 6379)]
print("ready", flush=True)
sys.stdin.read()
"""


def spawn(title: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *title.split()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)
    proc.stdin.close()
    proc.stdout.close()


def test_puma_and_sidekiq_processes_are_found_with_their_connections_and_restarts():
    children = [spawn("puma: cluster worker 0: 4242 [testapp]"), spawn("sidekiq 7.2.0 testapp [0 of 5 busy]")]
    ours = {c.pid for c in children}

    def only_ours(attrs):
        return [p for p in psutil.process_iter(attrs) if p.pid in ours]

    try:
        collector = ProcessCollector(r"(?:^|[\s/])puma(?:[\s:]|$)", r"(?:^|[\s/])sidekiq(?:[\s:]|$)", (5432,), (6379,),
                                     FakeClock(NOW), process_iter=only_ours)
        got = collector.collect()
        puma, sidekiq = (str(c.pid) for c in children)
        assert value(got, "db.connections", component="puma", pid=puma, role="worker") == 1
        assert value(got, "redis.connections", component="sidekiq", pid=sidekiq) == 1
        assert value(got, "process.rss_bytes", component="sidekiq", pid=sidekiq) > 1_000_000
        assert value(got, "process.threads", component="puma", pid=puma) >= 1
        assert value(got, "process.count", component="sidekiq") == 1
        assert value(got, "process.restarts_total", component="sidekiq") == 0
        stop(children.pop())  # Sidekiq is OOM-killed and comes back with a new pid
        children.append(spawn("sidekiq 7.2.0 testapp [0 of 5 busy]"))
        ours.add(children[-1].pid)
        got = collector.collect()
        assert value(got, "process.restarts_total", component="sidekiq") == 1
        assert value(got, "process.exits_total", component="sidekiq") == 1
        assert value(got, "process.restarts_total", component="puma") == 0
        assert value(got, "process.cpu_percent", component="puma", pid=puma) >= 0
    finally:
        for c in children:
            stop(c)


def test_the_real_process_table_is_searched_and_unrelated_processes_are_ignored():
    child = spawn("sidekiq 7.2.0 testapp [0 of 5 busy]")
    bystander = spawn("ruby some_script.rb --queue sidekiq_like")  # "sidekiq_like" is not a sidekiq title
    try:
        collector = ProcessCollector(r"(?:^|[\s/])puma(?:[\s:]|$)", r"(?:^|[\s/])sidekiq(?:[\s:]|$)", (5432,), (6379,), FakeClock(NOW))
        pids = {m.labels.get("pid") for m in collector.collect()}
        assert str(child.pid) in pids and str(bystander.pid) not in pids
    finally:
        stop(child)
        stop(bystander)


# ----------------------------------------------------------------------------- runner and wiring

class Burst:
    name = "burst"

    def collect(self):
        return [metric("poll:test", "x", i, NOW) for i in range(5)]


def test_a_full_queue_drops_samples_and_counts_them():
    out: "queue.Queue" = queue.Queue(maxsize=2)
    runner = CollectorRunner(Burst(), 1.0, out, FakeClock(NOW))
    runner.run_once()
    assert (out.qsize(), runner.samples, runner.dropped) == (2, 2, 3)


def test_every_enabled_collector_is_built_from_the_config():
    config = CollectorsConfig(
        puma=PumaConfig(enabled=True, interval_s=3.0), sidekiq=SidekiqConfig(enabled=True, redis_url=f"redis://127.0.0.1:6379/{REDIS_DB}"),
        postgres=PostgresConfig(enabled=True, dsn=PG_DSN),
    )
    built = build_collectors(config, FakeClock(NOW))
    assert [(c.name, interval) for c, interval in built] == [("psutil", 10.0), ("puma", 3.0), ("sidekiq", 10.0), ("postgres", 15.0)]
    pg = built[3][0]
    assert value(pg.collect(), "pg.connections") >= 1  # the DSN from the config reaches the real server
    for c, _ in built:
        getattr(c, "close", lambda: None)()
