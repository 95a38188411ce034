"""The daemon's helpers: delivery in its own thread, per-sink counts, its logs, root warning.

Logs are one logfmt line per record on stderr (journald keeps them as they are)::

    ts=2025-11-26T10:00:00.123Z level=warning logger=railwatch.tail msg="…/production.log: truncated…"
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, Dict, Optional

from agent.clock import Clock

log = logging.getLogger("railwatch.delivery")

ROOT_ADVICE = (
    "running as root: railwatch only needs to read the logs. Run it as its own user in the logs' group, e.g. "
    "`useradd --system --no-create-home --groups adm railwatch`, `chown -R railwatch /var/lib/railwatch` and "
    "User=railwatch in the systemd unit; give it read access to the app's log directory (setfacl -m u:railwatch:rX). "
    "Process metrics of another user's processes need that user or CAP_SYS_PTRACE."
)


def root_warning(logger: logging.Logger, euid: Optional[int] = None) -> bool:
    uid = euid if euid is not None else (os.geteuid() if hasattr(os, "geteuid") else -1)
    if uid == 0:
        logger.warning(ROOT_ADVICE)
        return True
    return False


class CountingSink:
    """A sink as the deliverer sees it, counting each outcome in the self-metrics."""

    def __init__(self, sink: Any, metrics: Any) -> None:
        self._sink = sink
        self._metrics = metrics
        self.name = sink.name
        self.kind = getattr(sink, "kind", "")
        self.refresh_interval = getattr(sink, "refresh_interval", None)

    def deliver(self, update: Any) -> Any:
        try:
            result = self._sink.deliver(update)
        except Exception:
            self._metrics.sink_failures.labels(self.name, "retry").inc()
            raise
        if result.status == "accepted":
            self._metrics.sink_deliveries.labels(self.name).inc()
        else:
            self._metrics.sink_failures.labels(self.name, result.status).inc()
        return result

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


def write_json_atomically(path: str, data: Dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_quote(record.getMessage())}"]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """The railwatch loggers to stderr in logfmt (called once, by the CLI)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("railwatch")
    for name in ("railwatch", "agent", "detectors"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # watchdog logs an error when its observer is stopped while an event is in flight: harmless
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
    root.debug("logging at %s", level)
