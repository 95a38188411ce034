"""Fleets on PagerDuty: two agents (two state dirs, two hosts) report the same bug; one host
resolving must not end the other host's alert (per-host dedup_key, fingerprint in custom_details)."""
from __future__ import annotations

from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.sinks import build_sink
from agent.testing import FakeClock


def _agent(tmp_path, host, clock, pd_url, **options):
    sinks = {"pd": build_sink("pagerduty", "pd", {"routing_key": "P" * 32, "url": pd_url + "/v2/enqueue", **options},
                              clock=clock)}
    store = IncidentStore(str(tmp_path / host), clock)
    return IncidentManager(store, clock, list(sinks), host=host), Deliverer(store, sinks, clock)


def alert_states(received):
    """PagerDuty's view: each dedup_key's alert, the last event for it deciding."""
    states = {}
    for req in received:
        states[req.json["dedup_key"]] = "open" if req.json["event_action"] == "trigger" else "resolved"
    return states


def test_one_host_resolving_does_not_end_the_other_hosts_pagerduty_alert(tmp_path, target, targets):
    clock = FakeClock()
    pd = target("pagerduty")
    finding = targets.make_finding(subject={"pool": "primary", "endpoint": "OrdersController#create"})
    web1, web2 = (_agent(tmp_path, host, clock, pd.url) for host in ("web-1", "web-2"))
    (opened1,) = web1[0].observe([finding])
    (opened2,) = web2[0].observe([finding])
    web1[1].run_once()
    web2[1].run_once()
    assert set(alert_states(pd.received).values()) == {"open"} and len(alert_states(pd.received)) == 2

    clock.advance(10)
    web1[0].resolve(opened1.incident.id)  # web-1 recovered; web-2 still has the bug
    web1[1].run_once()
    assert alert_states(pd.received) == {f"{finding.fingerprint}@web-1": "resolved", f"{finding.fingerprint}@web-2": "open"}
    triggers = [r.json for r in pd.received if r.json["event_action"] == "trigger"]
    # one bug, many hosts: the fingerprint is the field PagerDuty's content-based grouping keys on
    assert {t["payload"]["custom_details"]["fingerprint"] for t in triggers} == {finding.fingerprint}
    assert {t["payload"]["source"] for t in triggers} == {"web-1", "web-2"}
    assert pd.violations == []


def test_the_shared_fleet_key_is_exactly_the_bug_this_design_avoids(tmp_path, target, targets):
    """dedup_scope = "fleet" (single-host set-ups): shows why it is not the default."""
    clock = FakeClock()
    pd = target("pagerduty")
    finding = targets.make_finding()
    web1, web2 = (_agent(tmp_path, host, clock, pd.url, dedup_scope="fleet") for host in ("web-1", "web-2"))
    (opened1,) = web1[0].observe([finding])
    web2[0].observe([finding])
    web1[1].run_once()
    web2[1].run_once()
    web1[0].resolve(opened1.incident.id)
    web1[1].run_once()
    assert alert_states(pd.received) == {finding.fingerprint: "resolved"}  # web-2's alert ended too
