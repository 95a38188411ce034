"""Secrets in process command lines, and evidence context for lines that held a secret."""
from __future__ import annotations

import subprocess
import sys
import tarfile

import pytest

from agent.bundle import BundleBuilder
from agent.bundle import snapshot_processes
from agent.events import Evidence, Finding, Triage
from agent.incidents import IncidentManager, IncidentStore
from agent.scrub import REDACTED, recorded_in, scrub, scrub_cmdline
from agent.testing import FakeClock


@pytest.mark.parametrize("argv, kept", [
    (["puma", "--control-token", "FAKEctl01", "-b", "tcp://0.0.0.0:3000"], ["puma", "--control-token", REDACTED, "-b", "tcp://0.0.0.0:3000"]),
    (["sidekiq", "--redis-password=FAKEredis01"], ["sidekiq", f"--redis-password={REDACTED}"]),
    (["/usr/bin/redis-cli", "-h", "cache", "-p", "6379", "-a", "FAKEcli01"], ["/usr/bin/redis-cli", "-h", "cache", "-p", "6379", "-a", REDACTED]),
    (["mysql", "-uapp", "-pFAKEmy01", "app"], ["mysql", "-uapp", f"-p{REDACTED}", "app"]),
    (["redis-server", "--requirepass", "FAKEreq01", "--port", "6380"], ["redis-server", "--requirepass", REDACTED, "--port", "6380"]),
    (["rails", "runner", "DB_PASSWORD=FAKEenv01", "postgres://app:FAKEurl01@db/app"],
     ["rails", "runner", f"DB_PASSWORD={REDACTED}", f"postgres://app:{REDACTED}@db/app"]),
])
def test_secret_flag_values_are_redacted(argv, kept):
    assert scrub_cmdline(argv) == kept


@pytest.mark.parametrize("argv", [
    ["puma", "-C", "config/puma.rb", "-p", "3000"],  # -p is a port for puma and redis-cli
    ["pg_dump", "--no-password", "--verbose", "app"],
    ["sidekiq", "--token-ttl", "3600", "--password-file", "/etc/app/pw"],
    ["git", "checkout", "0f3c9a1e5b7d2c4f6a8b0d1e3f5a7c9b2d4e6f8a"],
    [],
])
def test_ordinary_command_lines_are_unchanged(argv):
    assert scrub_cmdline(argv) == argv


def test_snapshot_processes_records_a_real_process_without_its_token():
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "puma", "--control-token", "FAKEsnapCTL01"]
    proc = subprocess.Popen(argv)
    try:
        snap = snapshot_processes(FakeClock(), sample_seconds=0)
        (entry,) = [p for p in snap["processes"] if p["pid"] == proc.pid]
        assert "FAKEsnapCTL01" not in entry["cmdline"] and f"--control-token {REDACTED}" in entry["cmdline"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("recorded, raw, same", [
    ("token=[REDACTED] ok", "token=FAKE1 ok", True),
    ("[REDACTED] at start", "AKIAFAKE at start", True),
    ("ends [REDAC", "ends FAKEsecret", True),  # the probe was cut inside the marker
    ("a=[REDACTED] b=[REDACTED]", "a=1 b=2", True),
    ("a=[REDACTED] b=[REDACTED]", "b=2 a=1", False),
    ("token=[REDACTED] ok", "token= ok", False),  # a redaction stands for something
    ("plain line", "another line", False),
])
def test_recorded_in_matches_scrubbed_text_against_its_raw_source(recorded, raw, same):
    assert recorded_in(recorded, raw) is same


def test_evidence_line_with_a_secret_gets_its_context_not_a_changed_file_note(tmp_path):
    log = tmp_path / "production.log"
    lines = [f"I, [2025-11-26T10:00:0{i}.000000 #4242]  INFO -- : request {i}" for i in range(5)]
    lines[2] = ("E, [2025-11-26T10:00:02.000000 #4242] ERROR -- : ActiveRecord::ConnectionNotEstablished "
                "(could not connect using postgres://app:FAKEctxPW01@db.internal:5432/app_production)")
    log.write_text("\n".join(lines) + "\n")
    assert scrub(lines[2])[0] != lines[2]
    clock = FakeClock()
    state = str(tmp_path / "state")
    store = IncidentStore(state, clock)
    builder = BundleBuilder(state, clock, snapshot=lambda: {}, updates=store.updates_for)
    finding = Finding(detector="pool_exhaustion", severity="critical", title="DB unreachable", subject={"pool": "primary"},
                      first_seen=1.0, last_seen=2.0, count=1, evidence=[Evidence(str(log), 3, lines[2])],
                      triage=Triage(summary="s"))
    (update,) = IncidentManager(store, clock, [], host="web-1", bundler=builder).observe([finding])
    store.close()
    with tarfile.open(update.incident.bundle_path, "r:gz") as tar:
        (member,) = [m for m in tar.getmembers() if "/evidence/" in m.name]
        text = tar.extractfile(member).read().decode()
    assert "changed since" not in text and "## lines 1-8" in text
    assert "request 0" in text and "request 4" in text and "FAKEctxPW01" not in text
