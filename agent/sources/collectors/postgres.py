"""The database server's view: ``pg_stat_activity`` and ``pg_stat_statements`` (psycopg).

Metrics:

    pg.connections                     client backends now (all databases)
    pg.connections_by_state{state}     … by state: active, idle, "idle in transaction", …
    pg.max_connections                 SHOW max_connections
    pg.reserved_connections            superuser_reserved_connections (+ reserved_connections, PG 16+)
    pg.statement_calls{queryid,query}  calls since the previous sample, for the ``top_n``
                                       statements with the most new calls (first 200
                                       characters of the normalised query)
    pg.statement_time_ms{queryid,query}  execution time spent in those calls

A statement whose calls jump while requests stay flat is an N+1 that needs no SQL in
the logs. ``pg_stat_statements`` must be installed in the database the collector
connects to *and* preloaded (``shared_preload_libraries``); when it is not, the
statement metrics are skipped with one log line and the rest keeps working.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from agent.clock import Clock
from agent.events import Metric
from agent.sources.collectors.sample import metric

log = logging.getLogger("railwatch.collectors")

SOURCE = "poll:postgres"
MAX_TRACKED = 2000  # statements compared between samples (pg_stat_statements.max is 5000 by default)

ACTIVITY = (
    "SELECT COALESCE(state, 'unknown'), count(*) FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' GROUP BY 1"
)
SETTINGS = (
    "SELECT name, setting::int FROM pg_settings"
    " WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
)
HAS_STATEMENTS = "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
STATEMENTS = (
    "SELECT queryid, calls, {time_column}, left(query, 200) FROM pg_stat_statements"
    " WHERE queryid IS NOT NULL ORDER BY calls DESC LIMIT %s" % MAX_TRACKED
)


class PostgresCollector:
    name = "postgres"

    def __init__(self, connect: Callable[[], Any], clock: Clock, statements: bool = True, top_n: int = 20) -> None:
        self.connect = connect  # returns a psycopg connection in autocommit mode
        self.clock = clock
        self.want_statements = statements
        self.top_n = top_n
        self._conn: Any = None
        self._statements: Optional[str] = None  # the query to use, once known to work; "" = unavailable
        self._previous: Dict[str, Tuple[float, float]] = {}  # queryid -> (calls, total time ms)

    def collect(self) -> List[Metric]:
        if self._conn is None:
            self._conn = self.connect()
        try:
            return self._collect(self._conn)
        except Exception:
            self._drop()  # reconnect next time: the server may have restarted
            raise

    def _collect(self, conn: Any) -> List[Metric]:
        now = self.clock.now()
        out: List[Metric] = []
        with conn.cursor() as cur:
            cur.execute(ACTIVITY)
            by_state = {str(state): int(n) for state, n in cur.fetchall()}
            cur.execute(SETTINGS)
            settings = {str(name): int(v) for name, v in cur.fetchall()}
        out.append(metric(SOURCE, "pg.connections", sum(by_state.values()), now))
        for state, n in sorted(by_state.items()):
            out.append(metric(SOURCE, "pg.connections_by_state", n, now, {"state": state}))
        if "max_connections" in settings:
            out.append(metric(SOURCE, "pg.max_connections", settings["max_connections"], now))
            reserved = settings.get("superuser_reserved_connections", 0) + settings.get("reserved_connections", 0)
            out.append(metric(SOURCE, "pg.reserved_connections", reserved, now))
        if self.want_statements:
            out.extend(self._statement_deltas(conn, now))
        return out

    def _statement_deltas(self, conn: Any, now: float) -> List[Metric]:
        if self._statements is None:
            self._statements = self._find_statements_query(conn)
        if not self._statements:
            return []
        try:
            with conn.cursor() as cur:
                cur.execute(self._statements)
                rows = cur.fetchall()
        except Exception as exc:  # noqa: BLE001 - e.g. "must be loaded via shared_preload_libraries"
            log.warning("pg_stat_statements unavailable (%s); statement metrics skipped", str(exc).splitlines()[0][:200])
            self._statements = ""
            return []
        return self.deltas(rows, now)

    def deltas(self, rows: List[Tuple[Any, Any, Any, Any]], now: float) -> List[Metric]:
        """Metrics for the statements whose calls grew most since the previous rows."""
        current: Dict[str, Tuple[float, float]] = {}
        queries: Dict[str, str] = {}
        grown: List[Tuple[float, float, str]] = []
        first = not self._previous
        # a statement absent from a complete previous sample is new since then: all its calls are
        # new (an N+1 that a deploy or a new endpoint brings is exactly such a statement); when the
        # previous sample was cut at MAX_TRACKED, absence proves nothing and it waits a sample
        complete = 0 < len(self._previous) < MAX_TRACKED
        for queryid, calls, total_ms, query in rows:
            qid = str(queryid)
            current[qid] = (float(calls), float(total_ms or 0.0))
            queries[qid] = " ".join(str(query or "").split())
            before = self._previous.get(qid)
            if first or (before is None and not complete):
                continue
            before = before or (0.0, 0.0)
            d_calls, d_time = current[qid][0] - before[0], current[qid][1] - before[1]
            if d_calls > 0:  # a reset (pg_stat_statements_reset) shows as negative: skip it
                grown.append((d_calls, d_time, qid))
        self._previous = current
        grown.sort(key=lambda g: (-g[0], g[2]))
        out: List[Metric] = []
        for d_calls, d_time, qid in grown[: self.top_n]:
            labels = {"queryid": qid, "query": queries[qid]}
            out.append(metric(SOURCE, "pg.statement_calls", d_calls, now, labels))
            out.append(metric(SOURCE, "pg.statement_time_ms", max(d_time, 0.0), now, dict(labels)))
        return out

    def _find_statements_query(self, conn: Any) -> str:
        with conn.cursor() as cur:
            cur.execute(HAS_STATEMENTS)
            if cur.fetchone() is None:
                log.info("pg_stat_statements is not installed in this database; statement metrics skipped")
                return ""
            cur.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = 'pg_stat_statements' AND column_name = 'total_exec_time'"
            )
            column = "total_exec_time" if cur.fetchone() is not None else "total_time"  # renamed in PG 13
        return STATEMENTS.format(time_column=column)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        self._drop()
