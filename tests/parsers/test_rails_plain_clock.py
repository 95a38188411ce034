"""PlainSecondClock (feed_lines' reading of a new second) gives safe_iso's float, bit for bit, and
refuses what safe_iso refuses, for every (second, fraction) PLAIN_PREFIX can match."""
from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parsers.numbers import safe_iso
from agent.parsers.rails_lines import PLAIN_PREFIX, PlainSecondClock


def same_as_safe_iso(clock: PlainSecondClock, second: str, fraction: str) -> None:
    line = f"I, [{second}{fraction} #1]  INFO -- : x"
    m = PLAIN_PREFIX.match(line)
    assert m is not None and m.group(1, 2) == (second, fraction)
    want = safe_iso(second + fraction)
    got = clock.read(second, fraction)
    assert (got is None) == (want is None), (second, fraction, got, want)
    if want is not None:
        assert got == want and got.hex() == want.hex(), (second, fraction)


def test_the_calendar_edges() -> None:
    clock = PlainSecondClock()
    days = ["2024-02-29", "2023-02-29", "2023-02-28", "2024-02-30", "2024-04-31", "2024-12-31", "2024-13-01", "2024-00-10",
            "2024-01-00", "2024-01-32", "0000-01-01", "0001-01-01", "9999-12-31", "1900-02-29", "2000-02-29", "1970-01-01"]
    times = ["00:00:00", "23:59:59", "23:59:60", "23:59:61", "24:00:00", "12:60:00", "99:99:99", "12:34:56"]
    fractions = [".0", ".5", ".123", ".123456", ".999999999", ".000000001", ".100000000", ".7"]
    for day in days:
        for time in times:
            for fraction in fractions:
                same_as_safe_iso(clock, f"{day}T{time}", fraction)


@settings(max_examples=int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 300), deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
                          st.integers(0, 99), st.text(st.sampled_from("0123456789"), min_size=1, max_size=9)), min_size=1, max_size=20))
def test_random_stamps(stamps: list) -> None:
    clock = PlainSecondClock()  # one clock for the lot: its remembered day must not leak into the next stamp
    for year, month, day, hour, minute, sec, digits in stamps:
        same_as_safe_iso(clock, f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{sec:02d}", "." + digits)
