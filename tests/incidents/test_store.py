"""The SQLite store: versioned schema, private files, atomic writes, outbox order, checkpoints."""
from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from agent.incidents import IncidentManager, IncidentStore, StoreError
from agent.incidents.store import DB_NAME, SCHEMA_VERSION
from agent.testing import FakeClock


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_schema_is_versioned_and_a_second_open_does_not_migrate_again(tmp_path):
    store = IncidentStore(str(tmp_path / "s"))
    assert store.schema_version() == SCHEMA_VERSION
    store.set_checkpoints({"k": {"offset": 1}})
    store.close()
    again = IncidentStore(str(tmp_path / "s"))
    assert again.schema_version() == SCHEMA_VERSION and again.get_checkpoint("k") == {"offset": 1}
    with sqlite3.connect(again.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_from_a_newer_railwatch_is_refused_not_damaged(tmp_path):
    path = tmp_path / "s"
    IncidentStore(str(path)).close()
    with sqlite3.connect(str(path / DB_NAME)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this railwatch supports"):
        IncidentStore(str(path))


def test_store_files_and_directory_are_private_whatever_the_umask(tmp_path, targets):
    old = os.umask(0)
    try:
        store = IncidentStore(str(tmp_path / "state"), FakeClock())
        IncidentManager(store, FakeClock(), ["x"]).observe([targets.make_finding()])
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    for name in os.listdir(tmp_path / "state"):
        assert mode(tmp_path / "state" / name) == 0o600, name


def test_an_update_and_its_outbox_rows_are_written_together_or_not_at_all(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    m = IncidentManager(store, clock, ["hook", "hook"])  # duplicate sink row: UNIQUE(update_id, sink) fails
    with pytest.raises(StoreError, match="UNIQUE"):
        m.observe([targets.make_finding()])
    assert store.list_incidents() == [] and store.outbox_for() == []


def test_checkpoints_are_set_together_and_read_back(tmp_path):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    assert store.get_checkpoint("tail:/var/log/app.log") is None
    store.set_checkpoints({"tail:a": {"offset": 10, "inode": 5}, "tail:b": {"offset": 20}})
    store.set_checkpoints({"tail:a": {"offset": 11, "inode": 5}})
    assert store.get_checkpoint("tail:a") == {"offset": 11, "inode": 5}
    assert store.get_checkpoint("tail:b") == {"offset": 20}
    with pytest.raises(TypeError):  # a value that cannot be stored leaves every key as it was
        store.set_checkpoints({"tail:a": {"offset": 12}, "tail:b": None})  # type: ignore[dict-item]
    assert store.get_checkpoint("tail:a") == {"offset": 11, "inode": 5}
    store.delete_checkpoints(["tail:b"])
    assert store.get_checkpoint("tail:b") is None


def test_due_outbox_hands_out_an_incidents_updates_in_order(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    m = IncidentManager(store, clock, ["hook"])
    (opened,) = m.observe([targets.make_finding()])
    m.resolve(opened.incident.id)
    due = store.due_outbox(clock.now(), ["hook"])
    assert [store.get_update(r.update_id).kind for r in due] == ["open"]  # resolve waits for its trigger
    store.mark_delivered(due[0].id, clock.now())
    (row,) = store.due_outbox(clock.now(), ["hook"])
    assert store.get_update(row.update_id).kind == "resolve"


def test_an_incident_can_be_found_by_a_unique_id_prefix(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    (u,) = IncidentManager(store, clock, []).observe([targets.make_finding()])
    assert [i.id for i in store.find_incident(u.incident.id[:6])] == [u.incident.id]
    assert store.find_incident("zz%") == []
