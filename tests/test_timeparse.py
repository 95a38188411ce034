"""agent/timeparse.py: ISO stamps must be real calendar dates and clock times; durations as people type them."""
from __future__ import annotations

import calendar

import pytest

from agent.timeparse import parse_duration, parse_iso


@pytest.mark.parametrize("text", [
    "2026-02-30T10:00:00Z",  # timegm alone reads this as March 2
    "2026-02-29T10:00:00Z",  # 2026 is not a leap year
    "2026-04-31 10:00:00",
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "2026-01-10T24:00:00Z",
    "2026-01-10T23:60:00Z",
    "2026-01-10T23:59:61Z",
    "2026-01-10T10:00:00+24:00",
    "2026-01-10T10:00:00+05:60",
])
def test_impossible_dates_and_times_are_not_timestamps(text):
    assert parse_iso(text) is None


def test_real_edge_dates_still_parse():
    assert parse_iso("2024-02-29T23:59:59Z") == calendar.timegm((2024, 2, 29, 23, 59, 59, 0, 0, 0))
    assert parse_iso("2026-12-31T23:59:59.5+01:00") == calendar.timegm((2026, 12, 31, 22, 59, 59, 0, 0, 0)) + 0.5
    # a leap second (ISO 8601 allows :60) is the next second, not a dropped line
    assert parse_iso("2016-12-31T23:59:60Z") == calendar.timegm((2017, 1, 1, 0, 0, 0, 0, 0, 0))


def test_an_invalid_stamp_does_not_poison_the_cache_for_the_next_line():
    # the seconds part is cached per key: a rejected key must not be remembered as valid
    assert parse_iso("2026-02-30T10:00:00.100Z") is None
    assert parse_iso("2026-02-30T10:00:00.200Z") is None
    assert parse_iso("2026-02-28T10:00:00.300Z") == calendar.timegm((2026, 2, 28, 10, 0, 0, 0, 0, 0)) + 0.3


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("2h30m", 9000), ("2d", 172800),
    ("1d2h3m4s", 93784), ("1.5h", 5400), ("2h 30m", 9000), (" 1H ", 3600), ("0s", 0),
])
def test_durations_as_people_type_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "h", "1 hour", "30m1h", "1h1h", "-1h", "1w", "2026-11-26", "1h!"])
def test_anything_else_is_a_one_line_value_error(text):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert "\n" not in message and "90s" in message
