"""The small, bounded records the N+1 detector keeps.

``OpenRequest``  statements of one request until its ``Completed`` line arrives;
                 per fingerprint a ``Group`` (counts and a few example lines, not
                 every statement, so a 10,000-statement request stays small)
``Incident``     one (endpoint, repeated fingerprint) or (endpoint, Bullet association):
                 running totals plus the increment not yet reported
``Spike``        an endpoint whose queries or DB time per request left its baseline
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.events import Bullet, Evidence, Request, Sql
from detectors.shared.deploys import DeployMarker
from detectors.n_plus_one.association import Association, camelize
from detectors.shared.sqlfp import SqlShape

MAX_IDENTITIES = 64  # distinct binds remembered per group: enough to tell 5 from 1
MAX_LOCATIONS = 8
MAX_EVIDENCE = 6


class Group:
    """One fingerprint's statements inside one request."""

    __slots__ = ("shape", "first", "binds", "source_event", "source_shape", "count", "identities",
                 "unlogged", "total_ms", "examples", "locations")

    def __init__(self, shape: SqlShape, first: Sql, binds: Sequence[Tuple[str, str]],
                 source_event: Optional[Sql], source_shape: Optional[SqlShape]) -> None:
        self.shape = shape
        self.first = first
        self.binds = binds
        self.source_event = source_event if source_shape is None or source_shape.fingerprint != shape.fingerprint else None
        self.source_shape = source_shape if self.source_event is not None else None
        self.count = 0
        self.identities: set = set()
        self.unlogged = 0  # placeholders but no binds printed: assume distinct
        self.total_ms = 0.0
        self.examples: List[Sql] = []
        self.locations: Dict[str, int] = {}

    def add(self, e: Sql) -> None:
        self.count += 1
        if e.duration_ms:
            self.total_ms += e.duration_ms
        if e.binds or ("?" not in e.sql and "$" not in e.sql):
            if len(self.identities) < MAX_IDENTITIES:
                self.identities.add((e.sql, e.binds))
        else:
            self.unlogged += 1
        if len(self.examples) < 2:
            self.examples.append(e)
        loc = e.source_location
        if loc:
            locations = self.locations
            if loc in locations:
                locations[loc] += 1
            elif len(locations) < MAX_LOCATIONS:
                locations[loc] = 1

    @property
    def distinct(self) -> int:
        return len(self.identities) + self.unlogged


class OpenRequest:
    __slots__ = ("key", "request_id", "first_ts", "last_ts", "groups", "queries", "cached", "db_ms", "tags",
                 "source_event", "source_shape")

    def __init__(self, key: str, ts: Optional[float]) -> None:
        self.key = key
        self.request_id = "" if key.startswith("orphan:") else key
        self.first_ts = ts
        self.last_ts = ts
        self.groups: Dict[str, Group] = {}
        self.queries = 0  # round trips (CACHE hits excluded)
        self.cached = 0
        self.db_ms = 0.0
        self.tags: Optional[Mapping[str, str]] = None
        self.source_event: Optional[Sql] = None  # the latest load: the parent rows of a following loop
        self.source_shape: Optional[SqlShape] = None

    def remember_source(self, e: Sql, shape: SqlShape) -> None:
        self.source_event, self.source_shape = e, shape


def endpoint_from_tags(tags: Optional[Mapping[str, str]]) -> str:
    """QueryLogs / marginalia tags -> "PostsController#index" or the job class."""
    if tags:
        action = tags.get("action", "")
        controller = tags.get("namespaced_controller") or tags.get("controller", "")
        if controller and action:
            if not controller.endswith("Controller"):
                controller = "::".join(camelize(p) for p in controller.split("/")) + "Controller"
            return f"{controller}#{action}"
        if tags.get("job"):
            return tags["job"]
    return "(outside a request)"


class Incident:
    """An N+1 on one endpoint: totals since first seen and the unreported increment."""

    def __init__(self, subject: Dict[str, str], ts: float) -> None:
        self.subject = subject
        self.first_seen = ts
        self.last_seen = ts
        self.total = 0
        self.delta = 0
        self.delta_first: Optional[float] = None
        self.delta_last: Optional[float] = None
        self.evidence: List[Evidence] = []
        self.example_ids: Deque[str] = deque(maxlen=5)
        self.max_repeats = 0
        self.repeats_sum = 0
        self.ms_sum = 0.0
        self.locations: Dict[str, int] = {}
        self.association: Optional[Association] = None
        self.shape: Optional[SqlShape] = None
        self.source_sql = ""
        self.new_since_deploy: Optional[DeployMarker] = None
        self.bullet: Optional[Bullet] = None
        self.bullet_confirmed = False
        self.dirty = False

    def _touch(self, ts: float) -> None:
        self.total += 1
        self.delta += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        self.delta_first = ts if self.delta_first is None else min(self.delta_first, ts)
        self.delta_last = ts if self.delta_last is None else max(self.delta_last, ts)
        self.dirty = True

    def add_request(self, ts: float, request_id: str, g: Group, r: Optional[Request], max_examples: int) -> None:
        self._touch(ts)
        if request_id and len(self.example_ids) < max_examples and request_id not in self.example_ids:
            self.example_ids.append(request_id)
        self.max_repeats = max(self.max_repeats, g.count)
        self.repeats_sum += g.count
        self.ms_sum += g.total_ms
        for loc, n in g.locations.items():
            if loc in self.locations or len(self.locations) < MAX_LOCATIONS:
                self.locations[loc] = self.locations.get(loc, 0) + n
        if g.source_event is not None and not self.source_sql and g.source_shape is not None:
            self.source_sql = g.source_shape.normalized
        if not self.evidence:  # the first affected request of each increment, in log order
            lines = ([g.source_event] if g.source_event is not None else []) + list(g.examples)
            self.evidence = [Evidence.of(e) for e in lines]
            if r is not None:
                self.evidence.append(Evidence.of(r))

    def add_bullet(self, b: Bullet) -> None:
        self._touch(b.ts or self.last_seen)
        if len(self.evidence) < 2:
            self.evidence.append(Evidence.of(b))

    def take(self) -> Tuple[int, float, float, List[Evidence]]:
        """The increment to report, reset."""
        out = (self.delta, self.delta_first or self.first_seen, self.delta_last or self.last_seen, self.evidence[:MAX_EVIDENCE])
        self.delta, self.delta_first, self.delta_last, self.evidence, self.dirty = 0, None, None, [], False
        return out

    @property
    def top_location(self) -> str:
        return max(self.locations.items(), key=lambda kv: kv[1])[0] if self.locations else ""


class Spike:
    """Queries (or DB ms) per request of one endpoint far above its own baseline."""

    def __init__(self, endpoint: str, signal: str, start: float, before: float) -> None:
        self.endpoint = endpoint
        self.signal = signal  # "queries" | "db_time" | "steady"
        self.start = start
        self.last = start
        self.before = before
        self.after = before
        self.peak = before
        self.active = True
        self.deploy: Optional[DeployMarker] = None
        self.total = 0
        self.delta = 0
        self.delta_first: Optional[float] = None
        self.delta_last: Optional[float] = None
        self.evidence: List[Evidence] = []
        self.example_ids: Deque[str] = deque(maxlen=5)
        self.dirty = False
        self.global_slowdown = False

    def backfill(self, n: int, start: float) -> None:
        if n > 0:
            self.total += n
            self.delta += n
            self.delta_first = start if self.delta_first is None else min(self.delta_first, start)
            self.dirty = True

    def add(self, r: Request, value: float, median_now: float) -> None:
        ts = r.ts or self.last
        self.total += 1
        self.delta += 1
        self.last = max(self.last, ts)
        self.after = median_now
        self.peak = max(self.peak, value)
        self.delta_first = ts if self.delta_first is None else min(self.delta_first, ts)
        self.delta_last = ts if self.delta_last is None else max(self.delta_last, ts)
        if r.request_id and not r.request_id.startswith("pid") and len(self.example_ids) < 5:
            self.example_ids.append(r.request_id)
        if len(self.evidence) < 3:
            self.evidence.append(Evidence.of(r))
        self.dirty = True

    def take(self) -> Tuple[int, float, float, List[Evidence]]:
        out = (self.delta, self.delta_first or self.start, self.delta_last or self.last, list(self.evidence))
        self.delta, self.delta_first, self.delta_last, self.evidence, self.dirty = 0, None, None, [], False
        return out
