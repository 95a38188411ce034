"""rails_semantic_logger / semantic_logger JSON lines (``SemanticLogger::Formatters::Json``).

Matched shape (reidmorrison/semantic_logger ``lib/semantic_logger/formatters/raw.rb`` + ``json.rb``;
key order host, application, environment, timestamp, level, level_index, pid, thread, [file, line],
duration_ms, duration, tags, named_tags, name, message, payload, exception, metric):

    {"host":"web1","application":"Semantic Logger","environment":"production","timestamp":"2024-05-01T12:00:00.123456Z",
     "level":"info","level_index":2,"pid":4321,"thread":"puma srv tp 001","duration_ms":58.3,"duration":"58.3ms",
     "named_tags":{"request_id":"3f2c…"},"name":"PostsController","message":"Completed #index",
     "payload":{"controller":"PostsController","action":"index","format":"HTML","method":"GET","path":"/posts",
                "status":200,"view_runtime":40.43,"db_runtime":15.26,"allocations":25210,"status_message":"OK"}}
    {…,"level":"error",…,"name":"Rails","exception":{"name":"ActiveRecord::ConnectionTimeoutError","message":"…","stack_trace":[…]}}

``Completed #action`` records (rails_semantic_logger's ``process_action``) become a ``Request``;
records carrying ``exception`` become an ``Error`` (origin "rails"). Everything else is
skipped after a substring check, without decoding the JSON.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence

from agent.events import Error, Event, Request
from agent.parsers.base import NOTHING, Parser, share
from agent.parsers.numbers import bounded_float, bounded_int, safe_iso

REQUEST_ID = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{15,}$")
MAX_BACKTRACE = 20


class SemanticLoggerParser(Parser):
    """Requests and exceptions from semantic_logger's JSON formatter."""

    name = "semantic"
    description = "rails_semantic_logger JSON lines"

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        return share(lines, lambda line: line[:1] == "{" and '"level_index":' in line
                     and ('"timestamp":' in line or '"time":' in line))

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if line[:1] != "{":
            if line.strip():
                self.unparsed += 1
            return NOTHING
        if '"Completed #' not in line and '"exception":{' not in line:
            return NOTHING
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            self.unparsed += 1
            return NOTHING
        if not isinstance(record, dict):
            self.unparsed += 1
            return NOTHING
        ts = _time(record)
        if ts is None:
            ts = ts_hint if ts_hint is not None else self.last_ts
        if ts is not None:
            self.last_ts = ts
        payload = record.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        out: List[Event] = []
        message = str(record.get("message") or "")
        if message.startswith("Completed #"):
            out.append(self._request(record, payload, message, line, lineno, ts))
        exc = record.get("exception")
        if isinstance(exc, dict):
            out.append(self._error(record, payload, exc, line, lineno, ts))
        return out

    def _request(self, record: Dict[str, Any], payload: Dict[str, Any], message: str, line: str, lineno: int,
                 ts: Optional[float]) -> Request:
        controller = str(record.get("name") or payload.get("controller") or "")
        action = str(payload.get("action") or message[len("Completed #"):])
        return Request(
            ts=ts, source=self.source, line=lineno, raw=line, request_id=_request_id(record),
            method=str(payload.get("method") or ""), path=str(payload.get("path") or ""),
            endpoint=f"{controller}#{action}" if controller else "", status=bounded_int(payload.get("status")),
            duration_ms=bounded_float(record.get("duration_ms")), view_ms=bounded_float(payload.get("view_runtime")),
            db_ms=bounded_float(payload.get("db_runtime")), queries=bounded_int(payload.get("queries_count")),
            cached=bounded_int(payload.get("cached_queries_count")), allocations=bounded_int(payload.get("allocations")),
            pid=str(record.get("pid") or ""),
        )

    def _error(self, record: Dict[str, Any], payload: Dict[str, Any], exc: Dict[str, Any], line: str, lineno: int,
               ts: Optional[float]) -> Error:
        name = str(record.get("name") or "")
        action = payload.get("action")
        endpoint = f"{name}#{action}" if action and name.endswith("Controller") else ""
        stack = exc.get("stack_trace")
        frames = tuple(str(f) for f in stack[:MAX_BACKTRACE]) if isinstance(stack, list) else ()
        return Error(
            ts=ts, source=self.source, line=lineno, raw=line, origin="rails", error_class=str(exc.get("name") or ""),
            message=str(exc.get("message") or ""), backtrace=frames, request_id=_request_id(record), endpoint=endpoint,
            level=str(record.get("level") or "").upper(), pid=str(record.get("pid") or ""),
        )


def _time(record: Dict[str, Any]) -> Optional[float]:
    value = record.get("timestamp", record.get("time"))
    if isinstance(value, str):
        return safe_iso(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = bounded_float(value)
        if seconds is None:
            return None
        return seconds / 1000.0 if seconds > 1e11 else seconds  # time_format :ms or :seconds
    return None


def _request_id(record: Dict[str, Any]) -> str:
    named = record.get("named_tags")
    if isinstance(named, dict):
        for key in ("request_id", "request_uuid", "uuid", "request"):
            if named.get(key):
                return str(named[key])
    tags = record.get("tags")
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str) and REQUEST_ID.match(tag):
                return tag
    return ""
