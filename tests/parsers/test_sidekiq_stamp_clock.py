"""StampClock (the Sidekiq parser's reading of ``2024-05-01T12:00:00.123Z``) gives safe_iso's float
bit for bit and refuses what safe_iso refuses: Feb 30, hour 25, second 61 included (it once read
those as the next day or hour). feed_lines' own minute + seconds arithmetic gives the same times."""
from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parsers.numbers import safe_iso
from agent.parsers.sidekiq import SidekiqParser
from agent.parsers.sidekiq_lines import StampClock

DAYS = ["2024-02-29", "2023-02-29", "2024-02-30", "2024-04-31", "2024-12-31", "2024-13-01", "2024-00-10", "2024-01-00",
        "2024-01-32", "0000-01-01", "0001-01-01", "9999-12-31", "1900-02-29", "2000-02-29"]
TIMES = ["00:00:00", "23:59:59", "23:59:60", "23:59:61", "24:00:00", "12:60:00", "99:99:99", "12:34:56"]
FRACTIONS = ["", ".0", ".123", ".999999999", ".1234567891234", ".5"]


def check(clock: StampClock, stamp: str) -> None:
    want = safe_iso(stamp)
    got = clock.read(stamp)
    assert (got is None) == (want is None), (stamp, got, want)
    if want is not None:
        assert got is not None and got.hex() == want.hex(), stamp


def test_the_calendar_and_clock_edges() -> None:
    clock = StampClock()
    for day in DAYS:
        for time in TIMES:
            for fraction in FRACTIONS:
                check(clock, f"{day}T{time}{fraction}Z")


def _job_lines(stamps: list) -> list:  # type: ignore[type-arg]
    return [f"{s} pid=1 tid=t{i % 3} class=HardJob jid={i:024x} INFO: start" for i, s in enumerate(stamps)]


def _times(events: list) -> list:  # type: ignore[type-arg]
    return [(e.line, None if e.ts is None else e.ts.hex()) for e in events]


def test_feed_lines_reads_the_edges_as_feed_does() -> None:
    stamps = [f"{d}T{t}{f}Z" for d in DAYS[:6] for t in TIMES for f in FRACTIONS[:4]]
    lines = ["2024-05-01T12:00:00.000Z pid=1 tid=a class=HardJob jid=0 INFO: start"] + _job_lines(stamps)
    one = SidekiqParser("x")
    per_line = [e for n, line in enumerate(lines, 1) for e in one.feed(line, n)] + one.finish()
    chunked = SidekiqParser("x")
    assert _times(chunked.feed_lines(lines, 1) + chunked.finish()) == _times(per_line)


@settings(max_examples=int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 300), deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
                          st.integers(0, 99), st.text(st.sampled_from("0123456789"), max_size=14)), min_size=1, max_size=20))
def test_random_stamps(stamps: list) -> None:  # type: ignore[type-arg]
    clock = StampClock()
    for year, month, day, hour, minute, second, digits in stamps:
        check(clock, f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{'.' + digits if digits else ''}Z")
