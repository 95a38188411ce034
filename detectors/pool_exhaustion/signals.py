"""Which pool ran dry, read from one error's class and message (every wording Rails 3 to 8,
Postgres, MySQL, PgBouncer and connection_pool write); see detector.py for the list."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["Signal", "classify"]

CHECKOUT = re.compile(
    r"could not obtain a (?:database )?connection (?:from the pool )?within (?P<timeout>[\d.]+) seconds"
    r"(?:\s*\(waited\s+(?P<waited>[\d.]+)\s+seconds\))?(?:.*?max pool size is currently (?P<size>\d+))?",
    re.S,
)
EXCLUSIVE = re.compile(r"could not obtain ownership of all database connections in (?P<timeout>[\d.]+) seconds")
PG_TOO_MANY = re.compile(r"sorry, too many clients already|remaining connection slots are reserved")
MYSQL_TOO_MANY = re.compile(r"\bToo many connections\b|already has more than 'max_user_connections'")
DB_CLASS = re.compile(r"^$|Mysql2|Trilogy|ActiveRecord::|PG::|Sequel::")
PGBOUNCER = re.compile(r"no more connections allowed \((?P<limit>\w+)\)|client connections exceeded \((?P<limit2>\w+)\)|(?P<qwt>query_wait_timeout)")
REDIS_WAIT = re.compile(r"Waited (?P<waited>[\d.]+) sec(?:, (?P<avail>\d+)/(?P<size>\d+) available)?")


@dataclass(frozen=True)
class Signal:
    """What one error line says about which pool ran dry."""

    pool: str
    error_class: str  # the subject's error_class: stable across wordings of one problem
    timeout_s: Optional[float] = None
    waited_s: Optional[float] = None
    pool_size: Optional[int] = None
    wording: str = ""


def classify(error_class: str, message: str) -> Optional[Signal]:
    """The pool-exhaustion signal in an error, or None (most errors are something else)."""
    text = message or ""
    if "ExclusiveConnectionTimeoutError" in error_class or "could not obtain ownership of all" in text:
        m = EXCLUSIVE.search(text)
        return Signal("database", "ActiveRecord::ExclusiveConnectionTimeoutError", _f(m, "timeout"), wording="exclusive")
    m = CHECKOUT.search(text)
    if m is not None or error_class == "ActiveRecord::ConnectionTimeoutError":
        size = int(m.group("size")) if m is not None and m.group("size") else None
        wording = "rails5+" if "from the pool" in text else "rails3-4" if m is not None else "class only"
        return Signal("database", "ActiveRecord::ConnectionTimeoutError", _f(m, "timeout"), _f(m, "waited"), size, wording)
    if PG_TOO_MANY.search(text):
        wording = "too many clients" if "too many clients" in text else "reserved slots"
        return Signal("database_server", "too_many_connections", wording=f"postgres: {wording}")
    if MYSQL_TOO_MANY.search(text) and DB_CLASS.search(error_class):
        return Signal("database_server", "too_many_connections", wording="mysql: too many connections")
    m = PGBOUNCER.search(text)
    if m is not None:
        limit = m.group("limit") or m.group("limit2") or "query_wait_timeout"
        return Signal("pgbouncer", limit, wording=f"pgbouncer: {limit}")
    m = REDIS_WAIT.search(text)
    if error_class.endswith("ConnectionPool::TimeoutError") or (m is not None and m.group("avail") is not None):
        size = int(m.group("size")) if m is not None and m.group("size") else None
        return Signal("redis", "ConnectionPool::TimeoutError", None, _f(m, "waited"), size, "connection_pool")
    return None


def _f(m: "Optional[re.Match[str]]", group: str) -> Optional[float]:
    value = m.group(group) if m is not None else None
    return float(value) if value else None
