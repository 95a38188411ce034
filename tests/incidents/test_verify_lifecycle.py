"""Verdicts through the lifecycle (record_verification), the deploy markers' inputs, and what
triage.md and `incidents show` say about a verification."""
from __future__ import annotations

import json
import os

from click.testing import CliRunner

from agent.bundle.triage_md import render_triage
from agent.cli import cli
from agent.incidents import IncidentManager, IncidentStore
from agent.incidents.deploy_markers import MarkerInbox, RevisionWatcher, write_marker
from agent.testing import FakeClock
from detectors.base import AppFacts

FIXED = {"status": "fixed", "revision": "abc123", "since": 1_764_151_300.0, "traffic": 20, "hits": 0,
         "before": {"queries_per_request": 31}, "after": {"queries_per_request": 2},
         "summary": "fixed in abc123: queries per request 31 → 2 over 20 request(s) to the endpoint"}


def _manager(tmp_path, clock):  # type: ignore[no-untyped-def]
    store = IncidentStore(str(tmp_path / "state"), clock)
    return IncidentManager(store, clock, ["hook"], host="web-1"), store


def test_fixed_resolves_an_open_incident_and_tells_the_sinks(tmp_path, targets):
    clock = FakeClock()
    m, store = _manager(tmp_path, clock)
    (opened,) = m.observe([targets.make_finding()])
    update = m.record_verification(opened.incident.id, FIXED)
    assert update is not None and update.kind == "resolve"
    inc = store.get_incident(opened.incident.id)
    assert inc.status == "resolved" and inc.resolved_reason == "fixed in abc123" and inc.verification == FIXED
    assert [o.update_id for o in store.outbox_for(inc.id)][-1] == update.update_id


def test_not_fixed_reopens_a_resolved_incident_as_a_critical_escalation(tmp_path, targets):
    clock = FakeClock()
    m, store = _manager(tmp_path, clock)
    (opened,) = m.observe([targets.make_finding(severity="warning")])
    m.resolve(opened.incident.id)
    update = m.record_verification(opened.incident.id, dict(FIXED, status="not_fixed", summary="not fixed by abc123: …"))
    assert update is not None and update.kind == "escalate" and update.previous_severity == "warning"
    inc = store.get_incident(opened.incident.id)
    assert inc.status == "open" and inc.severity == "critical" and inc.title.endswith("(not fixed by abc123)")


def test_verifying_and_waiting_are_stored_without_a_notification(tmp_path, targets):
    clock = FakeClock()
    m, store = _manager(tmp_path, clock)
    (opened,) = m.observe([targets.make_finding()])
    before = len(store.outbox_for())
    assert m.record_verification(opened.incident.id, {"status": "waiting", "revision": "r", "summary": "too little"}) is None
    assert len(store.outbox_for()) == before and store.get_incident(opened.incident.id).verification["status"] == "waiting"


def test_triage_md_review_and_incidents_show_carry_the_verification(tmp_path, targets):
    clock = FakeClock()
    m, store = _manager(tmp_path, clock)
    (opened,) = m.observe([targets.make_finding()])
    m.record_verification(opened.incident.id, FIXED)
    inc = store.get_incident(opened.incident.id)
    text = render_triage(inc, store.updates_for(inc.id), AppFacts())
    assert "- **Fix verification**: fixed in abc123: queries per request 31 → 2 over 20" in text
    assert "- **Resolution**: fixed in `abc123` (verified by railwatch)" in text
    store.close()
    out = CliRunner().invoke(cli, ["incidents", "show", inc.id, "--state-dir", str(tmp_path / "state")]).output
    assert "verified   fixed in abc123: queries per request 31 → 2" in out


def test_revision_watcher_takes_the_first_revision_as_the_baseline_and_a_change_as_a_deploy(tmp_path):
    (tmp_path / "REVISION").write_text("aaa\n")
    w = RevisionWatcher(str(tmp_path))
    assert w.poll() is None and w.last_revision == "aaa"
    (tmp_path / "REVISION").write_text("bbb\n")
    os.utime(tmp_path / "REVISION", (1_764_151_000.0, 1_764_151_000.0))
    marker = w.poll()
    assert marker is not None and (marker.ts, marker.revision, marker.source) == (1_764_151_000.0, "bbb", "REVISION")
    assert w.poll() is None
    # a deploy made while the agent was down: the saved revision differs from the file's
    assert RevisionWatcher(str(tmp_path), last_revision="aaa").poll().revision == "bbb"  # type: ignore[union-attr]


def test_marker_inbox_reads_files_once_and_refuses_bad_posts(tmp_path):
    clock = FakeClock()
    inbox = MarkerInbox(str(tmp_path), clock)
    write_marker(str(tmp_path), "v1.2.3", 1_764_151_500.0)
    assert [(m.revision, m.ts, m.source) for m in inbox.take()] == [("v1.2.3", 1_764_151_500.0, "railwatch deploy")]
    assert inbox.take() == []
    assert inbox.post(b"not json")[0] == 400
    assert inbox.post(json.dumps({"revision": ""}).encode())[0] == 400
    assert inbox.post(json.dumps({"revision": "r", "at": "soon"}).encode())[0] == 400
    status, doc = inbox.post(json.dumps({"revision": "r9\nextra"}).encode())
    assert status == 202 and doc == {"accepted": True, "revision": "r9", "at": clock.now()}
    assert [m.revision for m in inbox.take()] == ["r9"]


def test_railwatch_deploy_writes_the_marker_and_reports_an_unreachable_agent(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["deploy", "--revision", "v2", "--state-dir", str(tmp_path), "--at", "1764151600"])
    assert result.exit_code == 0, result.output
    [m] = MarkerInbox(str(tmp_path), FakeClock()).take()
    assert (m.revision, m.ts) == ("v2", 1_764_151_600.0)
    result = runner.invoke(cli, ["deploy", "--revision", "v2", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the agent" in result.output
