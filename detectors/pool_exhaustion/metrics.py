"""Pool saturation from metric samples: "saturated for N samples in a row", per series.

Metric names (``Metric`` events from pollers; one sample of a group shares one ``ts``):

    puma.backlog, puma.pool_capacity             labels: worker/pid (Puma /stats, per worker)
        saturated: backlog > 0 and pool_capacity == 0
    db.pool.size, db.pool.busy, db.pool.dead, db.pool.waiting   labels: pid (pool.stat)
        saturated: busy + dead >= size and waiting > 0
    pg.connections, pg.max_connections           (pg_stat_activity count, SHOW max_connections)
        saturated: connections >= max_connections - reserved slots

Not a signal: ``db.connections`` per process at the pool size. Rails keeps idle connections
open, so a process that once used its whole pool shows it for hours (the reference app does
right after a pool incident): alone it would be a false incident. ``db.pool.waiting`` says it.

A group is judged when its last member arrives (all members within ``SAME_SAMPLE_S``),
once per sample time, so the order a poller emits them in does not matter.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

from agent.events import Metric

Labels = Tuple[Tuple[str, str], ...]
SAME_SAMPLE_S = 1.0
MAX_SERIES = 2000  # a poller with unbounded labels must not grow us

#: group name -> (members, incident key)
GROUPS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, str, str]]] = {
    "puma": (("puma.backlog", "puma.pool_capacity"), ("puma", "metric", "puma.pool_capacity")),
    "db.pool": (("db.pool.size", "db.pool.busy", "db.pool.dead", "db.pool.waiting"), ("database", "metric", "db.pool")),
    "pg.connections": (("pg.connections",), ("database_server", "metric", "pg.connections")),
}
GROUP_OF = {name: group for group, (members, _) in GROUPS.items() for name in members}


class Saturated(NamedTuple):
    key: Tuple[str, str, str]  # the incident key: (pool, "metric", metric name)
    labels: Labels
    value: float  # the number worth reporting (backlog, waiting threads, connections)


class PoolMetrics:
    def __init__(self, sustained_samples: int, reserved_slots: int) -> None:
        self.sustained = sustained_samples
        self.reserved = reserved_slots
        self.pg_max_connections: Optional[float] = None
        self._last: Dict[Tuple[str, Labels], Tuple[float, float]] = {}
        self._runs: Dict[Tuple[str, Labels], int] = {}
        self._judged: Dict[Tuple[str, Labels], float] = {}

    def observe(self, m: Metric) -> Optional[Saturated]:
        """Record a sample; a ``Saturated`` when its series has been saturated long enough."""
        if m.name == "pg.max_connections":
            self.pg_max_connections = m.value
            return None
        group = GROUP_OF.get(m.name)
        if group is None:
            return None
        labels: Labels = tuple(sorted(m.labels.items()))
        ts = m.ts or 0.0
        if len(self._last) > MAX_SERIES:
            self._last.clear()
            self._runs.clear()
            self._judged.clear()
        self._last[(m.name, labels)] = (ts, m.value)
        members, key = GROUPS[group]
        values = [self._fresh(name, labels, ts) for name in members]
        if any(v is None for v in values) or self._judged.get((group, labels)) == ts:
            return None
        self._judged[(group, labels)] = ts
        saturated, value = self._judge(group, values)  # type: ignore[arg-type]
        run = self._runs.get((group, labels), 0) + 1 if saturated else 0
        self._runs[(group, labels)] = run
        return Saturated(key, labels, value) if run >= self.sustained else None

    def _fresh(self, name: str, labels: Labels, ts: float) -> Optional[float]:
        got = self._last.get((name, labels))
        return got[1] if got is not None and abs(got[0] - ts) <= SAME_SAMPLE_S else None

    def _judge(self, group: str, v: List[float]) -> Tuple[bool, float]:
        if group == "puma":
            backlog, capacity = v
            return backlog > 0 and capacity == 0, backlog
        if group == "db.pool":
            size, busy, dead, waiting = v
            return busy + dead >= size and waiting > 0, waiting
        connections = v[0]
        limit = self.pg_max_connections
        return limit is not None and connections >= limit - self.reserved, connections
