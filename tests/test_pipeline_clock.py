"""The pipeline's event clock (high water, jump confirmation, periodic flushes) in
``feed_batch`` counts exactly what the plain per-event rule below counts, whatever the
times (None, far jumps, NaN, infinities, out of order) and wherever the batches are cut."""
from __future__ import annotations

import math
from typing import List, Optional

from hypothesis import given, settings, strategies as st

from agent.events import Finding, Request
from agent.pipeline import CONFIRM_JUMP, MAX_JUMP_S, REORDER_SLACK_S, Pipeline


class ReferenceClock:
    """The rule as first written, one event at a time (abs() and attribute reads, no locals)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.high_water: Optional[float] = None
        self.next_flush: Optional[float] = None
        self.jump: List[float] = []
        self.flushes: List[float] = []

    def tick(self, ts: Optional[float]) -> None:
        if ts is None:
            return
        if self.high_water is not None and abs(ts - self.high_water) > MAX_JUMP_S:
            if self.jump and abs(ts - self.jump[-1]) > MAX_JUMP_S:
                self.jump.clear()
            self.jump.append(ts)
            if len(self.jump) < CONFIRM_JUMP:
                return
            self.high_water = self.next_flush = None
            self.jump.clear()
        elif self.jump:
            self.jump.clear()
        if self.high_water is None or ts > self.high_water:
            self.high_water = ts
        if self.next_flush is None:
            self.next_flush = ts + self.every
        elif ts >= self.next_flush:
            self.next_flush = ts + self.every
            self.flushes.append(ts - REORDER_SLACK_S)


class FlushRecorder:
    name = "flushes"
    kinds = frozenset({"request"})

    def __init__(self) -> None:
        self.flushes: List[Optional[float]] = []

    def feed(self, event) -> None:  # type: ignore[no-untyped-def]
        pass

    def flush(self, until: Optional[float]) -> List[Finding]:
        self.flushes.append(until)
        return []


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


_base = 1_800_000_000.0
_dense = st.integers(0, 40).map(lambda i: _base + i * 0.25)  # ties and small steps, in and out of order
_times = st.one_of(
    st.none(),
    _dense,
    _dense.map(lambda t: t + 86_400.0),  # a day later: a jump, confirmed after CONFIRM_JUMP of them
    st.floats(_base - 100, _base + 500, allow_nan=False),
    st.sampled_from([0.0, 4_102_444_800.0, _base + MAX_JUMP_S, _base - MAX_JUMP_S, math.inf, -math.inf, math.nan]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_times, min_size=4, max_size=120), st.lists(st.integers(0, 120), max_size=5), st.sampled_from([0.0, 1.0, 60.0]))
def test_feed_batch_keeps_the_clock_of_the_per_event_rule(times, cuts, every) -> None:
    recorder = FlushRecorder()
    pipeline = Pipeline([recorder], flush_every=every)
    reference = ReferenceClock(every)
    bounds = sorted({0, len(times), *(c for c in cuts if c < len(times))})
    for lo, hi in zip(bounds, bounds[1:]):
        pipeline.feed_batch([Request(ts=ts, line=n) for n, ts in enumerate(times[lo:hi], lo)])
        for ts in times[lo:hi]:
            reference.tick(ts)
        assert _same(pipeline.high_water, reference.high_water) and _same(pipeline._next_flush, reference.next_flush)
        assert pipeline._jump == reference.jump
        assert len(recorder.flushes) == len(reference.flushes)
        assert all(_same(a, b) for a, b in zip(recorder.flushes, reference.flushes))
