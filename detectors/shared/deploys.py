"""Deploy markers shared by the detectors: "did this start after a deploy?"

A regression that appears right after a deploy is the most actionable finding there
is (containment: roll back). ``DeployMarkers`` collects deploy times from two places:

* ``Deploy`` events (a new REVISION, a Capistrano line, an explicit marker), fed with
  ``observe(event)``;
* ``AppFacts.revision`` / ``AppFacts.revision_time`` (the REVISION file and its mtime),
  added once at construction.

It answers, in event time only:

* ``last_deploy_before(ts)``: the latest marker at or before ``ts`` (or None);
* ``deploys_between(start, end)``: markers in ``(start, end]``;
* ``is_new_since_deploy(key, ts)``: the key (endpoint, job class, fingerprint) was
  first seen after the last deploy before ``ts`` *and* the stream was already being
  watched before that deploy; without history before the deploy everything would
  look "new", so the answer is then False.

Callers report every key occurrence with ``see(key, ts)`` (cheap; first sighting per
key is kept in a bounded LRU) and every event time with ``watch(ts)``; ``see`` calls
``watch`` itself. All state is bounded: ``max_deploys`` markers, ``max_keys`` keys.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Hashable, List, NamedTuple, Optional

from agent.events import Deploy
from detectors.base import AppFacts

#: two markers of the same revision closer than this are one deploy (REVISION mtime
#: and the Capistrano line for the same release, or the same marker in two files)
SAME_DEPLOY_S = 600.0


class DeployMarker(NamedTuple):
    ts: float
    revision: str
    source: str = ""
    line: int = 0


class DeployMarkers:
    """Sorted, bounded list of deploy times plus first-sighting times per key."""

    def __init__(
        self,
        facts: Optional[AppFacts] = None,
        max_deploys: int = 100,
        max_keys: int = 20000,
        min_history_s: float = 0.0,
    ) -> None:
        self.max_deploys = max_deploys
        self.max_keys = max_keys
        # how long the stream must have been watched before a deploy for a key
        # first seen after it to count as "new since the deploy"
        self.min_history_s = min_history_s
        self._markers: List[DeployMarker] = []
        self._times: List[float] = []
        self._first_seen: "OrderedDict[Hashable, float]" = OrderedDict()
        self.watch_start: Optional[float] = None
        if facts is not None and facts.revision_time is not None:
            self.add(facts.revision_time, facts.revision, source="REVISION")

    # -- input ------------------------------------------------------------------
    def observe(self, event: Deploy) -> None:
        if event.ts is not None:
            self.add(event.ts, event.revision, event.source, event.line)

    def add(self, ts: float, revision: str = "", source: str = "", line: int = 0) -> None:
        """Record a deploy at ``ts``; duplicates of one release are merged (earliest wins)."""
        i = bisect.bisect_left(self._times, ts)
        for j in (i - 1, i):
            if 0 <= j < len(self._markers):
                other = self._markers[j]
                if abs(other.ts - ts) <= SAME_DEPLOY_S and (other.revision == revision or not revision or not other.revision):
                    if ts < other.ts or (revision and not other.revision):
                        self._markers[j] = DeployMarker(min(ts, other.ts), revision or other.revision, source, line)
                        self._times[j] = min(ts, other.ts)
                    return
        self._markers.insert(i, DeployMarker(ts, revision, source, line))
        self._times.insert(i, ts)
        if len(self._markers) > self.max_deploys:
            del self._markers[0]
            del self._times[0]

    def watch(self, ts: Optional[float]) -> None:
        """Note that the stream covered time ``ts`` (the earliest one is what matters)."""
        if ts is not None and (self.watch_start is None or ts < self.watch_start):
            self.watch_start = ts

    def see(self, key: Hashable, ts: Optional[float]) -> None:
        """Record an occurrence of ``key``; only its first time is kept."""
        if ts is None:
            return
        self.watch(ts)
        first = self._first_seen.get(key)
        if first is None:
            self._first_seen[key] = ts
            if len(self._first_seen) > self.max_keys:
                self._first_seen.popitem(last=False)
        else:
            if ts < first:
                self._first_seen[key] = ts
            self._first_seen.move_to_end(key)

    # -- questions --------------------------------------------------------------
    @property
    def markers(self) -> List[DeployMarker]:
        return list(self._markers)

    def last_deploy_before(self, ts: Optional[float]) -> Optional[DeployMarker]:
        if ts is None or not self._times:
            return None
        i = bisect.bisect_right(self._times, ts)
        return self._markers[i - 1] if i else None

    def deploys_between(self, start: Optional[float], end: float) -> List[DeployMarker]:
        """Markers with ``start < ts <= end`` (``start`` None: from the beginning)."""
        lo = 0 if start is None else bisect.bisect_right(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return self._markers[lo:hi]

    def first_seen(self, key: Hashable) -> Optional[float]:
        return self._first_seen.get(key)

    def is_new_since_deploy(self, key: Hashable, ts: Optional[float]) -> bool:
        deploy = self.last_deploy_before(ts)
        first = self._first_seen.get(key)
        if deploy is None or first is None or self.watch_start is None:
            return False
        watched_before = deploy.ts - self.watch_start
        return first >= deploy.ts and watched_before >= self.min_history_s and watched_before > 0
