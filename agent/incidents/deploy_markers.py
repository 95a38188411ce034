"""Where the daemon hears about deploys (each becomes a fix-verification marker):

* ``RevisionWatcher``: the app root's ``REVISION`` (Capistrano writes it into each release;
  ``current`` is followed, so the symlink switch is seen). Polled by stat; a changed
  content is a deploy at the file's mtime. The last revision seen is kept by the caller
  (store checkpoint), so a deploy made while the agent was down is still noticed.
* ``MarkerInbox``: explicit markers, from ``railwatch deploy --revision R`` (a small JSON
  file dropped in ``STATE_DIR/deploys/``, read and removed by the daemon) and from
  ``POST /deploy`` on the agent's listener (queued in memory by the HTTP thread).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from agent.clock import Clock
from agent.fsutil import write_json_atomically

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_REVISION = 200


class Marker(NamedTuple):
    ts: float  # event time of the deploy (epoch seconds UTC)
    revision: str
    source: str  # "REVISION", "railwatch deploy", "POST /deploy", a log path


def clean_revision(value: Any) -> str:
    text = str(value or "").strip().splitlines()[0] if str(value or "").strip() else ""
    return "".join(c for c in text if c.isprintable())[:MAX_REVISION]


class RevisionWatcher:
    """Notices a new ``REVISION`` in the app root (or its Capistrano ``current``)."""

    def __init__(self, root: str, last_revision: str = "") -> None:
        self.root = root
        self.last_revision = last_revision
        self._stat: Optional[Tuple[str, float, int]] = None

    def path(self) -> str:
        current = os.path.join(self.root, "current", "REVISION")
        return current if os.path.exists(current) else os.path.join(self.root, "REVISION")

    def poll(self) -> Optional[Marker]:
        path = self.path()
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
            key = (real, st.st_mtime, st.st_size)
            if key == self._stat:
                return None
            with open(real, encoding="utf-8", errors="replace") as fh:
                revision = clean_revision(fh.read(4096))
        except OSError:
            return None
        self._stat = key
        if not revision or revision == self.last_revision:
            return None
        first = not self.last_revision
        self.last_revision = revision
        if first:
            return None  # the revision the agent started with is not a new deploy
        return Marker(st.st_mtime, revision, "REVISION")


class MarkerInbox:
    """Explicit deploy markers: files under ``<state dir>/deploys/`` and HTTP posts."""

    def __init__(self, state_dir: str, clock: Clock) -> None:
        self.clock = clock
        self.dir = os.path.join(state_dir, "deploys")
        self._posted: List[Marker] = []
        self._lock = threading.Lock()

    def post(self, body: bytes) -> Tuple[int, Dict[str, Any]]:
        """``POST /deploy`` with ``{"revision": "R", "at": epoch seconds (optional)}``; from the HTTP thread."""
        if len(body) > MAX_BODY:
            return 413, {"error": "body too large"}
        try:
            doc = json.loads(body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": 'expected JSON: {"revision": "R"}'}
        marker = parse_marker(doc, "POST /deploy", self.clock.now())
        if marker is None:
            return 400, {"error": 'expected JSON: {"revision": "R", "at": epoch seconds (optional)}'}
        with self._lock:
            self._posted.append(marker)
        return 202, {"accepted": True, "revision": marker.revision, "at": marker.ts}

    def take(self) -> List[Marker]:
        with self._lock:
            out, self._posted = self._posted, []
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".json"))
        except OSError:
            return out
        for name in names:
            path = os.path.join(self.dir, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    marker = parse_marker(json.load(fh), "railwatch deploy", self.clock.now())
            except (OSError, ValueError) as exc:
                log.warning("deploy marker %s unreadable, ignored: %s", path, exc)
                marker = None
            try:
                os.unlink(path)
            except OSError:
                pass
            if marker is not None:
                out.append(marker)
        return sorted(out)


def parse_marker(doc: Any, source: str, now: float) -> Optional[Marker]:
    """A marker from ``{"revision": "R", "at": epoch seconds}``; without "at", ``now``."""
    if not isinstance(doc, dict):
        return None
    revision = clean_revision(doc.get("revision"))
    if not revision:
        return None
    at = doc.get("at")
    try:
        ts = float(at) if at is not None else now
    except (TypeError, ValueError):
        return None
    if ts != ts or ts in (float("inf"), float("-inf")):
        return None
    return Marker(ts, revision, source)


def write_marker(state_dir: str, revision: str, at: float) -> str:
    """What ``railwatch deploy`` does without ``--url``: a marker file the daemon picks up."""
    directory = os.path.join(state_dir, "deploys")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{at:.6f}-{os.getpid()}.json")
    write_json_atomically(path, {"revision": clean_revision(revision), "at": at})
    return path
