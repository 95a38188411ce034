"""Diagnostic bundles: manifest, triage, evidence with context (plain and .gz), snapshots, bounds, privacy."""
from __future__ import annotations

import gzip
import hashlib

import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

from agent.bundle import BundleBuilder, BundleSettings, snapshot_processes
from agent.events import Evidence, Finding, Triage
from agent.incidents import IncidentManager, IncidentStore
from agent.testing import FakeClock
from detectors.base import AppFacts

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RAILS = FIXTURES / "logs" / "rails"
SECRETS = FIXTURES / "secrets"

SNAPSHOT = {
    "processes": [{"pid": 4242, "role": "puma", "cmdline": "puma 6.4.0 (tcp://0.0.0.0:3000) [app]", "threads": 7,
                   "rss_bytes": 250_000_000, "cpu_percent": 93.0, "db_connections": {"postgres": 5, "pgbouncer": 0, "redis": 1}}],
    "host": {"cpus": 4, "load_average": [3.9, 2.1, 1.0], "memory": {"total": 8e9, "available": 1e9, "percent": 87.5}},
}


def finding(evidence, severity="critical"):
    return Finding(
        detector="pool_exhaustion", severity=severity, title="Database pool exhausted", subject={"pool": "primary"},
        first_seen=1_637_928_536.0, last_seen=1_637_928_600.0, count=4, evidence=evidence,
        triage=Triage(summary="Requests waited for a connection.", likely_cause="pool 5 < 16 Puma threads",
                      containment=["Restart Puma"], prevention=["Raise pool to match threads"]),
    )


def build(tmp_path, evidence, facts=AppFacts(), settings=None, agent_config=None, snapshot=lambda: dict(SNAPSHOT)):
    clock = FakeClock()
    state = str(tmp_path / "state")
    store = IncidentStore(state, clock)
    builder = BundleBuilder(state, clock, facts=facts, agent_config=agent_config, snapshot=snapshot,
                            settings=settings, host="web-1", updates=store.updates_for)
    (update,) = IncidentManager(store, clock, [], host="web-1", bundler=builder).observe([finding(evidence)])
    return update.incident.bundle_path, update.incident


def members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    path, inc = build(tmp_path, [Evidence(str(RAILS / "rails52_production.log"), 27, "x")])
    files = members(path)
    manifest = json.loads(files.pop("manifest.json"))
    assert {f["name"] for f in manifest["files"]} == set(files)
    for entry in manifest["files"]:
        assert entry["bytes"] == len(files[entry["name"]])
        assert entry["sha256"] == hashlib.sha256(files[entry["name"]]).hexdigest()
    assert manifest["incident"]["id"] == inc.id and manifest["host"] == "web-1"
    assert manifest["agent"]["name"] == "railwatch" and manifest["window"]["first_seen"] == "2021-11-26T12:08:56.000Z"
    assert manifest["cut"] == [] and manifest["max_bytes"] == 10 * 1024 * 1024


def test_evidence_lines_come_with_context_from_plain_and_gzipped_sources(tmp_path):
    plain = RAILS / "rails52_production.log"
    gz = tmp_path / "production.log.1.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    lines = plain.read_text().splitlines()
    path, _ = build(tmp_path, [Evidence(str(plain), 27, lines[26]), Evidence(str(gz), 30, lines[29])],
                    settings=BundleSettings(context_lines=2))
    files = members(path)
    first = files["evidence/01-rails52_production.log.txt"].decode()
    assert "## lines 25-29" in first and f">      27 | {lines[26][:60]}" in first
    assert f"       25 | {lines[24][:60]}" in first and f"       29 | {lines[28][:60]}" in first
    second = files["evidence/02-production.log.1.gz.txt"].decode()
    assert "## lines 28-32" in second and f">      30 | {lines[29][:60]}" in second


def test_evidence_from_a_source_that_is_gone_or_changed_is_kept_as_recorded_and_noted(tmp_path):
    changed = tmp_path / "production.log"
    changed.write_text("a\nb\nc\n")
    path, _ = build(tmp_path, [Evidence("/nonexistent/production.log", 9, "the recorded line"),
                               Evidence(str(changed), 2, "what was there before rotation")])
    files = members(path)
    gone = files["evidence/01-production.log.txt"].decode()
    assert ">       9 | the recorded line" in gone
    moved = files["evidence/02-production.log.txt"].decode()
    assert "the file changed since" in moved and "what was there before rotation" in moved
    manifest = json.loads(files["manifest.json"])
    assert any("/nonexistent/production.log" in e for e in manifest["errors"])


def test_triage_page_has_every_section_and_a_prefilled_review(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(SECRETS / "app", app)
    facts = AppFacts(root=str(app), revision="0f3c9a1", revision_time=1_637_928_000.0)
    path, inc = build(tmp_path, [Evidence("log/production.log", 1, "ActiveRecord::ConnectionTimeoutError")], facts=facts)
    triage = members(path)["triage.md"].decode()
    for heading in ("## Summary", "## Timeline (UTC)", "## Evidence", "## Likely cause", "## Containment (now)",
                    "## Prevention", "## Deploy", "## Post-incident review"):
        assert heading in triage, heading
    assert "pool 5 < 16 Puma threads _(confirm)_" in triage
    assert "revision `0f3c9a1` deployed 9 min before the first occurrence" in triage
    assert "- [ ] Raise pool to match threads" in triage and f"`{inc.id}`" in triage


def test_snapshots_app_configuration_and_revision_are_included(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(SECRETS / "app", app)
    facts = AppFacts(root=str(app), revision="0f3c9a1b2d4e5f60718293a4b5c6d7e8f9012345")
    path, _ = build(tmp_path, [], facts=facts, agent_config=str(SECRETS / "agent.toml"))
    files = members(path)
    assert json.loads(files["snapshots/processes.json"])[0]["db_connections"]["postgres"] == 5
    assert json.loads(files["snapshots/host.json"])["load_average"] == [3.9, 2.1, 1.0]
    assert {"app/REVISION", "app/database.yml", "app/puma.rb", "app/sidekiq.yml", "agent/config"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["revision"]["revision"] == facts.revision


def test_a_failing_snapshot_is_recorded_not_fatal(tmp_path):
    def broken():
        raise PermissionError("no /proc")

    path, _ = build(tmp_path, [], snapshot=broken)
    manifest = json.loads(members(path)["manifest.json"])
    assert any("process snapshot failed: PermissionError" in e for e in manifest["errors"])


def test_the_size_bound_cuts_files_and_the_manifest_says_what_was_cut(tmp_path):
    big = tmp_path / "huge.log"
    big.write_text("".join(f"line {i} " + "x" * 3000 + "\n" for i in range(300)))
    evidence = [Evidence(str(big), n, f"line {n - 1} ") for n in range(10, 290, 12)]
    settings = BundleSettings(max_bytes=64 * 1024 + 40_000, context_lines=5)
    path, _ = build(tmp_path, evidence, settings=settings)
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    (cut,) = manifest["cut"]
    assert cut["file"] == "evidence/01-huge.log.txt" and 0 < cut["kept_bytes"] < cut["bytes"]
    assert sum(len(b) for b in files.values()) <= settings.max_bytes
    assert files["evidence/01-huge.log.txt"].endswith(b"to respect the bundle size limit]\n")


def test_bundle_and_its_directory_are_private(tmp_path):
    old = os.umask(0)
    try:
        path, _ = build(tmp_path, [])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with tarfile.open(path, "r:gz") as tar:
        assert all(stat.S_IMODE(m.mode) in (0o600, 0o700) for m in tar.getmembers())


def test_no_planted_secret_survives_into_the_bundle(tmp_path):
    planted = [p for p in (SECRETS / "PLANTED.txt").read_text().splitlines() if p]
    log = SECRETS / "planted.log"
    lines = log.read_text().splitlines()
    evidence = [Evidence(str(log), n, lines[n - 1]) for n in (3, 6, 11)]
    app = tmp_path / "app"
    shutil.copytree(SECRETS / "app", app)
    path, inc = build(tmp_path, evidence, facts=AppFacts(root=str(app)), agent_config=str(SECRETS / "agent.toml"),
                      settings=BundleSettings(context_lines=50))
    files = members(path)
    everything = b"\n".join(files.values()).decode()
    assert "FAKEpw-lograge-1" not in everything and "[REDACTED]" in everything
    survivors = [p for p in planted if p in everything]
    assert survivors == []
    manifest = json.loads(files["manifest.json"])
    assert manifest["redactions"]["url_credentials"] >= 2 and manifest["redactions"]["rails_parameter"] >= 1


def test_the_default_snapshot_reads_host_facts_with_psutil():
    clock = FakeClock()
    snap = snapshot_processes(clock)
    assert snap["host"]["cpus"] >= 1 and snap["host"]["memory"]["total"] > 0
    assert isinstance(snap["processes"], list) and isinstance(snap["errors"], list)
