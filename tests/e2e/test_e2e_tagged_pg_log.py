"""Live: N+1 at info level (Rails < 7.2: no SQL in the log) found from a tagged Postgres statement log.

A throwaway Postgres cluster from Debian's packages logging every statement
(``log_min_duration_statement = 0``, ``log_line_prefix = '%m [%p] %q%u@%d '``; never the
machine's shared server), the reference app at INFO with Bullet off and marginalia query
tags on (``RW_QUERY_TAGS``: application, controller, action, request_id), and
``railwatch run`` tailing both the app's production.log and the cluster's log. Phase 1
drives only /posts_fixed (the preloaded twin); phase 2 drives the N+1 endpoint /posts.
The daemon must open exactly one n_plus_one incident, for PostsController#index, naming
the authors lookup with "postgres_log" among its evidence sources; nothing for the fixed
twin. The latency from the first N+1 request to its incident.json is printed.
"""

import glob
import importlib.util
import os
import shutil
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

pytestmark = pytest.mark.e2e
MARGINALIA = "/usr/share/rubygems-integration/all/gems/marginalia-*/lib/marginalia.rb"  # Debian's ruby-marginalia


def _missing():
    missing = [p for p in (capture.PG_BIN + "/initdb", capture.PG_BIN + "/pg_ctl") if not os.path.exists(p)]
    if not glob.glob(MARGINALIA):
        missing.append("ruby-marginalia")
    if shutil.which("runuser") is None:
        missing.append("runuser")
    return missing


def test_info_level_n_plus_one_from_tagged_postgres_log_opens_one_incident():
    rp.require_prerequisites(_missing())
    tmp = tempfile.mkdtemp(prefix="rw-tagged-")
    try:
        pg_port = rp.free_port()
        with capture.ThrowawayPostgres(pg_port, 40, capture.STATEMENT_LOG_SETTINGS) as pg:
            # Bullet off, info level: only the tagged statements in the Postgres log show the N+1
            stack = driver.ReferenceStack(os.path.join(tmp, "stack"), log_setup="info", port=rp.free_port_pair(),
                                          redis_url="auto", db_port=pg_port, bullet=False, query_tags=True,
                                          verbose=False)
            with stack:
                agent = rp.RailwatchAgent(os.path.join(tmp, "agent"), logs=[stack.path("production.log"), pg.log_path],
                                          metrics_port=rp.free_port())
                agent.start()
                try:
                    stack.drive("/posts_fixed", 5.0)  # the fixed twin: tagged, batched, clean
                    first = time.time()
                    stop = threading.Event()
                    t = threading.Thread(target=lambda: stack.drive("/posts", stop=stop))
                    t.start()
                    try:
                        try:
                            rp.wait_until(lambda: agent.incidents_of("n_plus_one"), 30.0, 0.05, "an n_plus_one incident")
                        except TimeoutError:
                            sys.stderr.write("[tagged] agent output:\n" + agent.output()[-6000:] + "\n")
                            raise
                        latency = time.time() - first
                        time.sleep(3.0)  # let more evidence arrive: it must merge, not open more
                    finally:
                        stop.set()
                        t.join()
                    incidents = agent.incidents_of("n_plus_one")
                    output = agent.output()
                finally:
                    agent.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert len(incidents) == 1, (incidents, output[-2000:])
    inc = incidents[0]
    assert inc["subject"] == {"endpoint": "PostsController#index"}, inc
    text = str(inc)
    assert 'FROM "authors" WHERE "authors"."id" = ?' in text, inc
    assert "'postgres_log'" in str(inc["finding"]["details"]["evidence_sources"]), inc["finding"]["details"]
    assert "index_fixed" not in text
    sys.stderr.write("[tagged] first N+1 request -> incident.json %.2f s (opened %.2f s after it)\n"
                     % (latency, inc["opened_at"] - first))
