"""Boot the reference Rails stack (Debian's Ruby, Puma, Sidekiq) and check that short versions of
the driver's scenarios leave the expected lines in the real logs. Marker `e2e`; skipped when the
stack's prerequisites are missing, except under CI=true, where that is a failure."""

import importlib.util
import os
import random
import re
import shutil
import socket

import pytest

_spec = importlib.util.spec_from_file_location(
    "railwatch_e2e__load", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load.py"))
_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_load)
driver = _load.load("driver")

pytestmark = pytest.mark.e2e


def _reachable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _free_port_pair():
    for _ in range(50):
        port = random.randint(20000, 40000)
        ok = True
        for p in (port, port + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair")


def _require_stack():
    missing = [exe for exe in ("ruby", "puma", "sidekiq", "psql") if shutil.which(exe) is None]
    if not _reachable(5432):
        missing.append("PostgreSQL on 127.0.0.1:5432")
    if not _reachable(6379):
        missing.append("Redis on 127.0.0.1:6379")
    if missing:
        msg = "reference stack unavailable (%s); run tests/e2e/install-deps.sh" % ", ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def stack_logs(tmp_path_factory):
    _require_stack()
    workdir = str(tmp_path_factory.mktemp("rw-e2e"))
    # redis_url="auto": a Redis db no other stack on this machine holds (the CLI default, db 5,
    # may be in use by a developer's driver run).
    stack = driver.ReferenceStack(workdir, "info", _free_port_pair(), redis_url="auto", long_job_seconds=2,
                                  verbose=False)
    phases = {}
    with stack:
        for rec in (driver.healthy(stack, 3),
                    driver.n_plus_one(stack, requests_n=3),
                    driver.pool_exhaustion(stack, waves=1),
                    driver.sidekiq_failures(stack, always_fails=3, report_exports=0, timeout=40)):
            phases[rec["phase"]] = rec
    logs = {}
    for name in ("production.log", "sidekiq.log", "puma.log"):
        with open(os.path.join(workdir, "log", name), encoding="utf-8", errors="replace") as f:
            logs[name] = f.read()
    return phases, logs


def test_healthy_phase_all_ok(stack_logs):
    phases, _ = stack_logs
    assert phases["healthy"]["status_counts"] == {"200": phases["healthy"]["requests"]}


def test_n_plus_one_logged_by_bullet(stack_logs):
    _, logs = stack_logs
    assert logs["production.log"].count('Started GET "/posts" ') == 3
    assert "USE eager loading detected" in logs["production.log"]


def test_pool_exhaustion_gives_connection_timeouts(stack_logs):
    phases, logs = stack_logs
    counts = phases["pool_exhaustion"]["status_counts"]
    assert counts["/slow_hold"].get("500", 0) + counts["/posts_fixed"].get("500", 0) > 0
    prod = logs["production.log"]
    assert re.search(r"Completed 500 Internal Server Error in 20\d\dms \(ActiveRecord: 0\.0ms", prod)
    assert re.search(r"^F, \[[^\]]+\] FATAL -- : \[[0-9a-f-]{36}\]", prod, re.M)
    assert "ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool" in prod


def test_sidekiq_failures_reach_dead_set(stack_logs):
    phases, logs = stack_logs
    assert phases["sidekiq_failures"]["complete"] is True
    sk = logs["sidekiq.log"]
    assert re.search(r"class=AlwaysFailsJob jid=\w+ elapsed=[\d.]+ INFO: fail", sk)
    assert "WARN: PaymentGatewayError: gateway returned 502 Bad Gateway" in sk
    assert len(re.findall(r"INFO: Adding dead AlwaysFailsJob job \w+", sk)) == 3
    assert re.search(r"class=LongRunningJob jid=\w+ elapsed=2\.\d+ INFO: done", sk)


def test_only_started_processes_stopped(stack_logs):
    _, logs = stack_logs
    assert "Bye!" in logs["sidekiq.log"]
    assert "Gracefully stopping" in logs["puma.log"]
