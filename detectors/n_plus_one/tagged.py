"""Tagged Postgres statement log lines as per-request statements for the N+1 detector.

With ``log_min_duration_statement = 0`` (or a low threshold) Postgres logs every
statement, and Rails QueryLogs / marginalia append the request's tags to it:

    … LOG:  duration: 0.210 ms  execute <unnamed>: SELECT "authors".* FROM "authors"
            WHERE "authors"."id" = $1 LIMIT $2 /*action='index',application='Blog',controller='posts'*/
    … LOG:  duration: 0.190 ms  statement: SELECT … /*application:Blog,controller:posts,action:index*/

The parser makes each a ``DbStatement`` with its ``tags``. Here it becomes an ``Sql``
and the key of the request it belongs to, so repetition is judged exactly as for
debug SQL: per request by the tags' ``request_id`` when QueryLogs carries one, else
per (log file, backend pid, controller, action), split by ``orphan_gap_s`` of silence
(one backend serves one request at a time; a pooled connection is re-used by the
next request, which the silence or a different controller/action separates).
Untagged statements name no endpoint and are left alone.
"""
from __future__ import annotations

from typing import Optional, Tuple

from agent.events import DbStatement, Sql
from detectors.n_plus_one.state import endpoint_from_tags

KEY_PREFIX = "pg:"
_PARAMETERS = "DETAIL:  parameters: "


def statement_as_sql(e: DbStatement) -> Optional[Tuple[str, Sql]]:
    """(request key, statement) of a tagged statement; None when the tags name no endpoint."""
    if not e.tags or e.ts is None or not e.sql:
        return None
    endpoint = endpoint_from_tags(e.tags)
    if endpoint.startswith("("):
        return None
    rid = e.tags.get("request_id", "")
    # execute lines carry their binds in a DETAIL line (kept in raw): distinct binds tell an
    # N+1 (one row per statement) from the same statement re-run
    binds = e.raw.split(_PARAMETERS, 1)[1].split("\n", 1)[0] if _PARAMETERS in e.raw else ""
    key = f"{KEY_PREFIX}{rid}" if rid else f"{KEY_PREFIX}{e.source}:{e.pid}:{endpoint}"
    return key, Sql(ts=e.ts, source=e.source, line=e.line, raw=e.raw, request_id=rid, name="",
                    binds=binds, duration_ms=e.duration_ms, sql=e.sql, pid=e.pid)
