"""Fast, forgiving timestamp parsing to epoch seconds (UTC).

Log lines repeat the same second many times, so the seconds part is cached and only
the fraction is parsed per line. Times without a zone are read as UTC.
"""
from __future__ import annotations

import calendar
import re
from datetime import datetime, timezone
from typing import Optional

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T _](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"\s*(Z|UTC|[+-]\d\d(?::?\d\d)?)?"
)
_last_key = ""
_last_epoch = 0


def parse_iso(text: str) -> Optional[float]:
    """Parse the timestamp at the start of ``text``; None when there is none."""
    global _last_key, _last_epoch
    m = _ISO.match(text)
    if m is None:
        return None
    key = text[: m.end(6)]
    if key == _last_key:
        epoch = _last_epoch
    else:
        fields = (int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]))
        if not _valid(*fields):
            return None
        epoch = calendar.timegm(fields + (0, 0, 0))
        _last_key, _last_epoch = key, epoch
    frac = (m[7] or "")[:9]  # nanoseconds at most: a 5,000-digit fraction would overflow int()
    value = float(epoch) + (int(frac) / 10 ** len(frac) if frac else 0.0)
    zone = m[8]
    if zone and zone not in ("Z", "UTC"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), (int(digits[2:4]) if len(digits) >= 4 else 0)
        if hours > 23 or minutes > 59:
            return None
        value -= sign * (hours * 3600 + minutes * 60)
    return value


def _valid(year: int, month: int, day: int, hour: int, minute: int, second: int) -> bool:
    """A real calendar date and clock time (timegm itself would read Feb 30 as Mar 2).

    Second 60 is a leap second, which ISO 8601 allows; it counts as the next second."""
    if not (1 <= month <= 12 and 1 <= year):
        return False
    return 1 <= day <= calendar.monthrange(year, month)[1] and hour <= 23 and minute <= 59 and second <= 60


def day_epoch(day: str) -> Optional[int]:
    """Midnight UTC of the digits "YYYY-MM-DD" as parse_iso computes it; None for a date it refuses
    (the fast clocks of the Rails and Sidekiq parsers add the time of day to this)."""
    year, month, mday = int(day[:4]), int(day[5:7]), int(day[8:10])
    if not (1 <= month <= 12 and 1 <= year) or not 1 <= mday <= calendar.monthrange(year, month)[1]:
        return None
    return calendar.timegm((year, month, mday, 0, 0, 0, 0, 0, 0))


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_SYSLOG = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)")


def parse_syslog(text: str, year: int) -> Optional[float]:
    """Parse ``Feb 11 13:15:39`` (syslog has no year: the caller supplies it)."""
    m = _SYSLOG.match(text)
    if m is None or m[1] not in _MONTHS:
        return None
    try:
        return float(calendar.timegm((year, _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]), 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


_MIN_TS = -62135596800.0  # 0001-01-01T00:00:00Z
_MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z


def to_iso(ts: Optional[float]) -> Optional[str]:
    """Render epoch seconds as ISO-8601 UTC with milliseconds (the report's format)."""
    if ts is None:
        return None
    # a hostile stamp (NaN, year 1 or 10000+) is shown at the edge of what can be written, never raised
    ts = min(max(ts, _MIN_TS), _MAX_TS) if ts == ts else 0.0
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*", re.I)


def parse_duration(text: str) -> float:
    """Seconds in a duration as people type it: ``90s``, ``15m``, ``2h30m``, ``2d``, ``1.5h``.

    Units are d, h, m, s, largest first, each at most once; a bare number has no unit and
    is refused. Raises ValueError with a one-line message for anything else."""
    m = _DURATION.fullmatch(text)
    if m is None or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 15m, 2h30m, 2d)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in zip(m.groups(), "dhms") if n)

