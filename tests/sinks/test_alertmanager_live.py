"""Against a real Prometheus Alertmanager (Debian's prometheus-alertmanager, 0.25 in bookworm).

The test starts its own Alertmanager on a free loopback port with a temporary config
and data dir (never the system service) and stops it by PID. Without the binary the
tests skip locally, and fail in CI (install it with tests/sinks/install-alertmanager.sh).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from agent.clock import Clock
from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.sinks import build_sink
from agent.testing import FakeClock

# the fleet set-up railwatch documents: one group per bug, one alert per host in it
CONFIG = """
route:
  receiver: blackhole
  group_by: ['alertname', 'fingerprint']
  group_wait: 1h
receivers:
  - name: blackhole
"""


def _binary():
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    message = "prometheus-alertmanager not installed (bash tests/sinks/install-alertmanager.sh)"
    if os.environ.get("CI"):
        pytest.fail(message + " but CI is set: the Alertmanager tests must run")
    pytest.skip(message)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    binary = _binary()
    (tmp_path / "am.yml").write_text(CONFIG)
    port = _free_port()
    log = open(tmp_path / "am.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30  # start-up wait, not an assertion on speed
        while True:
            if proc.poll() is not None:
                pytest.fail(f"alertmanager exited with {proc.returncode}: {(tmp_path / 'am.log').read_text()[-2000:]}")
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("alertmanager did not become ready in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _railwatch_groups(url):
    groups = requests.get(url + "/api/v2/alerts/groups", timeout=5).json()
    return [g for g in groups if g["labels"].get("alertname", "").startswith("railwatch_")]


def _agent(tmp_path, name, host, clock, am_url, pd_url):
    sinks = {
        "am": build_sink("alertmanager", "am", {"url": am_url}, clock=clock),
        "pd": build_sink("pagerduty", "pd", {"routing_key": "P" * 32, "url": pd_url}, clock=clock),
    }
    store = IncidentStore(str(tmp_path / name), clock)
    return IncidentManager(store, clock, list(sinks), host=host), Deliverer(store, sinks, clock)


def test_two_agents_reporting_the_same_bug_make_one_alert_group_and_a_dedup_key_per_host(tmp_path, alertmanager, target, targets):
    clock = FakeClock(start=Clock().now())  # Alertmanager compares endsAt with its own clock
    pd = target("pagerduty")
    finding = targets.make_finding(detector="pool_exhaustion", subject={"pool": "primary", "endpoint": "OrdersController#create"})
    for name, host in (("a", "web-1.example.internal"), ("b", "web-2.example.internal")):
        manager, deliverer = _agent(tmp_path, name, host, clock, alertmanager, pd.url + "/v2/enqueue")
        manager.observe([finding])
        assert deliverer.run_once()["accepted"] == 2
    (group,) = _railwatch_groups(alertmanager)
    assert sorted(a["labels"]["host"] for a in group["alerts"]) == ["web-1.example.internal", "web-2.example.internal"]
    for alert in group["alerts"]:
        assert alert["status"]["state"] == "active"
        assert alert["labels"]["pool"] == "primary" and alert["labels"]["endpoint"] == "OrdersController#create"
        assert alert["labels"]["fingerprint"] == finding.fingerprint
    assert [r.json["dedup_key"] for r in pd.received] == [finding.fingerprint + "@web-1.example.internal",
                                                          finding.fingerprint + "@web-2.example.internal"]
    assert {r.json["payload"]["custom_details"]["fingerprint"] for r in pd.received} == {finding.fingerprint}
    assert pd.violations == []


def test_one_host_resolving_leaves_the_other_hosts_alert_firing(tmp_path, alertmanager, target, targets):
    clock = FakeClock(start=Clock().now())
    pd = target("pagerduty")
    finding = targets.make_finding(detector="pool_exhaustion", subject={"pool": "primary"})
    agents = [_agent(tmp_path, name, host, clock, alertmanager, pd.url + "/v2/enqueue") for name, host in (("a", "web-1"), ("b", "web-2"))]
    opened = []
    for manager, deliverer in agents:
        (u,) = manager.observe([finding])
        opened.append(u.incident.id)
        deliverer.run_once()
    manager, deliverer = agents[0]
    manager.resolve(opened[0])
    deliverer.run_once()
    (group,) = _railwatch_groups(alertmanager)
    assert [a["labels"]["host"] for a in group["alerts"]] == ["web-2"]
    assert pagerduty_alerts(pd.received) == {finding.fingerprint + "@web-1": "resolved",
                                             finding.fingerprint + "@web-2": "triggered"}


def pagerduty_alerts(events):
    """What PagerDuty makes of Events API v2 events: each dedup_key's alert state, last event wins."""
    state = {}
    for req in events:
        ev = req.json
        state[ev["dedup_key"]] = {"trigger": "triggered", "resolve": "resolved"}.get(ev["event_action"], ev["event_action"])
    return state


def test_resolve_sets_ends_at_and_the_alert_leaves_the_active_groups(tmp_path, alertmanager, target, targets):
    clock = FakeClock(start=Clock().now())
    pd = target("pagerduty")
    manager, deliverer = _agent(tmp_path, "a", "web-1", clock, alertmanager, pd.url + "/v2/enqueue")
    (u,) = manager.observe([targets.make_finding()])
    deliverer.run_once()
    assert len(_railwatch_groups(alertmanager)) == 1
    manager.resolve(u.incident.id)
    assert deliverer.run_once()["accepted"] == 2
    assert _railwatch_groups(alertmanager) == []
    assert [r.json["event_action"] for r in pd.received] == ["trigger", "resolve"]


def test_escalation_ends_the_warning_alert_and_leaves_one_critical(tmp_path, alertmanager, target, targets):
    clock = FakeClock(start=Clock().now())
    pd = target("pagerduty")
    manager, deliverer = _agent(tmp_path, "a", "web-1", clock, alertmanager, pd.url + "/v2/enqueue")
    manager.observe([targets.make_finding(severity="warning")])
    deliverer.run_once()
    manager.observe([targets.make_finding(severity="critical")])
    deliverer.run_once()
    alerts = [a for g in _railwatch_groups(alertmanager) for a in g["alerts"]]
    assert [a["labels"]["severity"] for a in alerts] == ["critical"]
    assert [r.json["payload"]["severity"] for r in pd.received] == ["warning", "critical"]


def test_dry_run_reports_a_healthy_alertmanager(alertmanager):
    sink = build_sink("alertmanager", "am", {"url": alertmanager})
    assert sink.dry_run().accepted
