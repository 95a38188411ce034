"""No planted secret survives into the store, a bundle, a sink payload or a report."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from agent.bundle import BundleBuilder
from agent.events import Evidence, Finding, Triage
from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.scrub import scrub_cmdline, scrub_finding
from agent.sinks import build_sink
from agent.testing import FakeClock
from detectors.base import AppFacts

SECRETS = Path(__file__).resolve().parents[1] / "fixtures" / "secrets"
PLANTED = [p for p in (SECRETS / "PLANTED.txt").read_text().splitlines() if p]


def planted_finding():
    log = SECRETS / "planted.log"
    lines = log.read_text().splitlines()
    return Finding(
        detector="pool_exhaustion", severity="critical",
        title="Pool exhausted for planted.user1@example.com via postgres://app:FAKEpgPW-url-1@db.internal/app",
        subject={"endpoint": "SessionsController#create", "user": "planted.user2@example.org"},
        first_seen=1_764_151_200.0, last_seen=1_764_151_260.0, count=len(lines),
        evidence=[Evidence(str(log), n, line) for n, line in enumerate(lines, 1)],
        triage=Triage(summary="Seen with DB_PASSWORD=FAKEenvPW-1 in the environment",
                      likely_cause="token ghp_FAKEplanted00000000000000000000000001 leaked",
                      containment=["Rotate AKIAFAKEPLANTED00001"], prevention=["Never log password=FAKEpw-param-old-1"]),
        details={"password": "FAKEpw-lograge-1", "url": "redis://:FAKEredisPW-url-1@redis.internal:6379/0"},
    )


def leaked(data: bytes):
    text = data.decode("utf-8", "replace")
    return [p for p in PLANTED if p in text]


def test_no_planted_secret_reaches_the_store_bundles_sinks_or_files(tmp_path, target):
    clock = FakeClock()
    state = tmp_path / "state"
    hook, pd, slack, am = target("webhook", secret="FAKEhmac"), target("pagerduty"), target("slack"), target("alertmanager")
    sinks = {
        "local": build_sink("directory", "local", {"path": str(state / "incidents")}, clock=clock),
        "hook": build_sink("webhook", "hook", {"url": hook.url, "secret": "FAKEhmac", "attach_bundle": True}, clock=clock),
        "pd": build_sink("pagerduty", "pd", {"url": pd.url, "routing_key": "Q" * 32}, clock=clock),
        "slack": build_sink("slack", "slack", {"url": slack.url + "/hook"}, clock=clock),
        "am": build_sink("alertmanager", "am", {"url": am.url}, clock=clock),
    }
    store = IncidentStore(str(state), clock)
    app = AppFacts(root=str(SECRETS / "app"), revision="0f3c9a1")
    bundler = BundleBuilder(str(state), clock, facts=app, agent_config=str(SECRETS / "agent.toml"),
                            snapshot=lambda: {"processes": [
                                {"cmdline": "puma --dsn postgres://app:FAKEpgPW-url-1@db/app"},
                                # what snapshot_processes records: argv through scrub_cmdline
                                {"cmdline": " ".join(scrub_cmdline(["pumactl", "--control-token", "FAKEsnapshotCtlToken01",
                                                                    "--redis-password=FAKEsnapshotRedisPW01"]))}]},
                            updates=store.updates_for)
    manager = IncidentManager(store, clock, list(sinks), host="web-1", bundler=bundler)
    (update,) = manager.observe([planted_finding()])
    assert Deliverer(store, sinks, clock).run_once()["accepted"] == 5
    manager.resolve(update.incident.id)
    assert Deliverer(store, sinks, clock).run_once()["accepted"] == 5
    store.close()

    for target_ in (hook, pd, slack, am):
        assert target_.received and target_.violations == []
        for req in target_.received:
            assert leaked(req.body) == [], target_.kind
    for root, _, names in os.walk(state):
        for name in names:
            path = Path(root) / name
            data = path.read_bytes()
            assert leaked(data) == [], path
            if name.endswith(".tar.gz"):
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    for m in tar.getmembers():
                        if m.isfile():
                            assert leaked(tar.extractfile(m).read()) == [], (path, m.name)
                assert leaked(gzip.decompress(data)) == []


def test_a_report_rendered_from_scrubbed_findings_has_no_planted_secret():
    from agent.report import render_json, render_markdown, render_text
    from agent.scan import ScanResult

    clean, counts = scrub_finding(planted_finding())
    result = ScanResult(files=[], incidents=[clean], errors=[], detectors=["pool_exhaustion"])
    for render in (render_json, render_markdown, render_text):
        assert leaked(render(result).encode()) == [], render.__name__
    assert counts["url_credentials"] >= 2
