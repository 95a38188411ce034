"""Live: N+1 at info level (Rails < 7.2: no SQL in the log) found from pg_stat_statements.

A throwaway Postgres cluster from Debian's packages with ``pg_stat_statements`` preloaded
(never the machine's shared server), the reference app at INFO against it, and
``railwatch run`` tailing its production.log with the postgres collector sampling every
``INTERVAL_S``. Phase 1 drives only /posts_fixed (the preloaded twin); phase 2 drives the
N+1 endpoint /posts. The daemon must open exactly one n_plus_one incident, for
PostsController#index, naming the authors lookup; nothing for the fixed twin. The latency
from the first N+1 request to its incident.json is printed per run and as a median
(``RW_PGSS_RUNS`` runs, default 3) to compare with INTERVAL_S + 2 s.
"""

import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import pytest

_spec = importlib.util.spec_from_file_location(
    "railwatch_e2e__load", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load.py"))
_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_load)
driver = _load.load("driver")
rp = _load.load("railwatch_proc")
capture = _load.load("capture", _load.ACCURACY)

INTERVAL_S = 2.0
RUNS = int(os.environ.get("RW_PGSS_RUNS", "3"))
pytestmark = pytest.mark.e2e


class StatementsPostgres(capture.ThrowawayPostgres):
    """The accuracy harness's throwaway cluster, with pg_stat_statements preloaded."""

    def __enter__(self):
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres([capture.PG_BIN + "/initdb", "-D", self.data, "-A", "trust", "-U", "postgres"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d" % (self.port, self.dir, self.max_connections)
        self._as_postgres([capture.PG_BIN + "/pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "pg.log"),
                           "-w", "start"])
        return self


def _missing():
    missing = [p for p in (capture.PG_BIN + "/initdb", capture.PG_BIN + "/pg_ctl") if not os.path.exists(p)]
    if not os.path.exists("/usr/share/postgresql/15/extension/pg_stat_statements.control"):
        missing.append("pg_stat_statements (postgresql-contrib)")
    if shutil.which("runuser") is None:
        missing.append("runuser")
    return missing


_first_request = [0.0]


def _one_run(tmp):
    pg_port = rp.free_port()
    with StatementsPostgres(pg_port, 40) as pg:
        base = ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc"]
        # Bullet off: the database's statistics alone must find the N+1 (Bullet is rare in production)
        stack = driver.ReferenceStack(os.path.join(tmp, "stack"), log_setup="info", port=rp.free_port_pair(),
                                      redis_url="auto", db_port=pg_port, bullet=False, verbose=False)
        stack.ensure_database()
        import subprocess
        subprocess.run(base + ["CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "-d", stack.db_name],
                       check=True, capture_output=True, text=True)
        with stack:
            log = stack.path("production.log")
            dsn = "postgresql://postgres@127.0.0.1:%d/%s" % (pg_port, stack.db_name)
            agent = rp.RailwatchAgent(os.path.join(tmp, "agent"), logs=[log], metrics_port=rp.free_port(),
                                      collectors={"postgres": {"enabled": True, "dsn": dsn, "interval_s": INTERVAL_S}})
            agent.start()
            try:
                stack.drive("/posts_fixed", 5 * INTERVAL_S)  # the fixed twin: a clean history
                first = time.time()
                _first_request[:] = [first]
                stop = threading.Event()
                t = threading.Thread(target=lambda: stack.drive("/posts", stop=stop))
                t.start()
                try:
                    try:
                        found = rp.wait_until(lambda: agent.incidents_of("n_plus_one"), 30.0, 0.05, "an n_plus_one incident")
                    except TimeoutError:
                        sys.stderr.write("[pgss] agent output:\n" + agent.output()[-6000:] + "\n")
                        raise
                    opened = time.time()
                    time.sleep(2 * INTERVAL_S)  # let more evidence arrive: it must merge, not open more
                finally:
                    stop.set()
                    t.join()
                incidents = agent.incidents_of("n_plus_one")
            finally:
                agent.stop()
            return incidents, opened - first, found, agent.output()


def test_info_level_n_plus_one_from_pg_stat_statements_opens_one_incident():
    rp.require_prerequisites(_missing())
    latencies = []
    for n in range(RUNS):
        tmp = tempfile.mkdtemp(prefix="rw-pgss-")
        try:
            incidents, latency, _, output = _one_run(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        text = str(incidents)
        assert len(incidents) == 1, (incidents, output[-2000:])
        inc = incidents[0]
        assert inc["subject"] == {"endpoint": "PostsController#index"}, inc
        assert 'FROM "authors" WHERE "authors"."id" = ?' in text, inc
        assert "index_fixed" not in str(inc["subject"])
        latencies.append(latency)
        sys.stderr.write("[pgss] run %d: first N+1 request -> incident.json %.2f s (opened %.2f s after it, %s interval(s))\n"
                         % (n + 1, latency, inc["opened_at"] - _first_request[0], inc.get("finding", {}).get("details", {}).get("intervals")))
    sys.stderr.write("[pgss] median %.2f s over %d runs (target < interval %.0f s + 2 s = %.0f s)\n"
                     % (statistics.median(latencies), RUNS, INTERVAL_S, INTERVAL_S + 2))
