"""Alertmanager payload shape: identifying labels only (no host), sanitised names, endsAt."""
from __future__ import annotations

from agent.incidents.model import IncidentUpdate
from agent.sinks import build_sink
from agent.sinks.alertmanager import label_name
from agent.testing import FakeClock
from agent.timeparse import to_iso


def test_subject_keys_become_valid_label_names_without_clobbering_reserved_ones():
    assert label_name("job.class") == "job_class"
    assert label_name("9lives") == "_9lives"
    assert label_name("severity") == "subject_severity"
    assert label_name("__name__") == "subject__name__"


def test_firing_alert_expires_unless_refreshed_and_resolve_sets_ends_at(tmp_path, target, targets):
    am = target("alertmanager")
    clock = FakeClock()
    finding = targets.make_finding(subject={"job.class": "HardJob", "severity": "x"})
    update = targets.make_update(str(tmp_path / "s"), finding, host="web-9", clock=clock)
    sink = build_sink("alertmanager", "am", {"url": am.url + "/", "expire_after_s": 600, "runbook_url": "https://wiki/{detector}"},
                      clock=clock)
    assert sink.deliver(update).accepted
    (alert,) = am.received[0].json
    assert alert["labels"] == {"alertname": "railwatch_pool_exhaustion", "detector": "pool_exhaustion",
                               "severity": "warning", "fingerprint": finding.fingerprint, "job_class": "HardJob",
                               "subject_severity": "x", "host": "web-9"}
    assert alert["annotations"]["host"] == "web-9" and alert["annotations"]["runbook_url"] == "https://wiki/pool_exhaustion"
    assert alert["endsAt"] == to_iso(clock.now() + 600)
    update.incident.resolved_at = clock.now() + 30
    assert sink.deliver(IncidentUpdate(kind="resolve", incident=update.incident, at=clock.now() + 30)).accepted
    assert am.received[1].json[0]["endsAt"] == to_iso(clock.now() + 30)
    assert am.violations == []


def test_an_update_is_accepted_only_when_every_alertmanager_took_it(tmp_path, target, targets):
    one, two = target("alertmanager"), target("alertmanager")
    two.forced = (503, {})
    sink = build_sink("alertmanager", "am", {"urls": [one.url, two.url]})
    result = sink.deliver(targets.make_update(str(tmp_path / "s")))
    assert result.status == "retry" and result.detail.startswith("1/2 Alertmanagers accepted")
