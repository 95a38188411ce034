"""Every registered detector is total: streams of real events with mangled time order
never raise, and every feed/flush call finishes.

The events come from the e2e fixture logs (tests/fixtures/logs/e2e/*/, parsed by
``agent.sources.replay.iter_events``). Hypothesis picks a slice of one setup's events and
mutates it: timestamps shifted by years either way, set to year 1 or 9999 (the extremes a parser can
write), negative, zero or removed;
events dropped, duplicated, shuffled; ``flush(until)`` called in between with untils
that go back and forth. Each example must finish: the hypothesis deadline is a hang guard
(generous, not a speed claim).

Bounded for the suite (RAILWATCH_FUZZ_EXAMPLES, default 150). A long run:

    RAILWATCH_FUZZ_EXAMPLES=5000 PYTHONPATH=$PWD python -m pytest -q -p no:cacheprovider tests/fuzz/test_detectors_fuzz.py
"""
from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import Event, Finding
from agent.sources.replay import iter_events
from detectors import REGISTRY, build_detectors
from detectors.base import AppFacts

E2E = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e"
EXAMPLES = int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES", "150"))
YEAR = 365.25 * 86400.0
MAX_SLICE = 200
# a parser's times lie in datetime's range (years 1 to 9999): the extremes are fair game
EARLIEST, LATEST = -62135596800.0, 253402300799.0

_EVENTS: Dict[str, List[Event]] = {}


def setup_events(setup: str) -> List[Event]:
    """All events of one e2e setup, every log file after the other (parsed once)."""
    if setup not in _EVENTS:
        events: List[Event] = []
        for log in sorted((E2E / setup).glob("*.log")):
            events.extend(iter_events(str(log)))
        _EVENTS[setup] = events
    return _EVENTS[setup]


SETUPS = sorted(p.name for p in E2E.iterdir() if p.is_dir())

# how one event's time is mangled: (kind, amount)
TIME_MUTATIONS = st.one_of(
    st.just(("keep", 0.0)),
    st.just(("none", 0.0)),
    st.tuples(st.just("shift"), st.sampled_from([-50 * YEAR, -YEAR, -86400.0, -301.0, -61.0, -0.5, 0.5, 61.0, 301.0, 86400.0, YEAR, 50 * YEAR])),
    st.tuples(st.just("shift"), st.floats(min_value=-100 * YEAR, max_value=100 * YEAR, allow_nan=False)),
    st.tuples(st.just("set"), st.sampled_from([0.0, -1.0, EARLIEST, -1e10, 1e11, LATEST, 1.5e9])),
)
# what happens to one event of the slice
EVENT_OPS = st.tuples(st.sampled_from(["keep", "keep", "keep", "drop", "duplicate"]), TIME_MUTATIONS)
UNTILS = st.one_of(
    st.none(),
    st.sampled_from([0.0, EARLIEST, -1e10, 1e11, LATEST]),
    st.floats(min_value=-100 * YEAR, max_value=100 * YEAR, allow_nan=False),
)


def mutate_time(ts: Optional[float], how: Tuple[str, float]) -> Optional[float]:
    kind, amount = how
    if kind == "none":
        return None
    if kind == "set":
        return amount
    if kind == "shift" and ts is not None:
        return min(max(ts + amount, EARLIEST), LATEST)
    return ts


class Stream:
    """Events and (position, until) flush calls; a short repr, for hypothesis' report."""

    def __init__(self, events: List[Event], flushes: List[Tuple[int, Optional[float]]]) -> None:
        self.events, self.flushes = events, flushes

    def __repr__(self) -> str:
        shown = ", ".join(f"{e.kind}@{e.source.rsplit('/', 1)[-1]}:{e.line} ts={e.ts!r}" for e in self.events[:40])
        more = f", … {len(self.events) - 40} more" if len(self.events) > 40 else ""
        return f"Stream([{shown}{more}], flushes={self.flushes!r})"


@st.composite
def streams(draw):  # type: ignore[no-untyped-def]
    """A mangled slice of real events, with flush calls (until values) interleaved."""
    events = setup_events(draw(st.sampled_from(SETUPS)))
    start = draw(st.integers(min_value=0, max_value=len(events) - 1))
    size = draw(st.integers(min_value=1, max_value=MAX_SLICE))
    chosen = events[start : start + size]
    ops = draw(st.lists(EVENT_OPS, min_size=len(chosen), max_size=len(chosen)))
    out: List[Event] = []
    for event, (op, how) in zip(chosen, ops):
        if op == "drop":
            continue
        mutated = dataclasses.replace(event, ts=mutate_time(event.ts, how))
        out.extend([mutated, mutated] if op == "duplicate" else [mutated])
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    flushes = draw(st.lists(st.tuples(st.integers(min_value=0, max_value=max(len(out), 1)), UNTILS), max_size=8))
    return Stream(out, sorted(flushes, key=lambda f: f[0]))


def check_findings(findings: object) -> None:
    assert isinstance(findings, list)
    assert all(isinstance(f, Finding) for f in findings)


@settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=30),  # a hang guard only
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream=streams())
def test_every_detector_survives_mangled_time_order(stream) -> None:  # type: ignore[no-untyped-def]
    events, flushes = stream.events, stream.flushes
    detectors = build_detectors(None, AppFacts())
    assert {d.name for d in detectors} == set(REGISTRY)
    pending = list(flushes)
    for position, event in enumerate(events):
        while pending and pending[0][0] <= position:
            until = pending.pop(0)[1]
            for detector in detectors:
                check_findings(detector.flush(until))
        for detector in detectors:
            if event.kind in detector.kinds:
                detector.feed(event)
    for _, until in pending:
        for detector in detectors:
            check_findings(detector.flush(until))
    for detector in detectors:
        check_findings(detector.flush(None))
        detector.flush(None)  # a second end of input is harmless too
