"""Test doubles that plug-in authors and our own tests share."""
from __future__ import annotations

from agent.clock import Clock


class FakeClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_764_151_200.0) -> None:  # 2025-11-26T10:00:00Z
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
