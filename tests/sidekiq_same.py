"""Helpers for the feed_lines-equals-feed tests of the Sidekiq parser (tests/ is on pytest's pythonpath; not a test module).

``SidekiqParser.feed_lines`` keeps feed's hot path in its own loop; these run a stream of
lines both ways and say what differs: every field of every event, the events' order,
``unparsed`` and the time the parser carries over to lines without one.
"""
from __future__ import annotations

from dataclasses import astuple
from typing import List, Sequence, Tuple

from agent.parsers.sidekiq import SidekiqParser

Outcome = Tuple[List[Tuple[object, ...]], int, object]


def _fields(events: Sequence[object]) -> List[Tuple[object, ...]]:
    return [(type(e).__name__,) + astuple(e) for e in events]  # type: ignore[call-overload]


def per_line(lines: Sequence[str]) -> Outcome:
    """``feed`` on each line, then ``finish``: the reference."""
    parser = SidekiqParser("same.log")
    events: List[object] = []
    for n, line in enumerate(lines, 1):
        events.extend(parser.feed(line, n))
    events.extend(parser.finish())
    return _fields(events), parser.unparsed, parser.last_ts


def in_chunks(lines: Sequence[str], sizes: Sequence[int]) -> Outcome:
    """``feed_lines`` over consecutive chunks of these sizes (the last one repeated), then ``finish``."""
    parser = SidekiqParser("same.log")
    events: List[object] = []
    at = 0
    i = 0
    while at < len(lines) or at == 0:
        size = max(1, sizes[min(i, len(sizes) - 1)])
        events.extend(parser.feed_lines(lines[at : at + size], at + 1))
        at += size
        i += 1
        if at >= len(lines):
            break
    events.extend(parser.finish())
    return _fields(events), parser.unparsed, parser.last_ts


def first_difference(expected: Outcome, got: Outcome) -> str:
    """What differs, readably ("" when nothing does)."""
    want, want_unparsed, want_ts = expected
    have, have_unparsed, have_ts = got
    for i, (a, b) in enumerate(zip(want, have)):
        if a != b and repr(a) != repr(b):  # repr: NaN fields compare unequal to themselves
            return f"event {i}: feed gave {a!r}, feed_lines gave {b!r}"
    if len(want) != len(have):
        return f"feed gave {len(want)} events, feed_lines {len(have)}"
    if want_unparsed != have_unparsed:
        return f"unparsed: feed {want_unparsed}, feed_lines {have_unparsed}"
    if repr(want_ts) != repr(have_ts):
        return f"last_ts: feed {want_ts!r}, feed_lines {have_ts!r}"
    return ""
