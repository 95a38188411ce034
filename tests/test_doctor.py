"""`railwatch doctor` against this machine's real services: PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379 (as tests/e2e/README.md requires), a real Puma with its control app and a real Sidekiq
(Debian's packages, as the e2e stack uses), a temp config and a log written now. Then the failing
cases: an unreadable log, a missing one, unreachable ports, a wrong Puma token, a state dir that
cannot be written."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from agent.config import apply_overrides, parse
from agent.doctor import FAIL, PASS, SKIP, WARN, check_processes, render, run_checks

REPO = Path(__file__).resolve().parents[1]
RAILS_LOG = REPO / "tests" / "fixtures" / "logs" / "e2e" / "info" / "production.log"
TOKEN = "doctor-test-token"


def _need(condition: bool, what: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(what + " (tests/e2e/install-deps.sh installs it on CI)")
        pytest.skip(what)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _claim_redis_db():  # type: ignore[no-untyped-def]
    """A Redis db no e2e stack is using (the e2e driver's flock), so our Sidekiq never meets a FLUSHDB."""
    spec = importlib.util.spec_from_file_location("railwatch_e2e_driver_for_doctor", REPO / "tests" / "e2e" / "driver.py")
    driver = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(driver)  # type: ignore[union-attr]
    for db in reversed(driver.AUTO_REDIS_DBS):
        url = f"redis://127.0.0.1:6379/{db}"
        lock = driver._claim_redis_db(url)
        if lock is not None:
            return url, lock
    pytest.skip("no free Redis db for a test Sidekiq")


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[Dict[str, object]]:  # type: ignore[no-untyped-def]
    """A real Puma (with control app) and a real Sidekiq, started for this module, stopped by PID."""
    _need(_answers(5432) and _answers(6379), "PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
    _need(bool(shutil.which("puma") and shutil.which("sidekiq")), "puma and sidekiq (Debian packages)")
    work = tmp_path_factory.mktemp("services")
    (work / "config.ru").write_text('run ->(env) { [200, {"content-type" => "text/plain"}, ["ok"]] }\n')
    (work / "job.rb").write_text('require "sidekiq"\n'
                                 'Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)\n'
                                 "class NopJob\n  include Sidekiq::Worker\n  def perform; end\nend\n")
    redis_url, lock = _claim_redis_db()
    port, control = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BUNDLE_GEMFILE", "RUBYOPT", "RUBYLIB", "GEM_HOME", "GEM_PATH")}
    procs: List[subprocess.Popen] = []  # type: ignore[type-arg]
    try:
        procs.append(subprocess.Popen(["puma", "-b", f"tcp://127.0.0.1:{port}", "--control-url", f"tcp://127.0.0.1:{control}",
                                       "--control-token", TOKEN, "-t", "1:1", "config.ru"], cwd=work, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        procs.append(subprocess.Popen(["sidekiq", "-r", str(work / "job.rb"), "-c", "1", "-t", "1"], cwd=work,
                                      env=dict(env, REDIS_URL=redis_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        _wait(lambda: _answers(control), "Puma's control app")
        import redis

        client = redis.Redis.from_url(redis_url)
        _wait(lambda: client.scard("processes") > 0, "the Sidekiq heartbeat")
        client.close()
        yield {"puma_url": f"http://127.0.0.1:{control}", "redis_url": redis_url, "pids": [p.pid for p in procs]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        lock.close()


def write_config(tmp_path: Path, services: Dict[str, object], **changes: Dict[str, object]) -> Path:
    log_dir = tmp_path / "log"
    log_dir.mkdir(exist_ok=True)
    with open(RAILS_LOG, encoding="utf-8") as src:
        (log_dir / "production.log").write_text("".join(next(src) for _ in range(20)))
    (log_dir / "sidekiq.log").write_text("")
    collectors = {
        "postgres": {"enabled": True, "dsn": "postgresql://postgres@127.0.0.1:5432/postgres", "timeout_s": 3.0},
        "sidekiq": {"enabled": True, "redis_url": services["redis_url"]},
        "puma": {"enabled": True, "url": services["puma_url"], "token": TOKEN},
    }
    for name, values in changes.items():
        collectors[name].update(values)
    lines = [f'[[sources]]\npath = "{log_dir / "production.log"}"\n', f'[[sources]]\npath = "{log_dir / "sidekiq.log"}"\n',
             f'[state]\ndir = "{tmp_path / "state"}"\n']
    for name, values in collectors.items():
        lines.append(f"[collectors.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    path = tmp_path / "railwatch.toml"
    path.write_text("\n".join(lines))
    return path


def by_name(checks) -> Dict[str, object]:  # type: ignore[no-untyped-def]
    return {c.name: c for c in checks}


def doctor(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "agent", "doctor", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NO_COLOR="1"))


def test_all_green_against_real_postgres_redis_puma_and_sidekiq(tmp_path, services):
    config = write_config(tmp_path, services)
    result = doctor("--config", str(config), "--user", "root") if os.geteuid() == 0 else doctor("--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in ("config", "state dir", "puma processes", "sidekiq processes", "postgres", "redis (sidekiq)",
                 "puma control app", "sink local (directory)"):
        assert any(line.startswith("PASS") and f"  {name} " in line + " " for line in lines), (name, result.stdout)
    assert "PostgreSQL 1" in result.stdout and "PONG" in result.stdout and "/stats answers" in result.stdout
    assert sum(line.startswith("PASS  log ") for line in lines) == 2
    assert "0 failed" in lines[-1]


def test_failures_each_say_what_to_do_and_exit_1(tmp_path, services):
    closed = _free_port()  # bound, released: nothing listens there
    config = write_config(tmp_path, services, postgres={"dsn": f"postgresql://postgres@127.0.0.1:{closed}/postgres"},
                          sidekiq={"redis_url": f"redis://127.0.0.1:{closed}/0"}, puma={"token": "wrong"})
    (tmp_path / "log" / "sidekiq.log").unlink()
    result = doctor("--config", str(config), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks[f"log {tmp_path / 'log' / 'sidekiq.log'}"]["status"] == FAIL
    assert checks[f"log {tmp_path / 'log' / 'production.log'}"]["status"] == PASS
    for name, words in (("postgres", "pg_hba"), ("redis (sidekiq)", "redis_url"), ("puma control app", "auth_token")):
        assert checks[name]["status"] == FAIL and words in checks[name]["fix"], checks[name]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: run as the service user instead (see the next test)")
def test_unreadable_log_fails_with_the_group_fix(tmp_path, services):  # pragma: no cover - non-root runs
    config = write_config(tmp_path, services)
    (tmp_path / "log" / "production.log").chmod(0)
    checks = by_name(run_checks(str(config), None))
    check = checks[f"log {tmp_path / 'log' / 'production.log'}"]
    assert check.status == FAIL and "usermod -aG" in check.fix


def test_as_root_the_checks_run_as_the_service_user_who_cannot_read_a_private_log(traversable_dir, services):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    import pwd

    user = pwd.getpwnam("nobody")
    base = traversable_dir
    config = write_config(base, services)
    (base / "log" / "production.log").chmod(0o600)  # root's file, nobody may not read it
    result = doctor("--config", str(config), "--user", user.pw_name, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    log = checks[f"log {base / 'log' / 'production.log'}"]
    assert log["status"] == FAIL and "not readable by nobody" in log["detail"] and "setfacl" in log["fix"]
    assert checks["state dir"]["status"] == FAIL  # /tmp/…/state's parent is root's 0755 directory
    assert checks[f"log {base / 'log' / 'sidekiq.log'}"]["status"] == PASS


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can traverse (pytest's tmp_path is root's, 0700)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="railwatch-doctor-", dir="/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_no_app_processes_found_is_a_failure_with_the_pattern_to_set(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    cfg = parse(apply_overrides({}, logs=(str(log),), state_dir=str(tmp_path / "state")))
    checks = by_name(check_processes(cfg, process_iter=lambda attrs: []))
    assert checks["puma processes"].status == FAIL and "puma_match" in checks["puma processes"].fix
    # no sidekiq log, no sidekiq.yml, no sidekiq collector: its absence is not a failure
    assert checks["sidekiq processes"].status == SKIP


def test_a_stale_log_is_a_warning_not_a_failure(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("x\n")
    old = time.time() - 3 * 86400
    os.utime(log, (old, old))
    checks = run_checks(None, None, (str(log),), str(tmp_path / "state"))
    check = by_name(checks)[f"log {log}"]
    assert check.status == WARN and "3 d" in check.detail


def test_a_bad_config_is_one_failure_naming_the_keys(tmp_path):
    path = tmp_path / "railwatch.toml"
    path.write_text('[tail]\npoll_interval = 1\n[[sources]]\npath = "/x.log"\n')
    checks = run_checks(str(path), None)
    assert [c.status for c in checks] == [FAIL] and "tail.poll_interval" in checks[0].detail
    assert "1 failed" in render(checks)
