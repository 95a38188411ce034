"""Numbers read from log text, with bounds: a log line can say anything.

A measurement (a duration, a count, a status) that is not a finite number within
``MAX_VALUE`` is dropped — the field becomes None — rather than raised on or clamped
into a plausible-looking value: a detector would rather miss one number than trust a
made-up one. Over-long digit strings are refused before conversion, so a 64 KiB run of
digits costs nothing (and never reaches ``int``'s 4,300-digit limit).
"""
from __future__ import annotations

import math
from typing import Optional

from agent.timeparse import parse_iso

#: beyond any real duration in ms (~31,700 years), count or byte rate in a log line
MAX_VALUE = 1e15
#: longer than any number MAX_VALUE allows, with a fraction and an exponent
MAX_CHARS = 40


def bounded_float(value: object, limit: float = MAX_VALUE) -> Optional[float]:
    """``value`` (text or a JSON number) as a finite float with ``abs() <= limit``, else None."""
    if isinstance(value, str):  # the usual case, first: a number matched in a log line
        if not value or len(value) > MAX_CHARS:
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        # NaN fails both comparisons, ±inf the bound
        return number if -limit <= number <= limit else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not -limit <= value <= limit:
            return None
        number = float(value)
    elif isinstance(value, float):
        number = value
    else:
        return None
    if math.isnan(number) or not -limit <= number <= limit:  # also refuses ±inf
        return None
    return number


def bounded_int(value: object, limit: float = MAX_VALUE) -> Optional[int]:
    """``value`` as an int (a fraction is truncated, as ``int(float(...))`` did), else None."""
    number = bounded_float(value, limit)
    return None if number is None else int(number)


def finite_or_none(ts: Optional[float]) -> Optional[float]:
    """A timestamp that downstream arithmetic can trust: finite, else None."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    return float(ts) if math.isfinite(ts) else None


def safe_iso(text: str) -> Optional[float]:
    """``timeparse.parse_iso``, total: a stamp it cannot read (a 5,000-digit fraction
    overflows ``int``'s digit limit) is no time rather than an exception."""
    try:
        return finite_or_none(parse_iso(text))
    except (ValueError, OverflowError):
        return None
