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
        return self.feed_batch((event,))

    def feed_batch(self, events: Sequence[Event]) -> List[Finding]:
        """Feed events in order; the same as ``feed`` on each, without a call per event."""
        out: List[Finding] = []
        by_kind = self._by_kind
        high_water = self.high_water
        next_flush = self._next_flush
        every = self.flush_every
        for event in events:
            wanted = by_kind.get(event.kind)
            if wanted:
                for detector in wanted:
                    try:
                        detector.feed(event)
                    except Exception as exc:  # noqa: BLE001 - one broken detector must not stop the others
                        self._disable(detector, exc, event)
            ts = event.ts
            if ts is None:
                continue
            if high_water is None or ts > high_water:
                high_water = ts
            if next_flush is None:
                next_flush = ts + every
            elif ts >= next_flush:
                next_flush = ts + every
                self.high_water, self._next_flush = high_water, next_flush
                out.extend(self.flush(ts - REORDER_SLACK_S))
        self.events += len(events)
        self.high_water, self._next_flush = high_water, next_flush
        return out

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
        for kind, members in self._by_kind.items():
            if detector in members:  # a new list: a feed loop may be iterating over the old one
                self._by_kind[kind] = [d for d in members if d is not detector]
