"""PgBouncer's log: pooler saturation errors and the periodic ``stats:`` line.

Matched shapes (pgbouncer 1.x; ``src/objects.c``, ``src/janitor.c``, ``src/stats.c``, ``src/proto.c``):

    2023-12-19 03:06:37.241 CET [10384] LOG stats: 4874 xacts/s, 7318 queries/s, 0 client parses/s, 0 server parses/s, 0 binds/s, in 2138226 B/s, out 17457184 B/s, xact 1392 us, query 820 us, wait 45079 us
    2017-05-08 13:28:29.081 1234 LOG Stats: 12 req/s, in 1234 b/s, out 5678 b/s, query 345 us          (before 1.8)
    … LOG C-0x55d…: app/rails@10.0.0.7:51234 closing because: no more connections allowed (max_client_conn) (age=0s)
    … WARNING C-0x55d…: app/rails@10.0.0.7:51234 pooler error: no more connections allowed (max_client_conn)
    … LOG C-0x55d…: app/rails@10.0.0.7:51234 closing because: query_wait_timeout (age=120s)
    LOG C-0x55d…: app/rails@… login attempt: db=app user=rails tls=no                                     (syslog, envelope stripped)

``stats:`` becomes one ``Metric`` per figure (``pgbouncer.xacts_per_s``, ``pgbouncer.avg_wait_us`` …).
A ``closing because:`` with a pool-limit, timeout or server-failure reason, a ``pooler error:``
and any WARNING/ERROR/FATAL line become an ``Error`` (origin "pgbouncer"). The ``pooler error``
that pgbouncer writes right after a client's ``closing because`` for the same reason is the
same event and is not counted twice. Logins and ordinary closes are skipped after a substring check.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from agent.events import Error, Event, Metric
from agent.parsers.base import NOTHING, Parser, share
from agent.parsers.numbers import bounded_float
from agent.parsers.postgres_fields import local_ts

#: a stats line has about ten comma-separated figures; more is not PgBouncer (and one line must not fan out into thousands of metrics)
MAX_STATS_ITEMS = 32

LINE = re.compile(
    r"(?:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z]+| ?[+-]\d\d:?\d\d)?) \[?(\d+)\]? )?"
    r"(LOG|WARNING|ERROR|FATAL|NOTICE|DEBUG|NOISE) (.*)"
)
SOCKET = re.compile(r"([CS])-(0x[0-9a-f]+): (\S*)/(\S*)@(\S+) ")
REASON_AGE = re.compile(r" \(age=\d+s?\)$")
TRAILING_NAME = re.compile(r"\((\w+)\)$")
PGBOUNCER_BODY = ("C-0x", "S-0x", "stats: ", "Stats: ", "got SIGHUP", "got SIGINT", "got SIGTERM", "process up: PgBouncer",
                  "kernel file descriptor limit", "listening on ", "pooler error", "Pooler Error")

# "closing because:" reasons that mean clients could not get (or keep) a connection
ERROR_REASONS: Tuple[str, ...] = (
    "no more connections allowed", "client connections exceeded", "query_wait_timeout", "query_timeout",
    "query timeout", "client_login_timeout", "idle transaction timeout", "idle_transaction_timeout",
    "transaction timeout", "server login has been failing", "pgbouncer cannot connect to server",
    "server conn crashed", "connect failed", "connect timeout", "server_connect_timeout", "too many servers",
    "login failed", "password authentication failed", "no such database", "no such user",
    "bouncer config error", "server shutting down",
)
METRIC_RATE = re.compile(r"(\d+) ([a-z ]+)/s$")
METRIC_BYTES = re.compile(r"(in|out) (\d+) [Bb]/s$")
METRIC_AVG = re.compile(r"([a-z]+)(?: time)? (\d+) us$")
MAX_MESSAGE_CHARS = 1000


def _is_pgbouncer_line(line: str) -> bool:
    m = LINE.match(line)
    if m is None:
        return False
    bracketed_pid = m[1] is not None and line[len(m[1]) + 1 : len(m[1]) + 2] == "["
    return bracketed_pid or any(b in m[4][:48] for b in PGBOUNCER_BODY)


class PgBouncerParser(Parser):
    """Pool-limit errors and ``stats:`` telemetry from a PgBouncer log."""

    name = "pgbouncer"
    description = "PgBouncer log (stats lines, pooler errors, client/server closes)"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._last_close: Tuple[str, str] = ("", "")  # (client id, reason) of the last error close

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        return share(lines, _is_pgbouncer_line)

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if "closing because: " in line:
            if "client close request" in line or "server lifetime over" in line or "close_needed" in line:
                return NOTHING  # the ordinary churn: tens of thousands per hour
            return self._closing(line, lineno, ts_hint)
        if "tats: " in line:
            return self._stats(line, lineno, ts_hint)
        if "ooler " not in line and (" LOG " in line[:48] or line.startswith("LOG ")):
            return NOTHING
        m = LINE.match(line)
        if m is None:
            if line.strip():
                self.unparsed += 1
            return NOTHING
        level = m[3]
        if level in ("WARNING", "ERROR", "FATAL") or "ooler " in m[4]:
            return self._error(m, line, lineno, ts_hint)
        return NOTHING

    # -- the three kinds of interesting line -------------------------------------------

    def _closing(self, line: str, lineno: int, hint: Optional[float]) -> List[Event]:
        m = LINE.match(line)
        if m is None:
            self.unparsed += 1
            return NOTHING
        body = m[4]
        reason = body[body.index("closing because: ") + 17:]
        reason = REASON_AGE.sub("", reason)
        if not any(r in reason for r in ERROR_REASONS):
            return NOTHING
        sock = SOCKET.match(body)
        if sock is not None and sock[1] == "C":
            self._last_close = (sock[2], reason)
        return [self._event(m, line, lineno, hint, reason)]

    def _error(self, m: "re.Match[str]", line: str, lineno: int, hint: Optional[float]) -> List[Event]:
        body = m[4]
        sock = SOCKET.match(body)
        message = body[sock.end():] if sock is not None else body
        for marker in ("pooler error: ", "Pooler Error: "):
            if message.startswith(marker):
                message = message[len(marker):]
                if sock is not None and self._last_close == (sock[2], message):
                    return NOTHING  # the error pgbouncer sent while closing that client: already counted
                break
        return [self._event(m, line, lineno, hint, message)]

    def _event(self, m: "re.Match[str]", line: str, lineno: int, hint: Optional[float], message: str) -> Error:
        # a stable, low-cardinality key: "… (max_client_conn)" -> "max_client_conn",
        # "login failed: FATAL …" -> "login_failed", "server conn crashed?" -> "server_conn_crashed"
        name = TRAILING_NAME.search(message)
        error_class = name[1] if name else message.split(":", 1)[0].rstrip("?").strip().replace(" ", "_")[:60]
        return Error(
            ts=self._ts(m, hint), source=self.source, line=lineno, raw=line, origin="pgbouncer",
            error_class=error_class, message=message[:MAX_MESSAGE_CHARS], level=m[3], pid=m[2] or "",
        )

    def _stats(self, line: str, lineno: int, hint: Optional[float]) -> List[Event]:
        m = LINE.match(line)
        if m is None:
            self.unparsed += 1
            return NOTHING
        body = m[4]
        at = body.find("tats: ")
        if at != 1:
            return NOTHING
        ts = self._ts(m, hint)
        labels = {"pid": m[2]} if m[2] else {}
        out: List[Event] = []
        for item in body[at + 6:].split(",", MAX_STATS_ITEMS)[:MAX_STATS_ITEMS]:
            item = item.strip()
            name = value = None
            r = METRIC_RATE.match(item)
            if r is not None:
                name, value = r[2].replace(" ", "_") + "_per_s", r[1]
            else:
                b = METRIC_BYTES.match(item)
                if b is not None:
                    name, value = b[1] + "_bytes_per_s", b[2]
                else:
                    a = METRIC_AVG.match(item)
                    if a is not None:
                        name, value = "avg_" + a[1] + "_us", a[2]
            number = bounded_float(value)
            if name is not None and number is not None:
                out.append(Metric(ts=ts, source=self.source, line=lineno, raw=line, name="pgbouncer." + name,
                                  labels=dict(labels), value=number))
        if not out:
            self.unparsed += 1
        return out

    def _ts(self, m: "re.Match[str]", hint: Optional[float]) -> Optional[float]:
        ts = local_ts(m[1]) if m[1] else None
        if ts is None:
            ts = hint if hint is not None else self.last_ts
        if ts is not None:
            self.last_ts = ts
        return ts
