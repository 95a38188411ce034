"""Outbox delivery: nothing lost while a sink is down, once each when it is back, backoff, order."""
from __future__ import annotations

import random
from typing import List

from agent.incidents import Deliverer, IncidentManager, IncidentStore
from agent.sinks import build_sink
from agent.sinks.base import DeliveryResult
from agent.testing import FakeClock


class ScriptedSink:
    """A sink that answers from a script (then accepts); records what it was given."""

    kind = "scripted"

    def __init__(self, name: str, answers: List[DeliveryResult] = (), refresh_interval=None) -> None:
        self.name, self.answers, self.got = name, list(answers), []
        self.refresh_interval = refresh_interval

    def deliver(self, update):
        self.got.append((update.kind, update.incident.id))
        return self.answers.pop(0) if self.answers else DeliveryResult.ok()

    def dry_run(self):
        return DeliveryResult.ok()


def test_a_sink_down_for_ten_minutes_gets_all_three_incidents_once_each_after_an_agent_restart(tmp_path, target, targets):
    state = str(tmp_path / "state")
    clock = FakeClock()
    hook = target("webhook", secret="s3")
    pager = target("pagerduty")
    port_hook, port_pager = hook.port, pager.port
    hook.stop()
    pager.stop()  # both targets are down: connections are refused

    def agent():
        sinks = {
            "hook": build_sink("webhook", "hook", {"url": f"http://127.0.0.1:{port_hook}/in", "secret": "s3", "timeout_s": 5}, clock=clock),
            "pager": build_sink("pagerduty", "pager", {"url": f"http://127.0.0.1:{port_pager}/v2/enqueue",
                                                       "routing_key": "R" * 32, "timeout_s": 5}, clock=clock),
        }
        store = IncidentStore(state, clock)
        return store, IncidentManager(store, clock, list(sinks), host="web-1"), Deliverer(store, sinks, clock, rng=random.Random(7))

    store, manager, deliverer = agent()
    fired = []
    for minute in range(10):  # ten minutes of outage, three incidents firing in it
        if minute in (1, 4, 7):
            fired += manager.observe([targets.make_finding(subject={"endpoint": f"Orders{minute}Controller#index"})])
        for _ in range(2):
            deliverer.run_once()
            clock.advance(30)
    assert len(fired) == 3
    assert len(store.outbox_for(pending_only=True)) == 6  # 3 updates x 2 sinks, none lost
    assert all(r.attempts >= 1 and r.last_error == "connection failed" for r in store.outbox_for())
    store.close()  # the agent stops

    hook.port, pager.port = port_hook, port_pager
    hook.start()
    pager.start()
    store, manager, deliverer = agent()  # and starts again, from the same state directory
    for _ in range(40):
        clock.advance(30)
        deliverer.run_once()
    assert store.outbox_for(pending_only=True) == []
    ids = sorted(u.incident.id for u in fired)
    assert sorted(r.json["incident"]["id"] for r in hook.received) == ids
    assert sorted(r.json["dedup_key"] for r in pager.received) == sorted(u.incident.fingerprint + "@web-1" for u in fired)
    assert hook.violations == [] and pager.violations == []


def test_backoff_is_exponential_with_jitter_capped_and_honours_retry_after(tmp_path):
    d = Deliverer(IncidentStore(str(tmp_path / "s")), {}, FakeClock(), rng=random.Random(1), base_delay=2, max_delay=600)
    delays = [d.backoff(n) for n in range(1, 12)]
    for n, delay in enumerate(delays, 1):
        ceiling = min(600, 2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert d.backoff(1, retry_after=30) >= 30
    assert d.backoff(1, retry_after=10_000) <= 600


def test_a_permanent_refusal_gives_up_and_keeps_the_reason(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    sink = ScriptedSink("x", [DeliveryResult.permanent("HTTP 400: Event object is invalid")])
    IncidentManager(store, clock, ["x"]).observe([targets.make_finding()])
    assert Deliverer(store, {"x": sink}, clock).run_once() == {"accepted": 0, "retry": 0, "failed": 1}
    (row,) = store.outbox_for()
    assert row.gave_up_at is not None and "invalid" in row.last_error
    assert Deliverer(store, {"x": sink}, clock).run_once()["accepted"] == 0 and len(sink.got) == 1


def test_a_sink_that_raises_is_retried_and_does_not_stop_the_others(tmp_path, targets):
    class Exploding(ScriptedSink):
        def deliver(self, update):
            raise RuntimeError("bug in a sink")

    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    good = ScriptedSink("good")
    IncidentManager(store, clock, ["bad", "good"]).observe([targets.make_finding()])
    counts = Deliverer(store, {"bad": Exploding("bad"), "good": good}, clock).run_once()
    assert counts == {"accepted": 1, "retry": 1, "failed": 0}
    (pending,) = store.outbox_for(pending_only=True)
    assert pending.sink == "bad" and pending.last_error == "sink raised RuntimeError"


def test_a_down_sink_is_tried_once_per_pass_and_its_incidents_keep_their_order(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    sink = ScriptedSink("x", [DeliveryResult.retry("HTTP 503")] * 3)
    m = IncidentManager(store, clock, ["x"])
    (a,) = m.observe([targets.make_finding(subject={"q": "a"})])
    m.observe([targets.make_finding(subject={"q": "b"})])
    m.resolve(a.incident.id)
    d = Deliverer(store, {"x": sink}, clock, rng=random.Random(3))
    for _ in range(60):
        d.run_once()
        clock.advance(10)
    assert sink.got[:3] == [("open", a.incident.id)] * 3  # one attempt per pass while it is down
    delivered = sink.got[3:]
    assert delivered.index(("open", a.incident.id)) < delivered.index(("resolve", a.incident.id))
    assert len(delivered) == 3 and store.outbox_for(pending_only=True) == []


def test_sinks_with_a_refresh_interval_get_open_incidents_again_and_nothing_else_does(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    am, hook = ScriptedSink("am", refresh_interval=60), ScriptedSink("hook")
    m = IncidentManager(store, clock, ["am", "hook"])
    (u,) = m.observe([targets.make_finding()])
    d = Deliverer(store, {"am": am, "hook": hook}, clock)
    d.run_once()
    for _ in range(3):
        clock.advance(61)
        d.run_once()
    assert am.got == [("open", u.incident.id)] * 4 and hook.got == [("open", u.incident.id)]
    m.resolve(u.incident.id)
    d.run_once()
    clock.advance(61)
    d.run_once()
    assert am.got[4:] == [("resolve", u.incident.id)] * 2
    clock.advance(400)  # resolves are re-sent for 5 minutes only
    d.run_once()
    clock.advance(61)
    d.run_once()
    assert am.got[4:] == [("resolve", u.incident.id)] * 2 and hook.got[-1] == ("resolve", u.incident.id)


def test_rows_older_than_max_age_are_given_up(tmp_path, targets):
    clock = FakeClock()
    store = IncidentStore(str(tmp_path / "s"), clock)
    IncidentManager(store, clock, ["x"]).observe([targets.make_finding()])
    clock.advance(3600)
    Deliverer(store, {"x": ScriptedSink("x")}, clock, max_age=1800).run_once()
    (row,) = store.outbox_for()
    assert row.gave_up_at is not None and "expired" in row.last_error
