"""pool_exhaustion's active processes: the in-place update of the newest entry keeps the plain LRU table."""
from __future__ import annotations

import random
from collections import OrderedDict

from hypothesis import given, settings, strategies as st

from agent.events import Job, Request
from detectors.pool_exhaustion.detector import PoolExhaustionDetector


def _plain(events) -> "OrderedDict":  # type: ignore[no-untyped-def, type-arg]
    """(tier, pid) -> last seen, most recently seen last, at most 1000: what _active has always kept."""
    table: "OrderedDict" = OrderedDict()  # type: ignore[type-arg]
    for e in events:
        if e.pid and e.ts is not None:
            key = ("jobs" if isinstance(e, Job) else "web", e.pid)
            table[key] = e.ts or 0.0
            table.move_to_end(key)
            if len(table) > 1000:
                table.popitem(last=False)
    return table


def _event(rng_pid: str, is_job: bool, ts: float):  # type: ignore[no-untyped-def]
    if is_job:
        return Job(ts=ts, state="start", job_class="HardWorker", jid="", pid=rng_pid)
    return Request(ts=ts, status=200, endpoint="A#a", pid=rng_pid)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "1", "2", "3"]), st.booleans(), st.floats(0.0, 1e6)), max_size=200))
def test_active_processes_are_the_plain_lru_table(steps) -> None:
    det = PoolExhaustionDetector()
    events = [_event(pid, is_job, ts) for pid, is_job, ts in steps]
    for e in events:
        det.feed(e)
    assert list(det.active_pids.items()) == list(_plain(events).items())


def test_active_processes_past_the_cap_drop_the_least_recently_seen() -> None:
    rng = random.Random(5)
    det = PoolExhaustionDetector()
    events = [_event(str(rng.choice(range(1200)) if rng.random() < 0.5 else 7), rng.random() < 0.6, 1000.0 + i)
              for i in range(20000)]
    for e in events:
        det.feed(e)
    want = _plain(events)
    assert len(want) == 1000 and list(det.active_pids.items()) == list(want.items())
