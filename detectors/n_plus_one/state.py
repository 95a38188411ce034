"""The small, bounded records the N+1 detector keeps.

``OpenRequest``  statements of one request until its ``Completed`` line arrives;
                 per fingerprint a ``Group`` (counts and a few example lines, not
                 every statement, so a 10,000-statement request stays small)
``Incident``     one endpoint's N+1: its ``EvidenceItem``s (repeated SQL shapes from debug
                 SQL or tagged Postgres statements, Bullet associations; each with its
                 source), running totals plus the increment not yet reported
``Spike``        an endpoint whose queries or DB time per request left its baseline
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from agent.events import Bullet, Evidence, Request, Sql
from detectors.shared.deploys import DeployMarker
from detectors.n_plus_one.association import Association, camelize
from detectors.shared.sqlfp import SqlShape, parse_binds

MAX_IDENTITIES = 64  # distinct binds remembered per group: enough to tell 5 from 1
MAX_LOCATIONS = 8
MAX_EVIDENCE = 6


class Group:
    """One fingerprint's statements inside one request."""

    __slots__ = ("shape", "first", "raw_binds", "_binds", "source_event", "source_shape", "count", "identities",
                 "unlogged", "total_ms", "examples", "locations")

    def __init__(self, shape: SqlShape, first: Sql, raw_binds: str,
                 source_event: Optional[Sql], source_shape: Optional[SqlShape]) -> None:
        self.shape = shape
        self.first = first
        self.raw_binds = raw_binds  # the first statement's binds, as logged: they name the association
        self._binds: Optional[List[Tuple[str, str]]] = None
        self.source_event = source_event if source_shape is None or source_shape.fingerprint != shape.fingerprint else None
        self.source_shape = source_shape if self.source_event is not None else None
        self.count = 0
        self.identities: set = set()
        self.unlogged = 0  # placeholders but no binds printed: assume distinct
        self.total_ms = 0.0
        self.examples: List[Sql] = []
        self.locations: Dict[str, int] = {}

    def add(self, e: Sql) -> None:
        # hot path (every repeatable statement): each field of ``e`` read once
        self.count += 1
        duration_ms, sql, binds = e.duration_ms, e.sql, e.binds
        if duration_ms:
            self.total_ms += duration_ms
        if binds or ("?" not in sql and "$" not in sql):
            identities = self.identities
            if len(identities) < MAX_IDENTITIES:
                identities.add((sql, binds))
        else:
            self.unlogged += 1
        examples = self.examples
        if len(examples) < 2:
            examples.append(e)
        loc = e.source_location
        if loc:
            locations = self.locations
            if loc in locations:
                locations[loc] += 1
            elif len(locations) < MAX_LOCATIONS:
                locations[loc] = 1

    @property
    def binds(self) -> Sequence[Tuple[str, str]]:
        """The first statement's binds, parsed when first read: only for a group that turns out repeated."""
        if self._binds is None:
            self._binds = parse_binds(self.raw_binds)
        return self._binds

    @property
    def distinct(self) -> int:
        return len(self.identities) + self.unlogged


#: a shape's first statement in a request, waiting for a second one before it becomes a ``Group``
#: (most shapes run once per request): ``Group``'s arguments (shape, first, raw_binds,
#: source_event, source_shape), the first statement not yet added
FirstStatement = Tuple[SqlShape, Sql, str, Optional[Sql], Optional[SqlShape]]


def group_of(first: FirstStatement) -> Group:
    """The ``Group`` a shape's first statement would have made, that statement added."""
    group = Group(*first)
    group.add(first[1])
    return group


class OpenRequest:
    __slots__ = ("key", "request_id", "first_ts", "last_ts", "groups", "queries", "cached", "db_ms", "tags",
                 "source_event", "source_shape", "source")

    def __init__(self, key: str, ts: Optional[float], source: str = "") -> None:
        self.key = key
        self.source = source  # the log file its statements come from
        self.request_id = "" if key.startswith("orphan:") else key
        self.first_ts = ts
        self.last_ts = ts
        self.groups: Dict[str, Union[Group, FirstStatement]] = {}  # by fingerprint; see FirstStatement
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


class EvidenceItem:
    """One piece of repetition evidence inside an endpoint's incident, with its source.

    ``source``: "debug_sql" (Rails debug statements), "postgres_log" (tagged Postgres
    statement log lines), "bullet" (Bullet warnings); a further source (statement
    statistics) adds items of its own kind. ``key`` is the fingerprint or the Bullet label.
    """

    __slots__ = ("source", "key", "table", "sql", "association", "bullet", "requests", "max_repeats",
                 "repeats_sum", "ms_sum", "source_sql")

    def __init__(self, source: str, key: str, table: str = "", sql: str = "",
                 association: Optional[Association] = None, bullet: Optional[Bullet] = None) -> None:
        self.source = source
        self.key = key
        self.table = table
        self.sql = sql
        self.association = association
        self.bullet = bullet
        self.requests = 0
        self.max_repeats = 0
        self.repeats_sum = 0
        self.ms_sum = 0.0
        self.source_sql = ""

    @property
    def label(self) -> str:
        if self.bullet is not None:
            return bullet_label(self.bullet)
        return self.association.label if self.association else (self.table or "query")

    def as_detail(self) -> Dict[str, object]:
        d: Dict[str, object] = {"source": self.source, "requests": self.requests}
        if self.bullet is not None:
            d["association"] = self.label
            return d
        d.update({"table": self.table, "sql": self.sql, "association": self.association.label if self.association else "",
                  "repeats_per_request_max": self.max_repeats,
                  "repeats_per_request_avg": round(self.repeats_sum / self.requests, 1) if self.requests else 0.0})
        return d


def bullet_label(b: Bullet) -> str:
    return f"{b.model} => [{', '.join(':' + a for a in b.associations)}]"


class Incident:
    """An N+1 on one endpoint (all its evidence items): totals and the unreported increment."""

    def __init__(self, endpoint: str, ts: float) -> None:
        self.subject = {"endpoint": endpoint}
        self.first_seen = ts
        self.last_seen = ts
        self.total = 0
        self.delta = 0
        self.delta_first: Optional[float] = None
        self.delta_last: Optional[float] = None
        self.evidence: List[Evidence] = []
        self.example_ids: Deque[str] = deque(maxlen=5)
        self.items: Dict[str, EvidenceItem] = {}  # source:key -> item, in the order first seen
        self.locations: Dict[str, int] = {}
        self.queries_sum = 0.0  # queries of the affected requests (debug SQL / tagged statements)
        self.queries_n = 0
        self.new_since_deploy: Optional[DeployMarker] = None
        self.new_endpoint = False  # no earlier request of this endpoint was seen
        self._bullet_request: Tuple[str, float, set] = ("", 0.0, set())  # request line, ts, labels seen
        self.dirty = False

    @property
    def endpoint(self) -> str:
        return self.subject["endpoint"]

    def sql_items(self) -> List[EvidenceItem]:
        return [i for i in self.items.values() if i.bullet is None]

    def bullet_items(self) -> List[EvidenceItem]:
        return [i for i in self.items.values() if i.bullet is not None]

    def primary(self) -> Optional[EvidenceItem]:
        """The SQL shape repeated most: it names the incident."""
        return max(self.sql_items(), key=lambda i: (i.max_repeats, i.requests), default=None)

    @property
    def queries_per_request(self) -> Optional[float]:
        return self.queries_sum / self.queries_n if self.queries_n else None

    def _touch(self, ts: float) -> None:
        self.total += 1
        self.delta += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        self.delta_first = ts if self.delta_first is None else min(self.delta_first, ts)
        self.delta_last = ts if self.delta_last is None else max(self.delta_last, ts)
        self.dirty = True

    def add_request(self, ts: float, request_id: str, source: str, groups: Sequence[Tuple[Group, Optional[Association]]],
                    queries: Optional[float], r: Optional[Request], max_examples: int) -> None:
        """One affected request with its repeated shapes: counted once, whatever the number of shapes."""
        self._touch(ts)
        if request_id and len(self.example_ids) < max_examples and request_id not in self.example_ids:
            self.example_ids.append(request_id)
        if queries is not None:
            self.queries_sum += queries
            self.queries_n += 1
        for g, assoc in groups:
            item = self.items.get(source + ":" + g.shape.fingerprint)
            if item is None:
                item = self.items[source + ":" + g.shape.fingerprint] = EvidenceItem(
                    source, g.shape.fingerprint, g.shape.table, g.shape.normalized, assoc)
            item.requests += 1
            item.max_repeats = max(item.max_repeats, g.count)
            item.repeats_sum += g.count
            item.ms_sum += g.total_ms
            if g.source_shape is not None and not item.source_sql:
                item.source_sql = g.source_shape.normalized
            for loc, n in g.locations.items():
                if loc in self.locations or len(self.locations) < MAX_LOCATIONS:
                    self.locations[loc] = self.locations.get(loc, 0) + n
        if not self.evidence:  # the first affected request of each increment, in log order
            g = max((g for g, _ in groups), key=lambda g: g.count)
            lines = ([g.source_event] if g.source_event is not None else []) + list(g.examples)
            self.evidence = [Evidence.of(e) for e in lines]
            if r is not None:
                self.evidence.append(Evidence.of(r))

    def add_bullet(self, b: Bullet) -> None:
        label = bullet_label(b)
        item = self.items.get("bullet:" + label)
        if item is None:
            item = self.items["bullet:" + label] = EvidenceItem("bullet", label, bullet=b)
        item.requests += 1
        ts = b.ts or self.last_seen
        # one request's Bullet blocks (one per association, logged together) are one affected
        # request: a label already seen, another request line or a pause starts the next one. A
        # request already counted from its SQL is not counted again (its Bullet block follows its SQL).
        last_request, last_ts, labels = self._bullet_request
        same_request = last_request == b.request and label not in labels and abs(ts - last_ts) < 1.0
        if same_request:
            labels.add(label)
        else:
            self._bullet_request = (b.request, ts, {label})
        if not same_request and not self.sql_items():
            self._touch(ts)
        else:
            self.last_seen = max(self.last_seen, ts)
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(Evidence.of(b))
            self.dirty = True

    def absorb(self, other: "Incident") -> None:
        """Evidence first filed under another name of this endpoint (Bullet's ``GET /path``)."""
        for key, item in other.items.items():
            mine = self.items.get(key)
            if mine is None:
                self.items[key] = item
            else:
                mine.requests += item.requests
        if not self.sql_items() or other.sql_items():
            self.total += other.total
            self.delta += other.delta
        for ts in (other.delta_first, other.delta_last):
            if ts is not None:
                self.delta_first = ts if self.delta_first is None else min(self.delta_first, ts)
                self.delta_last = ts if self.delta_last is None else max(self.delta_last, ts)
        self.first_seen, self.last_seen = min(self.first_seen, other.first_seen), max(self.last_seen, other.last_seen)
        self.evidence = (self.evidence + other.evidence)[:MAX_EVIDENCE]
        self.new_since_deploy = self.new_since_deploy or other.new_since_deploy
        self.dirty = self.dirty or other.dirty

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
