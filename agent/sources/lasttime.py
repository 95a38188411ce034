"""The one rule for lines without a time of their own: they take the last time seen.

A Rails ``Completed`` line, a Puma boot line or a Postgres ``DETAIL`` carries no time; the
event it makes happened when the file's last timed line did. Replaying a file
(``agent.sources.replay``) and tailing it (``agent.sources.tailfile``) both apply it here,
one ``LastTime`` per file, so ``scan`` and ``run`` stamp the same events the same way.
"""
from __future__ import annotations

from typing import Iterable, Optional

from agent.events import Event


class LastTime:
    """The last event time seen in one file."""

    __slots__ = ("ts",)

    def __init__(self, ts: Optional[float] = None) -> None:
        self.ts = ts

    def fill(self, events: Iterable[Event]) -> None:
        """Give untimed events the last time seen; timed ones move it on."""
        last = self.ts
        for event in events:
            if event.ts is None:
                event.ts = last
            else:
                last = event.ts
        self.ts = last
