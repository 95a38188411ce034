"""lograge: one line per request, key=value or JSON (roidrage/lograge 0.10–0.15).

    method=GET path=/posts format=html controller=PostsController action=index status=200 duration=58.33 view=40.43 db=15.26
    method=GET path=/slow … status=500 error='ActiveRecord::ConnectionTimeoutError: could not obtain …' duration=2003.1 …
    {"method":"GET","path":"/posts","format":"html","controller":"PostsController","action":"index","status":200,…}

Apps usually keep the Rails logger around it (Logger prefix, request-id tags, and the
FATAL exception block), so ``LogrageParser`` is the Rails parser with a sniff that
looks for lograge messages; the message parsing lives here and is shared.
Custom fields that apps add for N+1 signals (``queries_count``, ``cached_queries_count``,
``request_id``, ``time``) are picked up when present.
"""
from __future__ import annotations

import json
import re
from typing import Dict, Optional

from agent.events import Request
from agent.parsers.numbers import bounded_float, bounded_int, safe_iso

KV = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\S*)")


def looks_like(msg: str) -> bool:
    if msg.startswith(("method=", '{"method":')):
        return True
    # lograge JSON with custom fields first; semantic_logger's JSON (level_index) is not lograge
    return msg.startswith("{") and '"controller":' in msg and '"status":' in msg and '"level_index":' not in msg


def parse(msg: str) -> Optional[Dict[str, object]]:
    if msg.startswith("{"):
        try:
            data = json.loads(msg)
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            return None
        return data if isinstance(data, dict) else None
    fields: Dict[str, object] = {}
    for m in KV.finditer(msg):
        value = m.group(2)
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        fields[m.group(1)] = value
    return fields if "status" in fields or "controller" in fields else None


def to_request(fields: Dict[str, object], ts: Optional[float], source: str, line: int, raw: str, request_id: str, pid: str) -> Request:
    own_time = fields.get("time") or fields.get("timestamp") or fields.get("@timestamp")
    if isinstance(own_time, str):
        ts = safe_iso(own_time) or ts
    controller = str(fields.get("controller") or "")
    action = str(fields.get("action") or "")
    queries = bounded_int(fields.get("queries_count", fields.get("queries")))
    return Request(
        ts=ts, source=source, line=line, raw=raw,
        request_id=str(fields.get("request_id") or fields.get("uuid") or request_id),
        method=str(fields.get("method") or ""), path=str(fields.get("path") or ""),
        endpoint=f"{controller}#{action}" if controller and action else controller,
        status=bounded_int(fields.get("status")), duration_ms=bounded_float(fields.get("duration")), view_ms=bounded_float(fields.get("view")),
        db_ms=bounded_float(fields.get("db")), queries=queries, cached=bounded_int(fields.get("cached_queries_count", fields.get("cached"))),
        allocations=bounded_int(fields.get("allocations")), error=str(fields.get("error") or ""), pid=pid,
    )

