"""The daemon's delivery loop: ``Deliverer.run_once`` in its own thread, with per-sink counts.

``Deliverer`` (``agent.incidents.delivery``) decides what is due and retries; this thread
runs it every half second or when woken, keeps the outbox gauges of the self-metrics,
and ``CountingSink`` counts each sink's outcomes.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from agent.clock import Clock

log = logging.getLogger("railwatch.delivery")


class CountingSink:
    """A sink as the deliverer sees it, counting each outcome in the self-metrics and
    remembering since when it has been failing (``failing_since``, monotonic; for /healthz)."""

    def __init__(self, sink: Any, metrics: Any, clock: Optional[Clock] = None) -> None:
        self._sink = sink
        self._metrics = metrics
        self._clock = clock or Clock()
        self.failing_since: Optional[float] = None
        self.last_error = ""
        self.name = sink.name
        self.kind = getattr(sink, "kind", "")
        self.refresh_interval = getattr(sink, "refresh_interval", None)

    def deliver(self, update: Any) -> Any:
        try:
            result = self._sink.deliver(update)
        except Exception as exc:
            self._metrics.sink_failures.labels(self.name, "retry").inc()
            self._failed(type(exc).__name__)
            raise
        if result.status == "accepted":
            self._metrics.sink_deliveries.labels(self.name).inc()
            self.failing_since, self.last_error = None, ""
        else:
            self._metrics.sink_failures.labels(self.name, result.status).inc()
            self._failed(str(getattr(result, "detail", "") or result.status)[:200])
        return result

    def _failed(self, error: str) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock.monotonic()
        self.last_error = error

    def dry_run(self) -> Any:
        return self._sink.dry_run()


class DeliveryThread(threading.Thread):
    """Runs ``Deliverer.run_once`` every ``interval_s`` or when woken; keeps the outbox gauges."""

    def __init__(self, deliverer: Any, store: Any, metrics: Any, clock: Clock, interval_s: float = 0.5) -> None:
        super().__init__(name="delivery", daemon=True)
        self.deliverer = deliverer
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval_s = interval_s
        self.oldest_age = 0.0
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        self._next_gauges = 0.0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.pass_once()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def pass_once(self) -> None:
        try:
            self.deliverer.run_once()
        except Exception:  # noqa: BLE001 - a locked or full database must not end delivery for good
            log.exception("delivery pass failed")
        if self.clock.monotonic() >= self._next_gauges:
            self._next_gauges = self.clock.monotonic() + 2.0
            self.refresh_gauges()

    def refresh_gauges(self) -> None:
        try:
            pending = self.store.outbox_for(pending_only=True)
            open_count = len(self.store.open_incidents())
        except Exception:  # noqa: BLE001
            log.exception("reading the outbox failed")
            return
        now = self.clock.now()
        self.oldest_age = max((now - row.created_at for row in pending), default=0.0)
        self.metrics.outbox_depth.set(len(pending))
        self.metrics.outbox_oldest.set(self.oldest_age)
        self.metrics.open_incidents.set(open_count)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(30.0)

    def drain(self, seconds: float) -> None:
        """After ``stop``: deliver what is due for up to ``seconds`` (sinks that fail wait for the next start)."""
        end = self.clock.monotonic() + seconds
        sinks = list(self.deliverer.sinks)
        while self.clock.monotonic() < end and self.store.due_outbox(self.clock.now(), sinks, limit=1):
            self.pass_once()
        self.refresh_gauges()
