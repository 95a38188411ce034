"""Events in, findings out: the part of the pipeline that ``scan`` and ``run`` share.

The pipeline hands each event only to the detectors that asked for its kind, asks
them for findings every ``flush_every`` seconds of *event* time (so memory stays
bounded on long inputs and live findings come out promptly), and isolates failures:
a detector that raises on an event skips that event (counted in ``errors`` and reported
through ``on_error``) and keeps running; only a detector that keeps raising — see
``DISABLE_AFTER_ERRORS`` — is disabled for the run, listed with the reason in
``disabled`` (for /healthz to report the run as degraded).

A member with a ``feed_batch(events)`` method (the scan's timeline collector) is handed
each batch whole instead of event by event: it picks the kinds it wants itself and
returns the (index, exception) of the events it skipped, which count as errors here
like a detector's. It never reports findings between flushes, so taking the batch
before the detectors take its events changes nothing it or they compute.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Sequence

from agent.events import Event, Finding
from detectors.base import Detector

#: events may arrive this far out of time order (threads interleave, sources are merged)
REORDER_SLACK_S = 120.0
#: the pipeline's event clock (high water, periodic flushes) jumps by more than this only
#: when CONFIRM_JUMP events in a row agree: a log that resumes after a quiet night moves it
#: at once, one line stamped 2100 (or 1970) among today's lines never does
MAX_JUMP_S = 6 * 3600.0
CONFIRM_JUMP = 3
#: a detector is disabled when this many of its feeds/flushes raised within the last
#: ERROR_WINDOW_EVENTS events of the run: one hostile line costs one skipped event, a
#: detector broken for a whole kind of event stops spamming after a handful
DISABLE_AFTER_ERRORS = 10
ERROR_WINDOW_EVENTS = 1000


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
        self._batch_fed: List[Detector] = []  # members with feed_batch (see the module doc)
        for d in self.detectors:
            if callable(getattr(d, "feed_batch", None)):
                self._batch_fed.append(d)
                continue
            for kind in d.kinds:
                self._by_kind.setdefault(kind, []).append(d)
        self._next_flush: Optional[float] = None
        self.high_water: Optional[float] = None  # latest event time seen (see MAX_JUMP_S)
        self._jump: List[float] = []  # consecutive event times far from the clock, awaiting confirmation
        self.events = 0
        self.errors: Dict[str, int] = {}  # detector name -> events/flushes it raised on
        self.disabled: Dict[str, str] = {}  # detector name -> why it was disabled
        self._recent_errors: Dict[str, Deque[int]] = {}  # detector name -> event positions of its last errors

    def feed(self, event: Event) -> List[Finding]:
        """Feed one event; returns findings when a periodic flush fell due."""
        return self.feed_batch((event,))

    def feed_batch(self, events: Sequence[Event]) -> List[Finding]:
        """Feed events in order; the same as ``feed`` on each, without a call per event."""
        out: List[Finding] = []
        by_kind = self._by_kind  # one dict for the run: _disable replaces its lists, never the dict
        high_water = self.high_water
        next_flush = self._next_flush
        every = self.flush_every
        jump = self._jump  # likewise cleared and appended in place, never replaced
        max_jump, min_jump = MAX_JUMP_S, -MAX_JUMP_S
        for member in self._batch_fed:
            for index, exc in member.feed_batch(events):  # type: ignore[attr-defined]
                self._failed(member, exc, events[index], self.events + index)
        for position, event in enumerate(events, self.events):
            wanted = by_kind.get(event.kind)
            if wanted:
                for detector in wanted:
                    try:
                        detector.feed(event)
                    except Exception as exc:  # noqa: BLE001 - one broken detector must not stop the others
                        self._failed(detector, exc, event, position)
            ts = event.ts
            if ts is None:
                continue
            # the clock (see MAX_JUMP_S); hot path: one subtraction, no abs() call
            if high_water is None:
                if jump:
                    jump.clear()
                high_water = ts
            else:
                step = ts - high_water
                if step > max_jump or step < min_jump:  # abs(ts - high_water) > MAX_JUMP_S
                    if jump and abs(ts - jump[-1]) > max_jump:
                        jump.clear()  # not the same new time as the events before it
                    jump.append(ts)
                    if len(jump) < CONFIRM_JUMP:
                        continue  # fed to the detectors, but it does not move the clock (yet)
                    jump.clear()  # confirmed: the stream really is at another time
                    high_water, next_flush = ts, None
                else:
                    if jump:
                        jump.clear()
                    if ts > high_water:
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
                self._failed(detector, exc, None, self.events)
        return out

    def _failed(self, detector: Detector, exc: Exception, event: Optional[Event], position: int) -> None:
        """Count one error (the event is skipped); disable the detector if it keeps failing."""
        name = detector.name
        if name in self.disabled:
            return  # raised again within the batch that disabled it
        self.errors[name] = self.errors.get(name, 0) + 1
        recent = self._recent_errors.setdefault(name, deque(maxlen=DISABLE_AFTER_ERRORS))
        recent.append(position)
        where = f" at {event.source}:{event.line}" if event is not None else " in flush"
        what = f"{type(exc).__name__}: {exc}"
        if len(recent) == DISABLE_AFTER_ERRORS and recent[-1] - recent[0] < ERROR_WINDOW_EVENTS:
            reason = f"{DISABLE_AFTER_ERRORS} errors within {ERROR_WINDOW_EVENTS} events, the last{where} ({what})"
            self._on_error(f"detector {name} failed{where} ({what}); disabled for this run: {reason}")
            self._disable(detector, reason)
        else:
            skipped = "event skipped" if event is not None else "flush skipped"
            self._on_error(f"detector {name} failed{where} ({what}); {skipped}, {self.errors[name]} error(s) so far")

    def _disable(self, detector: Detector, reason: str) -> None:
        self.disabled[detector.name] = reason
        if detector in self.detectors:
            self.detectors.remove(detector)
        if detector in self._batch_fed:  # a new list, as below
            self._batch_fed = [d for d in self._batch_fed if d is not detector]
        for kind, members in self._by_kind.items():
            if detector in members:  # a new list: a feed loop may be iterating over the old one
                self._by_kind[kind] = [d for d in members if d is not detector]
