"""Incident lifecycle: open, counters, escalation, quiet-period resolve, recurrence, flaps, storms."""
from __future__ import annotations

from agent.incidents import IncidentManager, IncidentStore, LifecycleSettings
from agent.testing import FakeClock

SINKS = ["hook"]


def manager(tmp_path, clock, settings=None, host="web-1", bundler=None, state="state"):
    store = IncidentStore(str(tmp_path / state), clock)
    return IncidentManager(store, clock, SINKS, settings=settings, host=host, bundler=bundler), store


def test_first_finding_opens_one_incident_keyed_by_the_fingerprint(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock)
    f = targets.make_finding()
    (update,) = m.observe([f])
    assert update.kind == "open"
    assert update.incident.id == f"{f.fingerprint}-1"
    assert update.incident.fingerprint == f.fingerprint and update.incident.status == "open"
    assert [o.sink for o in store.outbox_for(update.incident.id)] == ["hook"]


def test_repeated_findings_update_counters_without_a_new_notification(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock)
    m.observe([targets.make_finding(count=3)])
    clock.advance(60)
    assert m.observe([targets.make_finding(count=4, first_seen=1_764_151_300.0)]) == []
    (inc,) = store.open_incidents()
    assert inc.count == 7 and inc.last_seen == 1_764_151_360.0
    assert len(store.outbox_for()) == 1


def test_escalation_from_warning_to_critical_updates_the_open_incident(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock)
    (opened,) = m.observe([targets.make_finding(severity="warning")])
    clock.advance(30)
    (esc,) = m.observe([targets.make_finding(severity="critical")])
    assert esc.kind == "escalate" and esc.previous_severity == "warning"
    assert esc.incident.id == opened.incident.id and esc.incident.severity == "critical"
    assert len(store.list_incidents()) == 1
    # and back down to warning is not a notification, nor a downgrade
    assert m.observe([targets.make_finding(severity="warning")]) == []
    assert store.get_incident(opened.incident.id).severity == "critical"


def test_incident_resolves_after_its_detectors_quiet_period(tmp_path, targets):
    clock = FakeClock()
    settings = LifecycleSettings(quiet_period_s=1800, quiet_periods_s={"n_plus_one": 600})
    m, store = manager(tmp_path, clock, settings)
    m.observe([targets.make_finding(detector="n_plus_one", subject={"endpoint": "PostsController#index"})])
    m.observe([targets.make_finding(detector="pool_exhaustion")])
    clock.advance(599)
    assert m.tick() == []
    clock.advance(1)
    (resolved,) = m.tick()
    assert resolved.kind == "resolve" and resolved.incident.detector == "n_plus_one"
    assert resolved.incident.resolved_reason == "quiet"
    clock.advance(1200)
    assert [u.incident.detector for u in m.tick()] == ["pool_exhaustion"]


def test_recurrence_after_the_cooldown_is_a_new_incident_linked_to_the_earlier_one(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock, LifecycleSettings(quiet_period_s=600, cooldown_s=300))
    (first,) = m.observe([targets.make_finding()])
    clock.advance(600)
    m.tick()
    clock.advance(301)
    (again,) = m.observe([targets.make_finding()])
    assert again.kind == "recur"
    assert again.incident.id.endswith("-2") and again.incident.recurrence == 2
    assert again.incident.previous_id == first.incident.id
    assert store.get_incident(first.incident.id).status == "resolved"


def test_a_flap_within_the_cooldown_reopens_the_same_incident_and_doubles_its_quiet_period(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock, LifecycleSettings(quiet_period_s=600, cooldown_s=900))
    (first,) = m.observe([targets.make_finding()])
    clock.advance(600)
    m.tick()
    clock.advance(60)
    (again,) = m.observe([targets.make_finding()])
    assert again.kind == "reopen" and again.incident.id == first.incident.id and again.incident.flaps == 1
    clock.advance(600)
    assert m.tick() == []  # 2 x quiet period now
    clock.advance(600)
    assert [u.kind for u in m.tick()] == ["resolve"]


def test_an_alert_storm_defers_notifications_but_keeps_every_incident(tmp_path, targets):
    clock = FakeClock()
    m, store = manager(tmp_path, clock, LifecycleSettings(rate_limit=3, rate_window_s=600))
    updates = m.observe([targets.make_finding(subject={"endpoint": f"C{i}#index"}) for i in range(7)])
    assert len(updates) == 7 and len(store.open_incidents()) == 7
    assert [u.deferred_until is None for u in updates] == [True] * 3 + [False] * 4
    assert len(store.due_outbox(clock.now(), SINKS)) == 3
    assert len(store.due_outbox(clock.now() + 600, SINKS)) == 6
    assert len(store.due_outbox(clock.now() + 1200, SINKS)) == 7


def test_two_hosts_reporting_the_same_bug_get_the_same_incident_id(tmp_path, targets):
    clock = FakeClock()
    a, _ = manager(tmp_path, clock, host="web-1", state="a")
    b, _ = manager(tmp_path, clock, host="web-2", state="b")
    (ua,) = a.observe([targets.make_finding()])
    (ub,) = b.observe([targets.make_finding()])
    assert ua.incident.id == ub.incident.id and ua.incident.fingerprint == ub.incident.fingerprint
    assert (ua.incident.host, ub.incident.host) == ("web-1", "web-2")


def test_a_failing_bundler_does_not_stop_the_incident_from_opening(tmp_path, targets):
    def broken(incident):
        raise OSError("disk full")

    m, store = manager(tmp_path, FakeClock(), bundler=broken)
    (update,) = m.observe([targets.make_finding()])
    assert update.kind == "open" and update.incident.bundle_path == ""
    assert len(store.outbox_for(pending_only=True)) == 1


def test_manual_resolve_only_applies_to_open_incidents(tmp_path, targets):
    m, _ = manager(tmp_path, FakeClock())
    (u,) = m.observe([targets.make_finding()])
    assert m.resolve(u.incident.id).incident.resolved_reason == "manual"
    assert m.resolve(u.incident.id) is None
    assert m.resolve("nope") is None


def test_evidence_is_merged_and_capped(tmp_path, targets):
    from agent.events import Evidence

    clock = FakeClock()
    m, store = manager(tmp_path, clock, LifecycleSettings(max_evidence=4))
    for i in range(6):
        m.observe([targets.make_finding(evidence=[Evidence("log/production.log", 10 + i, f"line {i}")])])
    (inc,) = store.open_incidents()
    lines = [e["line"] for e in inc.finding["evidence"]]
    assert len(lines) == 4 and lines[-1] == 15 and lines[0] == 10  # the onset and the latest are kept
