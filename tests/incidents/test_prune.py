"""Disk stays bounded: incident directories pruned by age and total size, never an open
incident's; old records deleted (the latest per fingerprint kept); the store vacuumed;
``railwatch incidents prune --dry-run`` removes nothing."""
from __future__ import annotations

import os
import time

from click.testing import CliRunner

from agent.bundle import BundleBuilder
from agent.cli_incidents import incidents
from agent.incidents import IncidentManager, IncidentStore
from agent.incidents.prune import DAY, RetentionSettings, prune
from agent.testing import FakeClock


def _history(tmp_path, targets):
    """Three resolved incidents 40, 20 and 1 days old (two recurrences of one bug) and one open, with real bundles."""
    clock = FakeClock(start=time.time())  # the prune command reads the real clock
    state = str(tmp_path / "state")
    store = IncidentStore(state, clock)
    manager = IncidentManager(store, clock, [], host="web-1", bundler=BundleBuilder(state, clock, host="web-1"))
    ids = []
    for age_days, subject in ((40, "a"), (20, "a"), (1, "b")):
        (u,) = manager.observe([targets.make_finding(subject={"pool": subject})])
        manager.resolve(u.incident.id)
        clock.advance(3600)  # past the cooldown: the next "a" is a recurrence, a new incident
        ids.append(u.incident.id)
        os.utime(os.path.dirname(u.incident.bundle_path), (clock.now() - age_days * DAY,) * 2)
    (still,) = manager.observe([targets.make_finding(subject={"pool": "open-one"})])
    os.utime(os.path.dirname(still.incident.bundle_path), (clock.now() - 400 * DAY,) * 2)  # old, but open
    return clock, state, store, ids, still.incident


def test_old_directories_go_by_age_and_an_open_incidents_bundle_never_does(tmp_path, targets):
    clock, state, store, ids, open_inc = _history(tmp_path, targets)
    report = prune(store, os.path.join(state, "incidents"), RetentionSettings(max_age_days=30), clock.now())
    assert [os.path.basename(p) for p in report.removed_dirs] == [ids[0]]
    assert os.path.isfile(open_inc.bundle_path)
    assert report.removed_incidents == 0 and report.freed_bytes > 0  # the records resolved hours ago, not days
    assert store.delete_resolved_before(clock.now() + 1, dry_run=True) == 1
    assert store.delete_resolved_before(clock.now() + 1) == 1
    # the older "a" record goes; the latest of each fingerprint stays (recurrence numbering, cooldown)
    assert store.get_incident(ids[0]) is None and store.get_incident(ids[1]) and store.get_incident(ids[2])
    store.vacuum()
    assert store.get_incident(open_inc.id).is_open


def test_total_size_prunes_oldest_first_but_keeps_the_open_incident(tmp_path, targets):
    clock, state, store, ids, open_inc = _history(tmp_path, targets)
    report = prune(store, os.path.join(state, "incidents"), RetentionSettings(max_age_days=365, max_total_mb=1e-6),
                   clock.now())
    assert [os.path.basename(p) for p in report.removed_dirs] == ids  # oldest first, all of them
    assert os.listdir(os.path.join(state, "incidents")) == [open_inc.id]


def test_the_prune_command_dry_run_removes_nothing_and_the_real_run_does(tmp_path, targets):
    clock, state, store, ids, open_inc = _history(tmp_path, targets)
    store.close()
    runner = CliRunner()
    dry = runner.invoke(incidents, ["prune", "--state-dir", state, "--dry-run", "--max-age-days", "10"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 incident" in dry.output and len(os.listdir(os.path.join(state, "incidents"))) == 4
    real = runner.invoke(incidents, ["prune", "--state-dir", state, "--max-age-days", "10"])
    assert real.exit_code == 0, real.output
    assert sorted(os.listdir(os.path.join(state, "incidents"))) == sorted([ids[2], open_inc.id])
