"""Fleet: two agents (two state dirs, two host names) watching two instances of the reference app
with the same bug send to ONE real Alertmanager on loopback (Debian's prometheus-alertmanager,
started by the fixture of tests/sinks/test_alertmanager_live.py on a free port, stopped by PID).

The incident's fingerprint carries no host; each agent's alert carries its ``host`` label, and
Alertmanager, routed with ``group_by: [alertname, fingerprint]`` as railwatch documents, holds one
group for the bug with one alert per host. Each host's alert resolves on its own (``endsAt``), so
the group stays firing while any host still has the bug.

Marker `e2e`: skipped locally without Ruby/Puma/Sidekiq, Postgres, Redis or Alertmanager (one-line
reason), a failure under CI=true.
"""

import importlib.util
import os
import time

import pytest
import requests

from agent.timeparse import parse_iso

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("railwatch_e2e__load", os.path.join(_HERE, "_load.py"))
_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_load)
driver = _load.load("driver")
rp = _load.load("railwatch_proc")


def _load_alertmanager_fixture():
    """The `alertmanager` fixture of tests/sinks (binary lookup, temp config, readiness, stop by PID)."""
    name = "railwatch_e2e_alertmanager_live"
    path = os.path.join(os.path.dirname(_HERE), "sinks", "test_alertmanager_live.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_am_live = _load_alertmanager_fixture()
alertmanager = _am_live.alertmanager  # the fixture itself, reused (skips or fails in CI when not installed)

pytestmark = pytest.mark.e2e

HOSTS = ("web-1.fleet.test", "web-2.fleet.test")
QUIET_S = 12.0  # [incidents] quiet_period_s: long enough for web-2 to report while web-1's incident is open
REFRESH_S = 5.0  # alertmanager sink refresh_interval_s (its minimum): re-posts of open incidents


def _groups(url):
    groups = requests.get(url + "/api/v2/alerts/groups", timeout=5).json()
    return [g for g in groups if any(a["labels"].get("alertname", "").startswith("railwatch_") for a in g["alerts"])]


def _alert_now(url):
    """(number of railwatch groups, the alerts of the first group)."""
    groups = _groups(url)
    return len(groups), (groups[0]["alerts"] if groups else [])


def _open_incident(agent):
    docs = [d for d in agent.incidents().values() if d["incident"]["detector"] == "n_plus_one"]
    return docs[0] if docs else None


@pytest.fixture
def stack_prerequisites():
    """Checked before the Alertmanager fixture starts anything."""
    rp.require_prerequisites()


@pytest.fixture
def fleet(stack_prerequisites, tmp_path, alertmanager):
    stacks, agents = [], []
    try:
        for host in HOSTS:  # one after the other: each boot migrates and seeds the shared database
            stack = driver.ReferenceStack(str(tmp_path / host / "app"), "info", rp.free_port_pair(), redis_url="auto",
                                          verbose=False)
            stacks.append(stack)
            stack.start()
        for host, stack in zip(HOSTS, stacks):
            agent = rp.RailwatchAgent(
                str(tmp_path / host / "state"), [stack.path("production.log"), stack.path("sidekiq.log")],
                rp.free_port(), hostname=host, app_root=driver.APP_DIR,
                # both "hosts" share this machine: process samples could not tell them apart
                collectors={"psutil": {"enabled": False}},
                sinks={"local": {"type": "directory"},
                       "am": {"type": "alertmanager", "url": alertmanager, "refresh_interval_s": REFRESH_S,
                              "expire_after_s": 60.0}},
                incidents={"quiet_period_s": QUIET_S},
            )
            agents.append(agent)
            agent.start()
        yield alertmanager, stacks, agents
    finally:
        for agent in agents:
            agent.stop()
        for stack in stacks:
            stack.stop()


def test_two_hosts_with_the_same_bug_make_one_alert_group_that_resolves(fleet):
    url, stacks, agents = fleet
    timeline = []  # (seconds since start, groups, alerts, host annotations), for the report

    def observe():
        n, alerts = _alert_now(url)
        timeline.append((round(time.monotonic() - t0, 1), n, len(alerts), sorted(a["annotations"]["host"] for a in alerts)))
        return n, alerts

    t0 = time.monotonic()
    assert _groups(url) == []

    # the bug on web-1: one group, one alert, reported by web-1
    driver.n_plus_one(stacks[0])
    rp.wait_until(lambda: observe()[0] == 1, 20, 0.2, "web-1's alert in Alertmanager")
    n, (alert,) = observe()
    assert alert["labels"]["host"] == HOSTS[0]
    assert alert["labels"]["alertname"] == "railwatch_n_plus_one"
    assert alert["labels"]["endpoint"] == "PostsController#index"
    assert alert["status"]["state"] == "active"
    assert parse_iso(alert["endsAt"]) > time.time() + 30  # firing: endsAt = now + expire_after (60 s)
    fingerprint = alert["labels"]["fingerprint"]

    # the same bug on web-2: still one group, now holding one alert per host
    driver.n_plus_one(stacks[1])

    def reported_by_web2():
        n, alerts = observe()
        assert n == 1, timeline[-1]  # never a second group
        return sorted(a["labels"]["host"] for a in alerts) == sorted(HOSTS)

    rp.wait_until(reported_by_web2, 20, 0.2, "web-2's report of the same alert")
    docs = [_open_incident(a) for a in agents]
    assert all(d is not None for d in docs)
    assert {d["incident"]["host"] for d in docs} == set(HOSTS)
    assert {d["incident"]["fingerprint"] for d in docs} == {fingerprint}  # same bug, same id on both hosts
    for agent in agents:
        assert agent.metric("railwatch_sink_deliveries_total", sink="am") >= 1
        assert agent.metric("railwatch_sink_failures_total", sink="am") == 0

    # quiet for QUIET_S on both hosts: both incidents resolve and the alert ends (endsAt in the past,
    # so it leaves the active groups)
    def resolved_everywhere():
        groups = observe()[0]
        return groups == 0 and all((_open_incident(a) or {}).get("kind") == "resolve" for a in agents)

    rp.wait_until(resolved_everywhere, QUIET_S + 40, 0.5, "both incidents resolved and the alert ended")
    for agent in agents:
        inc = _open_incident(agent)["incident"]
        assert inc["status"] == "resolved" and inc["resolved_reason"] == "quiet"
        assert inc["resolved_at"] - inc["last_reported_at"] >= QUIET_S
    print("\nAlertmanager timeline (s, groups, alerts, host annotations):")
    last = None
    for row in timeline:
        if row[1:] != last:
            print("  ", row)
            last = row[1:]


def test_the_alert_stays_firing_while_another_host_still_has_the_bug(tmp_path, alertmanager):
    """No Rails stack needed: the reference app's captured N+1 request, replayed into two logs.
    web-1 recovers first; web-2 still has the bug (and refreshes its alert only every 30 s)."""
    quiet = 8.0
    block = rp.n_plus_one_request("info")
    agents, logs = [], []
    try:
        for host, refresh in zip(HOSTS, (REFRESH_S, 30.0)):
            os.makedirs(str(tmp_path / host))
            log = str(tmp_path / host / "production.log")
            open(log, "w").close()
            logs.append(log)
            agent = rp.RailwatchAgent(
                str(tmp_path / host / "state"), [log], rp.free_port(), hostname=host,
                collectors={"psutil": {"enabled": False}},
                sinks={"local": {"type": "directory"},
                       "am": {"type": "alertmanager", "url": alertmanager, "refresh_interval_s": refresh,
                              "expire_after_s": 60.0}},
                incidents={"quiet_period_s": quiet})
            agents.append(agent)
            agent.start()
        rp.append_requests(logs[0], block, 3)
        rp.wait_until(lambda: _alert_now(alertmanager)[0] == 1, 20, 0.2, "web-1's alert")
        stagger = time.monotonic() + quiet / 2  # web-2 reports while web-1's incident is open
        rp.wait_until(lambda: time.monotonic() >= stagger, quiet, 0.2, "stagger")
        rp.append_requests(logs[1], block, 3)
        rp.wait_until(lambda: _open_incident(agents[1]), 20, 0.2, "web-2's incident")
        groups_while_web2_open = []

        def web2_resolved():
            n = _alert_now(alertmanager)[0]
            doc = _open_incident(agents[1])
            if doc["kind"] == "resolve":
                return True
            groups_while_web2_open.append(n)
            return False

        rp.wait_until(web2_resolved, quiet + 20, 0.2, "web-2's incident resolved")
    finally:
        for agent in agents:
            agent.stop()
    assert groups_while_web2_open and set(groups_while_web2_open) == {1}, groups_while_web2_open
