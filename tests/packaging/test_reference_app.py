"""The issue's "done when": against the reference Rails app (tests/e2e: Puma, Sidekiq, Postgres,
Redis), install.sh installs and starts the agent, `railwatch doctor` reports no failure and no
warning, and the uninstall leaves nothing behind. Marker e2e: skipped without the stack, except
under CI=true, where that is a failure."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
E2E = Path(__file__).resolve().parents[1] / "e2e"


def _driver():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("railwatch_e2e_driver_for_packaging", E2E / "driver.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def _port_pair() -> int:
    for _ in range(50):
        port = random.randint(20000, 40000)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def test_install_against_the_reference_app_then_doctor_is_all_green(tmp_path, wheelhouse, helpers):
    missing = [exe for exe in ("ruby", "puma", "sidekiq", "psql") if shutil.which(exe) is None]
    missing += [f"127.0.0.1:{p}" for p in (5432, 6379) if not _reachable(p)]
    if missing:
        message = f"reference stack unavailable ({', '.join(missing)}); run tests/e2e/install-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    driver = _driver()
    app = tmp_path / "app"  # a copy whose log/ is where --app discovery looks
    shutil.copytree(E2E / "app", app)
    root = tmp_path / "root"
    root.mkdir()
    before = helpers.tree(root)
    port = _port_pair()
    stack = driver.ReferenceStack(str(app), "info", port, redis_url="auto", app_dir=str(app), verbose=False)
    with stack:
        stack.enqueue("OkJob", 2)  # sidekiq.log gets job lines
        helpers.install("--root", str(root), "--app", str(app), "--wheel", str(wheelhouse["wheel"]),
                        "--wheel-dir", str(wheelhouse["dir"]), "--python", sys.executable, "--extras", "redis,postgres")
        config = root / "etc" / "railwatch" / "railwatch.toml"
        # what an operator adds, following the generated file's commented hints
        with open(config, "a", encoding="utf-8") as fh:
            fh.write(f'\n[collectors.puma]\nenabled = true\nurl = "http://127.0.0.1:{port + 1}"\ntoken = "railwatch-e2e"\n'
                     f'\n[collectors.sidekiq]\nenabled = true\nredis_url = "{stack.redis_url}"\n'
                     f'\n[collectors.postgres]\nenabled = true\ndsn = "postgresql://postgres@127.0.0.1:5432/{stack.db_name}"\n')
        venv = root / "opt" / "railwatch" / "venv"
        doctor = subprocess.run([str(venv / "bin" / "railwatch"), "doctor", "--config", str(config), "--json", "--user", "root"],
                                capture_output=True, text=True, timeout=120)
        checks = json.loads(doctor.stdout)
        bad = [c for c in checks if c["status"] in ("FAIL", "WARN")]
        assert doctor.returncode == 0 and not bad, json.dumps(checks, indent=1)
        names = {c["name"] for c in checks if c["status"] == "PASS"}
        assert {"puma processes", "sidekiq processes", "postgres", "redis (sidekiq)", "puma control app"} <= names
        assert {f"log {app / 'log' / 'production.log'}", f"log {app / 'log' / 'sidekiq.log'}"} <= names

        metrics = helpers.free_port()
        agent = subprocess.Popen([str(venv / "bin" / "railwatch"), "run", "--config", str(config), "--metrics-listen",
                                  f"127.0.0.1:{metrics}", "--log-level", "warning"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert helpers.wait_for(lambda: helpers.healthz(metrics), "/healthz") == 200
        finally:
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
    helpers.install("--root", str(root), "--uninstall", "--purge")
    assert helpers.tree(root) == before
