"""The one place that reads the wall clock.

Detectors use event time; the daemon needs real time for expiry ("nothing arrived for
N s"), retry backoff and quiet periods. Everything that needs it takes a ``Clock``;
tests pass ``agent.testing.FakeClock``.
"""
from __future__ import annotations

import time


class Clock:
    def now(self) -> float:
        """Epoch seconds, UTC."""
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SystemClock = Clock
