"""inotify (through watchdog) turned into "look again now" for the tail loop.

A file event only wakes the loop; the tailer itself decides what changed (agent.sources.tail).
Where inotify is missing or its watch/instance limits are exhausted, ``available`` is
False and the loop's poll interval does the same job, a little later.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterable, List

log = logging.getLogger("railwatch.tail")


class Waker:
    """Wakes ``wait`` on any change in the watched directories; ``created`` when a file appeared."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.event = threading.Event()
        self.created = False  # a file appeared: globs should be re-expanded
        self._observer = None
        self._dirs: List[str] = []
        self.available = False

    def watch(self, dirs: Iterable[str]) -> None:
        dirs = [d for d in dirs if os.path.isdir(d)]
        if not self.enabled or dirs == self._dirs:
            return
        self.stop()
        self._dirs = dirs
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            waker = self

            class Handler(FileSystemEventHandler):  # type: ignore[misc]
                def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                    if event.event_type in ("opened", "closed_no_write"):
                        return  # our own reads
                    if event.event_type in ("created", "moved"):
                        waker.created = True
                    waker.event.set()

            observer = Observer()
            for d in dirs:
                _schedule(observer, Handler(), d)
            observer.daemon = True
            observer.start()
            self._observer = observer
            self.available = True
        except (OSError, ImportError) as exc:  # inotify missing, or its watch/instance limit reached
            self.available = False
            log.warning("file events unavailable (%s); polling the logs instead", exc)

    def wait(self, timeout: float) -> None:
        if self.event.wait(timeout):
            self.event.clear()

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        self._dirs = []
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=2.0)
            except Exception:  # noqa: BLE001 - stopping a broken observer must not stop shutdown
                pass


def _schedule(observer, handler, directory: str) -> None:  # type: ignore[no-untyped-def]
    """Watch ``directory`` for files appearing, moving and going, not for writes.

    A Rails app writes its log a line at a time (Ruby's Logger syncs each line): waking on
    every write cost three watchdog threads' work per line, more than reading the lines.
    Growth is found by the tailer's poll every ``tail.poll_interval_s`` (0.25 s) instead;
    rotation still wakes the tailer at once. watchdog before 4.0 has no event filter: it
    reports everything, which is only slower."""
    from watchdog.events import DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent

    wanted = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent]
    try:
        observer.schedule(handler, directory, recursive=False, event_filter=wanted)
    except TypeError:  # watchdog < 4.0
        observer.schedule(handler, directory, recursive=False)
