"""doctor, incidents and run as a new operator meets them (issue 17 item 2), and `railwatch
status` against a real daemon (item 4)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli
from agent.config import apply_overrides, parse
from agent.doctor import PASS, Check, check_sinks, render, run_checks
from support import free_port, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
RAILS_LOG = FIXTURES / "e2e" / "info" / "production.log"
POOL_LOG = FIXTURES / "pool_exhaustion" / "rails61_pool_timeouts.log"


def railwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


# ----------------------------------------------------------------------------- doctor

def test_doctor_reports_will_be_created_and_creates_nothing(tmp_path):
    state = tmp_path / "not" / "yet" / "state"
    checks = run_checks(None, None, (str(RAILS_LOG),), str(state))
    by_name = {c.name: c for c in checks}
    assert by_name["state dir"].status == PASS and "will be created" in by_name["state dir"].detail
    sink = by_name["sink local (directory)"]
    assert sink.status == PASS and "will be created" in sink.detail
    assert list(tmp_path.iterdir()) == []  # neither the state dir nor the sink's incidents/ dir


def test_doctor_still_dry_runs_a_directory_sink_that_exists(tmp_path):
    (tmp_path / "incidents").mkdir()
    cfg = parse(apply_overrides({}, logs=(str(RAILS_LOG),), state_dir=str(tmp_path)))
    [check] = check_sinks(cfg)
    assert check.status == PASS and check.detail.endswith("is writable")


def test_doctor_on_a_missing_config_says_how_to_write_one(tmp_path):
    missing = tmp_path / "railwatch.toml"
    [check] = run_checks(str(missing), None)
    assert "no such file" in check.detail
    assert "init-config" in check.fix and "fix the keys" not in check.fix


def test_doctor_on_a_bad_key_still_points_at_the_keys(tmp_path):
    path = tmp_path / "railwatch.toml"
    path.write_text('[[sources]]\npath = "x.log"\n[tail]\nstrat = "end"\n')
    [check] = run_checks(str(path), None)
    assert "tail.strat" in check.detail and "fix the keys named above" in check.fix


def test_doctor_prints_a_long_log_path_whole():
    long_name = "log /srv/www/example-shop/shared/releases/20260101/log/production.log"
    text = render([Check(long_name, PASS, "readable"), Check("config", PASS, "fine")])
    assert long_name in text
    assert "\n" + " " * 6 in text.split(long_name, 1)[1]  # the detail on its own line, aligned


def test_doctor_install_hints_name_no_package_index():
    from agent.doctor_endpoints import _install_hint

    hint = _install_hint("postgres", "psycopg[binary]>=3.1")
    assert "install.sh" in hint and "--extras postgres" in hint and sys.executable in hint
    assert "railwatch[" not in hint
    unit = (Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "railwatch.service").read_text()
    assert "pypi.org" not in unit and "Documentation=file:/usr/share/doc/railwatch/README.md" in unit


# ----------------------------------------------------------------------------- incidents, run

def test_incidents_list_on_a_mistyped_state_dir_creates_nothing_and_exits_2(tmp_path):
    typo = tmp_path / "var" / "lib" / "railwach"
    for args in (["incidents", "list"], ["incidents", "show", "abc"]):
        result = CliRunner().invoke(cli, [*args, "--state-dir", str(typo)])
        assert result.exit_code == 2, result.output
        assert "no incident store" in result.output and "No incidents" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_incidents_list_reads_a_store_without_writing_it(tmp_path):
    from agent.incidents import IncidentStore

    IncidentStore(str(tmp_path)).close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    os.chmod(tmp_path, 0o500)  # even a directory it cannot write to (root ignores this; the mtimes below do not)
    try:
        result = CliRunner().invoke(cli, ["incidents", "list", "--state-dir", str(tmp_path)])
    finally:
        os.chmod(tmp_path, 0o700)
    assert result.exit_code == 0 and "No incidents." in result.output
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_run_on_a_port_in_use_names_the_address_and_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = railwatch("run", "--log", str(tmp_path / "p.log"), "--state-dir", str(tmp_path / "s"),
                        "--metrics-listen", f"127.0.0.1:{port}", cwd=tmp_path)
    assert run.returncode == 2
    assert f"127.0.0.1:{port} is in use; set [metrics] listen or --metrics-listen" in run.stderr


def test_the_default_port_is_not_prometheus_exporters_and_an_explicit_listen_wins():
    from agent.config_values import DEFAULT_METRICS_LISTEN

    assert parse(apply_overrides({}, logs=("x.log",))).metrics.listen == DEFAULT_METRICS_LISTEN
    assert not DEFAULT_METRICS_LISTEN.endswith(":9394")  # Discourse's prometheus_exporter, on many Rails hosts
    old = parse({"sources": [{"path": "x.log"}], "metrics": {"listen": "127.0.0.1:9394"}})
    assert old.metrics.address == ("127.0.0.1", 9394)


# ----------------------------------------------------------------------------- status

def test_status_against_a_running_daemon_human_json_and_exit_codes(tmp_path):
    log = tmp_path / "production.log"
    log.write_text(POOL_LOG.read_text())
    state, port = tmp_path / "state", free_port()
    err = open(tmp_path / "daemon.err", "w")
    daemon = subprocess.Popen([sys.executable, "-m", "agent", "run", "--log", str(log), "--state-dir", str(state),
                               "--metrics-listen", f"127.0.0.1:{port}", "--start", "beginning"],
                              stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
    try:
        def opened():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return json.loads(r.read().decode())["open_incidents"] == 1
        wait_for(lambda: _quietly(opened), "the daemon to open the pool incident")
        human = railwatch("status", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
        assert human.returncode == 0, human.stdout + human.stderr
        assert ": OK" in human.stdout and f"{log}  68 lines, caught up" in human.stdout
        assert "detectors: n_plus_one, pool_exhaustion, sidekiq_failures" in human.stdout
        assert "open incidents: 1" in human.stdout and "pool_exhaustion" in human.stdout
        assert "local: ok, 0 update(s) waiting" in human.stdout
        doc = json.loads(railwatch("status", "--listen", f"127.0.0.1:{port}", "--json", cwd=tmp_path).stdout)
        assert doc["health"]["status"] == "ok" and doc["health"]["sources"][0]["lines"] == 68
        assert [i["detector"] for i in doc["store"]["open_incidents"]] == ["pool_exhaustion"]
    finally:
        daemon.terminate()
        assert daemon.wait(60) == 0
        err.close()
    down = railwatch("status", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state), cwd=tmp_path)
    assert down.returncode == 2 and "UNREACHABLE" in down.stdout and "open incidents: 1" in down.stdout


def test_status_exits_1_when_degraded(tmp_path):
    log = tmp_path / "production.log"
    log.write_text(POOL_LOG.read_text())
    with socket.socket() as closed:  # a webhook nobody answers: the sink fails, /healthz says degraded
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    config = tmp_path / "railwatch.toml"
    config.write_text(f'[[sources]]\npath = "{log}"\n[tail]\nstart = "beginning"\n[state]\ndir = "{tmp_path / "state"}"\n'
                      f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n[collectors.psutil]\nenabled = false\n'
                      f'[limits]\nsink_failing_after_s = 0.5\n[sinks.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:{dead}/hook"\n')
    err = open(tmp_path / "daemon.err", "w")
    daemon = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
    try:
        run = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(railwatch("status", "--config", str(config), cwd=tmp_path)),
                       "status to say degraded")
        assert ": DEGRADED" in run.stdout and "sink hook: failing for" in run.stdout
        assert "hook: failing for" in run.stdout and "update(s) waiting; last error:" in run.stdout
    finally:
        daemon.terminate()
        daemon.wait(60)
        err.close()


def _quietly(fn):
    try:
        return fn()
    except OSError:
        return None
