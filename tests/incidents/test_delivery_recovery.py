"""Delivery recovers in seconds: a sink back after an outage gets its whole queue at once
(bounded rate), each update exactly once; Retry-After (seconds or HTTP-date) is respected."""
from __future__ import annotations

import email.utils
import random

from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.incidents.delivery import DeliverySettings
from agent.sinks import build_sink
from agent.sinks.base import retry_after_seconds
from agent.testing import FakeClock

PASS_S = 0.5  # the delivery thread's cadence


def _agent(tmp_path, clock, url, **deliverer_args):
    sink = build_sink("webhook", "hook", {"url": url + "/in", "timeout_s": "5s"}, clock=clock)
    store = IncidentStore(str(tmp_path / "state"), clock)
    manager = IncidentManager(store, clock, ["hook"], host="web-1")
    return store, manager, Deliverer(store, {"hook": sink}, clock, rng=random.Random(5), **deliverer_args)


def test_a_sink_down_two_minutes_with_three_incidents_queued_gets_all_within_five_seconds_of_coming_back(
        tmp_path, target, targets):
    clock = FakeClock()
    hook = target("webhook")
    hook.forced = (503, {})
    store, manager, deliverer = _agent(tmp_path, clock, hook.url)
    opened = []
    for tick in range(int(120 / PASS_S)):  # two minutes down; incidents at 0 s, 20 s and 40 s
        if tick in (0, 40, 80):
            opened += manager.observe([targets.make_finding(subject={"endpoint": f"Orders{tick}Controller#index"})])
        deliverer.run_once()
        clock.advance(PASS_S)
    rows = store.outbox_for(pending_only=True)
    assert len(rows) == 3 and min(r.attempts for r in rows) >= 1
    assert max(r.next_attempt_at for r in rows) - clock.now() > 5  # their own backoffs would make them wait

    hook.forced = None  # the sink is back
    back = clock.now()
    while store.outbox_for(pending_only=True):
        deliverer.run_once()
        clock.advance(PASS_S)
        assert clock.now() - back <= 5.0 + PASS_S, "queue not drained within 5 s of the sink coming back"
    delivered_at = [r.delivered_at for r in store.outbox_for()]
    assert max(delivered_at) - back <= 5.0
    ids = [r.json["incident"]["id"] for r in hook.received]
    assert sorted(ids) == sorted(u.incident.id for u in opened)  # each exactly once
    assert hook.violations == []


def test_while_down_the_sink_is_probed_with_one_request_every_few_seconds_not_one_per_row(tmp_path, target, targets):
    clock = FakeClock()
    hook = target("webhook")
    hook.forced = (503, {})
    store, manager, deliverer = _agent(tmp_path, clock, hook.url, probe_interval=3.0)
    for n in range(3):
        manager.observe([targets.make_finding(subject={"endpoint": f"C{n}#index"})])
    attempts = []
    for _ in range(int(120 / PASS_S)):
        attempts.append(deliverer.run_once()["retry"])
        clock.advance(PASS_S)
    assert max(attempts) == 1  # one request per pass at most, whatever the queue
    second_minute = sum(attempts[len(attempts) // 2:])
    assert 20 <= second_minute <= 20 + 3  # one probe per 3 s, plus a row whose own (long) backoff ran out


def test_retry_after_in_seconds_and_http_date_forms():
    now = 1_764_151_200.0
    assert retry_after_seconds("120", now) == 120.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after_seconds(date, now) == 90.0
    assert retry_after_seconds(email.utils.formatdate(now - 10, usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_a_retry_after_http_date_holds_every_attempt_back_until_then(tmp_path, target, targets):
    clock = FakeClock()
    hook = target("webhook")
    hook.forced = (429, {"Retry-After": email.utils.formatdate(clock.now() + 60, usegmt=True)})
    store, manager, deliverer = _agent(tmp_path, clock, hook.url)
    manager.observe([targets.make_finding()])
    tries = 0
    for _ in range(int(59 / PASS_S)):
        tries += deliverer.run_once()["retry"]
        clock.advance(PASS_S)
    assert tries == 1  # nothing before the date: no probe, no retry
    hook.forced = None
    for _ in range(int(6 / PASS_S)):
        deliverer.run_once()
        clock.advance(PASS_S)
    assert len(hook.received) == 1 and store.outbox_for(pending_only=True) == []


def test_backoff_is_capped_by_the_setting(tmp_path):
    settings = DeliverySettings(max_backoff_s=30.0)
    d = Deliverer(IncidentStore(str(tmp_path / "s")), {}, FakeClock(), rng=random.Random(2), **settings.deliverer_args())
    assert max(d.backoff(n) for n in range(1, 40)) <= 30.0
    assert d.backoff(3, retry_after=20) == 20.0  # the target's Retry-After is respected…
    assert d.backoff(3, retry_after=120) == 30.0  # …up to the cap
