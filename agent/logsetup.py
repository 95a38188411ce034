"""railwatch's own logs: one logfmt line per record on stderr (journald keeps them as they are)::

    ts=2025-11-26T10:00:00.123Z level=warning logger=railwatch.tail msg="…/production.log: truncated…"
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any


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
