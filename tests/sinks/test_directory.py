"""Directory sink: incident.json and bundle.tar.gz per incident, atomic and private."""
from __future__ import annotations

import json
import os
import stat

from agent.incidents.model import IncidentUpdate
from agent.sinks import build_sink


def test_each_update_rewrites_incident_json_atomically_with_its_history(tmp_path, targets):
    update = targets.make_update(str(tmp_path / "s"))
    bundle = tmp_path / "elsewhere.tar.gz"
    bundle.write_bytes(b"\x1f\x8bfake")
    update.incident.bundle_path = str(bundle)
    sink = build_sink("directory", "local", {"path": str(tmp_path / "out")})
    assert sink.deliver(update).accepted
    update.incident.status = "resolved"
    assert sink.deliver(IncidentUpdate(kind="resolve", incident=update.incident, at=update.at + 5, update_id=99)).accepted
    where = tmp_path / "out" / update.incident.id
    doc = json.loads((where / "incident.json").read_text())
    assert doc["kind"] == "resolve" and [h["kind"] for h in doc["history"]] == ["open", "resolve"]
    assert (where / "bundle.tar.gz").read_bytes() == b"\x1f\x8bfake"
    assert sorted(os.listdir(where)) == ["bundle.tar.gz", "incident.json"]  # no temporary files left
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(where / "incident.json").st_mode) == 0o600


def test_an_unwritable_directory_is_a_retryable_failure_and_dry_run_says_so(tmp_path, targets):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = build_sink("directory", "local", {"path": str(blocker / "incidents")})
    assert sink.deliver(targets.make_update(str(tmp_path / "s"))).status == "retry"
    assert sink.dry_run().status == "permanent"
    assert build_sink("directory", "local", {"path": str(tmp_path / "ok")}).dry_run().accepted
