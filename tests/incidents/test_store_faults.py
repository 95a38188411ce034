"""Store and state-dir faults (issue 13): a damaged, truncated, full or deleted store never
ends a command with a traceback nor loses state silently; symlinks below the state dir are
refused; a bundle that failed is built again later."""
from __future__ import annotations

import glob
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from agent.bundle import BundleBuilder
from agent.cli import cli
from agent.config import apply_overrides, parse
from agent.daemon import COUNTERS_KEY, Daemon
from agent.fsutil import UnsafePathError
from agent.incidents import IncidentManager, IncidentStore, StoreError
from agent.incidents.store import DB_NAME
from agent.testing import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
POOL_LOG = FIXTURES / "pool_exhaustion" / "rails61_pool_timeouts.log"


def store_with_an_incident(state: Path, targets) -> str:
    clock = FakeClock()
    with IncidentStore(str(state), clock) as store:
        IncidentManager(store, clock, ["hook"]).observe([targets.make_finding()])
        return store.path


def garble(path: str) -> None:
    """Keep the 100-byte SQLite header, overwrite every page after the first with garbage."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * ((max(size, 16384) - 4096) // 4))


def checkpointed(path: str) -> str:
    """Fold the WAL into the main file so that garbling the file garbles the data."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# ---------------------------------------------------------------------- damaged / truncated store


def test_garbage_pages_give_the_cli_a_one_line_error_and_exit_2(tmp_path, targets):
    state = tmp_path / "state"
    garble(checkpointed(store_with_an_incident(state, targets)))
    for args in (["incidents", "list", "--state-dir", str(state)],
                 ["incidents", "show", "--state-dir", str(state), "x"],
                 ["scan", "--open-incidents", "--state-dir", str(state), str(POOL_LOG)]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "damaged" in result.output or "malformed" in result.output
        assert "Traceback" not in result.output
        lines = [ln for ln in result.output.splitlines() if "store" in ln]
        assert len(lines) == 1
    assert os.path.exists(state / DB_NAME)  # the CLI never moves a store aside


def test_the_daemon_moves_a_damaged_store_aside_loudly_and_starts_a_new_one(tmp_path, targets, caplog):
    state = tmp_path / "state"
    garble(checkpointed(store_with_an_incident(state, targets)))
    original = (state / DB_NAME).read_bytes()
    with caplog.at_level(logging.ERROR, logger="railwatch.store"):
        store = IncidentStore(str(state), FakeClock(), recover=True)
    aside = [p for p in glob.glob(str(state / f"{DB_NAME}.corrupt-*")) if not p.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and Path(aside[0]).read_bytes() == original
    assert store.list_incidents() == []
    assert "INCIDENT STORE DAMAGED" in caplog.text and aside[0] in caplog.text
    store.close()


def test_a_store_truncated_to_0_bytes_is_not_silently_treated_as_new(tmp_path, targets):
    state = tmp_path / "state"
    path = checkpointed(store_with_an_incident(state, targets))
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    open(path, "w").close()
    with pytest.raises(StoreError, match="0 bytes") as err:
        IncidentStore(str(state))
    assert err.value.kind == "corrupt"
    result = invoke("incidents", "list", "--state-dir", str(state))
    assert result.exit_code == 2 and "0 bytes" in result.output
    IncidentStore(str(state), recover=True).close()
    assert [os.path.getsize(p) for p in glob.glob(str(state / f"{DB_NAME}.corrupt-*"))] == [0]


# ---------------------------------------------------------------------- the daemon's turn


def daemon(tmp_path: Path, log: Path, *more_logs: Path) -> Daemon:
    data = {"collectors": {"psutil": {"enabled": False}}}
    logs = (str(log),) + tuple(str(p) for p in more_logs)
    config = parse(apply_overrides(data, logs=logs, state_dir=str(tmp_path / "state"), start="beginning"))
    d = Daemon(config, clock=FakeClock(), registry=CollectorRegistry())
    d.start()
    return d


def turn_until(d: Daemon, predicate, turns: int = 200):
    for _ in range(turns):
        d.clock.advance(1.0)
        d.turn()
        if predicate():
            return
    raise AssertionError("condition not reached")


def test_disk_full_at_the_first_incident_degrades_holds_the_findings_and_recovers(tmp_path, caplog):
    log = tmp_path / "production.log"
    log.write_text("")
    d = daemon(tmp_path, log)
    try:
        d.turn()
        d.checkpoint()
        before = d.store.get_checkpoint(f"tail:{log}")
        pages = d.store._db.execute("PRAGMA page_count").fetchone()[0]
        d.store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL at the next growth
        log.write_text(POOL_LOG.read_text())
        with caplog.at_level(logging.ERROR, logger="railwatch.daemon"):
            turn_until(d, lambda: d.store_problem is not None and d._unstored)
            for _ in range(20):
                d.clock.advance(5.0)
                d.turn()  # never raises
        assert d.store_problem.kind == "full"
        state, reasons = d.health()
        assert state == "degraded" and any("disk holding the state directory is full" in r for r in reasons)
        assert len([r for r in caplog.records if "incident store failing" in r.getMessage()]) == 1
        assert d.store.get_checkpoint(f"tail:{log}") == before  # positions not moved past unstored findings
        d.store._db.execute("PRAGMA max_page_count = 1073741823")
        turn_until(d, lambda: d.store_problem is None and d.store.open_incidents())
        assert d._unstored == []
        d.clock.advance(10)
        d.turn()
        assert d.store.get_checkpoint(f"tail:{log}") != before
        assert d.health()[0] == "ok"
    finally:
        d.shutdown()


def test_a_store_deleted_while_running_is_noticed_and_written_back(tmp_path, caplog):
    log = tmp_path / "production.log"
    log.write_text(POOL_LOG.read_text())
    d = daemon(tmp_path, log)
    try:
        turn_until(d, lambda: d.store.open_incidents())
        ids = [i.id for i in d.store.open_incidents()]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(d.store.path + suffix):
                os.unlink(d.store.path + suffix)
        with caplog.at_level(logging.ERROR):
            d.clock.advance(1.0)
            d.turn()
            assert d.store_problem is not None and d.store_problem.kind == "missing"
            assert any("deleted" in r for r in d.health()[1])
            turn_until(d, lambda: d.store_problem is None)
        assert "deleted while railwatch was running" in caplog.text and "restored" in caplog.text
        assert os.path.exists(d.store.path) and stat.S_IMODE(os.stat(d.store.path).st_mode) == 0o600
        assert [i.id for i in IncidentStore(str(tmp_path / "state")).open_incidents()] == ids
        assert d.store.get_checkpoint(COUNTERS_KEY) is not None
    finally:
        d.shutdown()


# ---------------------------------------------------------------------- bundles


def test_a_bundle_that_failed_to_build_is_built_on_a_later_tick(tmp_path, targets):
    state = tmp_path / "state"
    clock = FakeClock()
    store = IncidentStore(str(state), clock)
    blocker = state / "incidents"
    blocker.write_text("")  # the bundle directory cannot be made (as a read-only state dir would do)
    builder = BundleBuilder(str(state), clock, snapshot=lambda: {}, updates=store.updates_for)
    manager = IncidentManager(store, clock, ["hook"], bundler=builder)
    [update] = manager.observe([targets.make_finding()])
    assert store.get_incident(update.incident.id).bundle_path == ""
    blocker.unlink()
    manager.tick()  # first retry is not due yet
    assert store.get_incident(update.incident.id).bundle_path == ""
    clock.advance(10)
    manager.tick()
    path = store.get_incident(update.incident.id).bundle_path
    assert path and os.path.isfile(path)
    store.close()


# ---------------------------------------------------------------------- symlinks below the state dir


def test_symlinked_incident_directories_are_refused_not_followed(tmp_path, targets):
    state = tmp_path / "state"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)
    state.mkdir()
    (state / "incidents").symlink_to(elsewhere)
    builder = BundleBuilder(str(state), FakeClock(), snapshot=lambda: {})
    inc = IncidentManager(IncidentStore(str(state / "s")), FakeClock(), []).observe([targets.make_finding()])[0].incident
    with pytest.raises(UnsafePathError, match="refuses to follow"):
        builder.build(inc, [])
    assert os.listdir(elsewhere) == [] and stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o755
    (state / "incidents").unlink()
    (state / "incidents").mkdir()
    (state / "incidents" / inc.id).symlink_to(elsewhere)
    with pytest.raises(UnsafePathError):
        builder.build(inc, [])
    assert os.listdir(elsewhere) == [] and stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o755


def test_a_symlink_at_the_store_path_is_refused_and_its_target_not_chmoded(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "other.db"
    target.write_text("")
    os.chmod(target, 0o644)
    (state / DB_NAME).symlink_to(target)
    with pytest.raises(StoreError, match="symlink"):
        IncidentStore(str(state), recover=True)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644 and target.read_text() == ""
    result = invoke("incidents", "list", "--state-dir", str(state))
    assert result.exit_code == 2 and "symlink" in result.output


def test_healthz_reports_disabled_detectors_missing_and_refused_sources(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    fifo = tmp_path / "sidekiq.log"
    os.mkfifo(fifo)
    d = daemon(tmp_path, log, tmp_path / "gone.log", fifo)
    try:
        d.turn()
        d.pipeline.disabled = {"sidekiq_failures": "raised 5 times: ValueError"}  # as the pipeline records it
        state, reasons = d.health()
        assert state == "degraded"
        assert "detector sidekiq_failures disabled: raised 5 times: ValueError" in reasons
        assert any("gone.log: missing" in r for r in reasons)
        assert any("sidekiq.log: a FIFO" in r for r in reasons)
        assert json.dumps(reasons)
    finally:
        d.shutdown()
