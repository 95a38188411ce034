"""The scan's timeline series over a log spanning years (issue 18: such a log, or one line
stamped years off, re-bucketed every series on every event and scanned at 3,400 lines/s)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent import series as series_module
from agent.series import MAX_BUCKETS, WIDTHS, SeriesCollector
from agent.sources.replay import iter_events

LOG = Path(__file__).resolve().parent / "fixtures" / "corpus" / "select_rails_log" / "simple.log"
DAY = 86400.0


def test_a_log_spanning_years_stops_rebucketing_at_the_widest_width(monkeypatch) -> None:
    events = [e for e in iter_events(str(LOG)) if e.kind in SeriesCollector.kinds and e.ts is not None]
    assert events
    widened = []
    original = SeriesCollector._widen
    monkeypatch.setattr(series_module.SeriesCollector, "_widen", lambda self: (widened.append(1), original(self)))
    collector = SeriesCollector()
    fed = []
    for n in range(2 * MAX_BUCKETS):  # a day apart: the span passes MAX_BUCKETS days
        event = replace(events[n % len(events)])
        event.ts = events[0].ts + n * DAY
        collector.feed(event)
        fed.append(event)
    assert collector.width == WIDTHS[-1]
    assert len(widened) < len(WIDTHS)  # each step up the ladder once, not once per event
    counted = sum(b[0] for b in collector.requests["*"].values())
    assert counted == sum(1 for e in fed if e.kind == "request")
    assert (collector.last_ts - collector.first_ts) / DAY > MAX_BUCKETS
