"""``railwatch run`` as a real process: incidents on disk, exact line counts across SIGKILL
and rotations, SIGTERM, SIGHUP reload, /metrics and /healthz; and the loop in-process for
the health rules. Request lines follow lograge's format (rails-signals.md A.6) so that one
line is one event; the pool-exhaustion log is the fixture of tests/fixtures/logs/pool_exhaustion."""
from __future__ import annotations

import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.config import apply_overrides, parse
from agent.daemon import Daemon, counters_file_value
from agent.privileges import root_warning
from agent.testing import FakeClock
from support import free_port, wait_for

POOL_LOG = Path(__file__).resolve().parent / "fixtures" / "logs" / "pool_exhaustion" / "rails61_pool_timeouts.log"
SHIM = ("from agent.cli import cli; from agent.cli_daemon import run, config\n"
        "if 'run' not in cli.commands: cli.add_command(run); cli.add_command(config)\n"
        "cli(prog_name='railwatch')")


def railwatch() -> list:
    from agent.cli import cli

    # `python -m agent` once agent/cli.py registers the daemon's commands; the same CLI through a shim until then
    return [sys.executable, "-m", "agent"] if "run" in cli.commands else [sys.executable, "-c", SHIM]


def line(n: int) -> str:
    return (f"I, [2024-05-01T12:{n // 60 % 60:02d}:{n % 60:02d}.000000 #4321]  INFO -- : method=GET path=/items/{n} format=html "
            f"controller=ItemsController action=show status=200 duration=1.00 view=0.50 db=0.20\n")


def http_get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


class Proc:
    """A daemon process whose stderr goes to a file."""

    count = 0

    def __init__(self, tmp_path: Path, *args: str) -> None:
        Proc.count += 1
        self.err_path = tmp_path / f"daemon-{Proc.count}.err"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(railwatch() + ["run", *args], stdout=subprocess.DEVNULL, stderr=self._err, cwd=tmp_path)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        finally:
            self._err.close()


class Writer:
    """The app: appends to its open log file, and reopens it after a rename rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "a")

    def write(self, numbers, pause: float = 0.0) -> None:
        for n in numbers:
            self.fh.write(line(n))
            if pause:
                self.fh.flush()
                time.sleep(pause)  # a steady trickle, as an app writes
        self.fh.flush()

    def rotate(self) -> None:
        """As logrotate does it: production.log.1 -> .2 …, production.log -> .1, then the app reopens."""
        n = 1
        while (self.path.parent / f"{self.path.name}.{n}").exists():
            n += 1
        for i in range(n - 1, 0, -1):
            os.rename(self.path.parent / f"{self.path.name}.{i}", self.path.parent / f"{self.path.name}.{i + 1}")
        os.rename(self.path, self.path.parent / f"{self.path.name}.1")
        self.fh.close()
        self.fh = open(self.path, "a")

    def close(self) -> None:
        self.fh.close()


def requests_counted(path: Path) -> int:
    return int(counters_file_value(str(path)).get("events", {}).get("request", 0))


def config_file(tmp_path: Path, sources, extra: str = "") -> Path:
    text = "".join(f'[[sources]]\npath = "{s}"\n' for s in sources)
    text += ('[tail]\nstart = "beginning"\n[state]\ndir = "state"\n[metrics]\nlisten = "off"\n'
             "[collectors.psutil]\nenabled = false\n[limits]\ncheckpoint_interval_s = 0.3\n" + extra)
    path = tmp_path / "railwatch.toml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- as a process

def test_a_pool_exhaustion_in_a_live_log_becomes_an_incident_on_disk_and_metrics_and_health_answer(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    state = tmp_path / "state"
    port = free_port()
    d = Proc(tmp_path, "--log", str(log), "--state-dir", str(state), "--metrics-listen", f"127.0.0.1:{port}", "--start", "beginning")
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "/healthz")
        health = json.loads(http_get(f"http://127.0.0.1:{port}/healthz")[1])
        assert (health["status"], health["reasons"]) == ("ok", [])
        assert "details_error" not in health and health["sources"][0]["path"] == str(log)  # the details answer too
        with open(log, "a") as fh:
            fh.write(POOL_LOG.read_text())
        found = wait_for(lambda: glob.glob(str(state / "incidents" / "*" / "incident.json")), "an incident file")
        doc = json.loads(Path(found[0]).read_text())
        assert doc["incident"]["detector"] == "pool_exhaustion" and doc["incident"]["severity"] == "critical"
        assert doc["kind"] == "open"
        # the incident can be on disk before the loop turn that read it updates the counters
        wanted = f'railwatch_lines_read_total{{source="{log}"}} 68.0'
        wait_for(lambda: wanted in http_get(f"http://127.0.0.1:{port}/metrics")[1], "the lines-read counter")
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'railwatch_findings_total{detector="pool_exhaustion",severity="critical"}' in text
        assert 'railwatch_incident_updates_total{detector="pool_exhaustion",kind="open"} 1.0' in text
        wait_for(lambda: 'railwatch_sink_deliveries_total{sink="local"} 1.0' in http_get(f"http://127.0.0.1:{port}/metrics")[1],
                 "the delivery counted")
        assert "railwatch_tail_lag_bytes" in text and "railwatch_checkpoint_age_seconds" in text
    finally:
        assert d.stop() == 0
    assert "level=info logger=railwatch.daemon msg=\"stopped\"" in d.stderr


E2E_INFO = Path(__file__).resolve().parent / "fixtures" / "logs" / "e2e" / "info"


def test_tailing_the_reference_apps_logs_live_opens_the_incidents_scan_finds(tmp_path):
    from agent.scan import scan

    names = ["production.log", "sidekiq.log"]
    expected = {i.fingerprint for i in scan([str(E2E_INFO / n) for n in names]).incidents}
    assert expected  # the reference app's info set-up has pool, N+1 and Sidekiq incidents
    for n in names:
        (tmp_path / n).write_text("")
    state = tmp_path / "state"
    d = Proc(tmp_path, *[a for n in names for a in ("--log", str(tmp_path / n))], "--state-dir", str(state),
             "--metrics-listen", "off", "--start", "beginning")
    try:
        sources = {n: (E2E_INFO / n).read_text().splitlines(keepends=True) for n in names}
        for start in range(0, max(len(v) for v in sources.values()), 50):  # both logs grow together, as live
            for n in names:
                with open(tmp_path / n, "a") as fh:
                    fh.write("".join(sources[n][start:start + 50]))
            time.sleep(0.01)

        def opened():
            docs = [json.loads(Path(p).read_text()) for p in glob.glob(str(state / "incidents" / "*" / "incident.json"))]
            return {doc["incident"]["fingerprint"] for doc in docs}

        wait_for(lambda: opened() >= expected, "the incidents scan finds")
    finally:
        assert d.stop() == 0
    assert opened() == expected


def test_sigkill_mid_write_and_rotations_neither_lose_nor_double_count_a_line(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    counters = tmp_path / "counters.json"
    cfg = config_file(tmp_path, [log])
    app = Writer(log)
    d = Proc(tmp_path, "--config", str(cfg), "--debug-counters", str(counters))

    def phase_a() -> None:
        app.write(range(1, 301), pause=0.003)
        app.rotate()  # rename rotation while the daemon runs
        app.write(range(301, 601), pause=0.003)

    writer = threading.Thread(target=phase_a)
    writer.start()
    wait_for(lambda: requests_counted(counters) >= 100, "the first checkpoints")
    d.proc.send_signal(signal.SIGKILL)  # mid-write: the writer is still going
    assert d.stop() == -signal.SIGKILL
    writer.join()
    app.write(range(601, 801))  # while the daemon is down…
    app.rotate()  # …the log is rotated again
    app.write(range(801, 901))
    d2 = Proc(tmp_path, "--config", str(cfg), "--debug-counters", str(counters))
    try:
        app.write(range(901, 1201), pause=0.001)
        wait_for(lambda: requests_counted(counters) >= 1200, "all 1200 lines counted")
    finally:
        assert d2.stop() == 0
        app.close()
    final = counters_file_value(str(counters))
    assert final["events"]["request"] == 1200 and final["lines"] == 1200


def test_sigterm_saves_positions_and_a_restart_continues_where_it_stopped(tmp_path):
    log = tmp_path / "production.log"
    counters = tmp_path / "counters.json"
    cfg = config_file(tmp_path, [log])
    app = Writer(log)
    app.write(range(1, 101))
    d = Proc(tmp_path, "--config", str(cfg), "--debug-counters", str(counters))
    wait_for(lambda: requests_counted(counters) >= 100, "100 lines")
    assert d.stop() == 0
    app.write(range(101, 151))
    d2 = Proc(tmp_path, "--config", str(cfg), "--debug-counters", str(counters))
    try:
        wait_for(lambda: requests_counted(counters) >= 150, "150 lines")
    finally:
        assert d2.stop() == 0
        app.close()
    assert counters_file_value(str(counters))["events"]["request"] == 150


def test_sighup_reloads_the_config_keeping_positions_and_refuses_a_bad_one(tmp_path):
    a, b = tmp_path / "production.log", tmp_path / "sidekiq.log"
    counters = tmp_path / "counters.json"
    cfg = config_file(tmp_path, [a])
    app = Writer(a)
    app.write(range(1, 51))
    d = Proc(tmp_path, "--config", str(cfg), "--debug-counters", str(counters))
    try:
        wait_for(lambda: requests_counted(counters) >= 50, "50 lines")
        config_file(tmp_path, [a, b])
        d.send(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded: following 2 log(s)" in d.stderr, "the reload")
        app.write(range(51, 81))
        with open(b, "a") as fh:
            fh.write("".join(line(n) for n in range(81, 101)))
        wait_for(lambda: requests_counted(counters) >= 100, "100 lines")
        cfg.write_text(cfg.read_text().replace("checkpoint_interval_s = 0.3", "checkpoint_interval_s = 0.3\nmax_line = 1"))
        d.send(signal.SIGHUP)
        wait_for(lambda: "configuration refused" in d.stderr, "the refusal")
        assert "limits.max_line: expected at least 256" in d.stderr
        app.write(range(101, 111))
        wait_for(lambda: requests_counted(counters) >= 110, "110 lines after the refused reload")
    finally:
        assert d.stop() == 0
        app.close()
    assert counters_file_value(str(counters))["events"]["request"] == 110  # production.log was not read again


def test_a_bad_config_stops_run_with_the_keys_path(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[sources]]\npath = "/x.log"\n[collectors.sidekiq]\nenabled = "yes"\n')
    result = subprocess.run(railwatch() + ["run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "collectors.sidekiq.enabled: expected true or false" in result.stderr


def test_a_metrics_address_in_use_is_a_setup_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(railwatch() + ["run", "--log", str(tmp_path / "x.log"), "--state-dir", str(tmp_path / "s"),
                                               "--metrics-listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot start" in result.stderr


# ----------------------------------------------------------------------------- in-process

def daemon(tmp_path: Path, log: Path, **tables) -> Daemon:
    data = {"collectors": {"psutil": {"enabled": False}}, "metrics": {"listen": "127.0.0.1:0"}}
    data.update(tables)
    config = parse(apply_overrides(data, logs=(str(log),), state_dir=str(tmp_path / "state"), start="beginning"))
    d = Daemon(config, clock=FakeClock(), registry=CollectorRegistry())
    d.start()
    return d


def test_a_burst_falls_behind_as_lag_and_a_stalled_source_degrades_healthz(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    d = daemon(tmp_path, log, limits={"read_budget_bytes": 65536, "stall_after_s": 10})
    try:
        with open(log, "a") as fh:
            fh.write("".join(line(n) for n in range(20_000)))
        d.turn()
        assert d._pending == []  # what was read went to the detectors; the rest waits in the file
        d.clock.advance(1.5)
        d.turn()
        lag = d.registry.get_sample_value("railwatch_tail_lag_bytes", {"source": str(log)})
        assert lag and lag > 1_000_000
        assert d.health() == ("ok", [])
        d.tailer.logs[str(log)].read = lambda budget: (0, False)  # reads stop making progress (a hung NFS mount)
        d.clock.advance(30)
        d.turn()
        state, reasons = d.health()
        assert state == "degraded" and "bytes unread for over 10 s" in reasons[0]
        status, body = http_get(f"http://127.0.0.1:{d.server.port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "degraded" and "unread" in body
    finally:
        d.shutdown()


def test_healthz_fails_when_the_loop_stops_turning(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    d = daemon(tmp_path, log)
    try:
        d.turn()
        d.clock.advance(120)
        assert d.health() == ("failing", ["main loop has not turned for 120 s"])
        status, body = http_get(f"http://127.0.0.1:{d.server.port}/healthz")  # liveness: restart me
        doc = json.loads(body)
        assert status == 503 and (doc["status"], doc["reasons"]) == ("failing", ["main loop has not turned for 120 s"])
    finally:
        d.shutdown()


def test_an_outbox_that_cannot_deliver_and_a_failing_sink_degrade_healthz(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    hook = {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook"}  # nobody listens there
    d = daemon(tmp_path, log, sinks={"hook": hook}, limits={"outbox_stuck_after_s": 600, "sink_failing_after_s": 300})
    try:
        with open(log, "a") as fh:
            fh.write(POOL_LOG.read_text())

        def turned():
            d.clock.advance(1.0)  # the log goes quiet: held records are released, detectors flushed
            d.turn()
            return d.store.open_incidents()

        wait_for(turned, "an incident")
        wait_for(lambda: d.sinks["hook"].failing_since is not None, "a failed delivery")
        assert d.health()[0] == "ok" or not any(p.startswith("sink hook") for p in d.health()[1])
        d.clock.advance(601)
        d.delivery.refresh_gauges()
        d.turn()
        state, reasons = d.health()
        assert state == "degraded" and any(p.startswith("outbox: an incident update has waited") for p in reasons)
        assert any(p.startswith("sink hook: failing for") for p in reasons)
        assert d.registry.get_sample_value("railwatch_outbox_depth") >= 1
    finally:
        d.shutdown()


def test_running_as_root_warns_how_to_run_unprivileged(caplog):
    logger = logging.getLogger("railwatch.test")
    with caplog.at_level(logging.WARNING, logger="railwatch.test"):
        assert root_warning(logger, euid=0)
        assert not root_warning(logger, euid=1000)
    assert len(caplog.records) == 1 and "User=railwatch" in caplog.records[0].getMessage()


def test_self_metrics_exist_only_on_the_registry_they_are_given():
    from prometheus_client import REGISTRY as GLOBAL

    from agent.selfmetrics import SelfMetrics

    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.advance(metrics.lines_read, ("/var/log/app.log",), 10)
    metrics.advance(metrics.lines_read, ("/var/log/app.log",), 25)  # totals kept elsewhere become deltas
    metrics.advance(metrics.lines_read, ("/var/log/app.log",), 20)  # a total never goes backwards
    assert registry.get_sample_value("railwatch_lines_read_total", {"source": "/var/log/app.log"}) == 25
    assert GLOBAL.get_sample_value("railwatch_lines_read_total", {"source": "/var/log/app.log"}) is None


def test_a_daemon_without_http_sinks_does_not_import_requests(tmp_path):
    """requests (with urllib3 and charset_normalizer) is about 10 MB of an idle daemon's RSS:
    only a configured HTTP sink or collector loads it."""
    code = ("import sys\n"
            "from pathlib import Path\n"
            "import test_daemon as t\n"
            f"d = t.daemon(Path({str(tmp_path)!r}), Path({str(tmp_path / 'x.log')!r}))\n"
            "d.shutdown()\n"
            "print('requests' in sys.modules)\n")
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tests + "/..")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
