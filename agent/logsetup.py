"""railwatch's own logs: one logfmt line per record on stderr (journald keeps them as they are)::

    ts=2025-11-26T10:00:00.123Z level=warning logger=railwatch.tail msg="…/production.log: truncated…"

Under systemd, when stderr is the journal (``JOURNAL_STREAM`` names its device:inode), each
line starts with its syslog priority, ``<4>ts=… level=warning …``: journald strips the
prefix and stores the priority, so ``journalctl -u railwatch -p warning`` filters.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Mapping, Optional

# sd-daemon(3) prefixes: <3> err, <4> warning, <6> info, <7> debug
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class LogfmtFormatter(logging.Formatter):
    def __init__(self, priority_prefix: bool = False) -> None:
        super().__init__()
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        line = self._logfmt(record)
        if self.priority_prefix:
            return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>" + line
        return line

    def _logfmt(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_quote(record.getMessage())}"]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def writes_to_journal(stream: Any, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Is ``stream`` the journal? ``JOURNAL_STREAM`` is "device:inode" of the stream systemd
    connected; a stderr redirected elsewhere (a file, a pipe) inherits the variable but is not it."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no file descriptor to compare (a wrapped stream): trust the variable
    return value == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str = "info", stream: Any = None, environ: Optional[Mapping[str, str]] = None) -> None:
    """The railwatch loggers to stderr in logfmt (called once, by the CLI)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter(priority_prefix=writes_to_journal(stream, environ)))
    root = logging.getLogger("railwatch")
    for name in ("railwatch", "agent", "detectors"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # watchdog logs an error when its observer is stopped while an event is in flight: harmless
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
    root.debug("logging at %s", level)
