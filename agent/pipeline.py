"""Events in, findings out: the part of the pipeline that ``scan`` and ``run`` share.

The pipeline hands each event only to the detectors that asked for its kind, asks
them for findings every ``flush_every`` seconds of *event* time (so memory stays
bounded on long inputs and live findings come out promptly), and isolates failures:
a detector that raises is disabled with a message instead of taking the run down.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

from agent.events import Event, Finding
from detectors.base import Detector

#: events may arrive this far out of time order (threads interleave, sources are merged)
REORDER_SLACK_S = 120.0


class Pipeline:
    def __init__(
        self,
        detectors: Sequence[Detector],
        flush_every: float = 60.0,
        on_error: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.detectors = list(detectors)
        self.flush_every = flush_every
        self._on_error = on_error or (lambda message: None)
        self._by_kind: Dict[str, List[Detector]] = {}
        for d in self.detectors:
            for kind in d.kinds:
                self._by_kind.setdefault(kind, []).append(d)
        self._next_flush: Optional[float] = None
        self.high_water: Optional[float] = None  # latest event time seen
        self.events = 0

    def feed(self, event: Event) -> List[Finding]:
        """Feed one event; returns findings when a periodic flush fell due."""
        self.events += 1
        for detector in self._by_kind.get(event.kind, ()):
            try:
                detector.feed(event)
            except Exception as exc:  # noqa: BLE001 - one broken detector must not stop the others
                self._disable(detector, exc, event)
        ts = event.ts
        if ts is None:
            return []
        if self.high_water is None or ts > self.high_water:
            self.high_water = ts
        if self._next_flush is None:
            self._next_flush = ts + self.flush_every
        elif ts >= self._next_flush:
            self._next_flush = ts + self.flush_every
            return self.flush(ts - REORDER_SLACK_S)
        return []

    def flush(self, until: Optional[float]) -> List[Finding]:
        """Findings complete up to ``until`` (None: end of input)."""
        out: List[Finding] = []
        for detector in list(self.detectors):
            try:
                out.extend(detector.flush(until))
            except Exception as exc:  # noqa: BLE001
                self._disable(detector, exc, None)
        return out

    def _disable(self, detector: Detector, exc: Exception, event: Optional[Event]) -> None:
        where = f" at {event.source}:{event.line}" if event is not None else ""
        self._on_error(f"detector {detector.name} failed{where} ({type(exc).__name__}: {exc}); disabled for this run")
        if detector in self.detectors:
            self.detectors.remove(detector)
        for members in self._by_kind.values():
            if detector in members:
                members.remove(detector)
