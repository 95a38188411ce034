"""PostgreSQL server logs: errors that matter to a Rails app, and slow statements.

Matched shapes (any ``log_line_prefix``; the severity word is found, not assumed):

    2017-09-06 08:41:41 UTC [36]: [121-1] user=postgres,db=app,app=x,client=1.2.3.4 LOG:  duration: 2.280 ms  statement: END;
    2020-03-11 20:40:50 CET:10.0.0.5(50906):gilles@pgbench:[12795]:FATAL:  sorry, too many clients already     (RDS)
    2022-02-17 14:45:44.989 UTC [691] [queryid=78311] postgres@db ERROR:  canceling statement due to statement timeout
    Feb 11 13:15:39 host postgres[10808]: [1-1] db=,user= LOG:  ...                                       (syslog, raw)
    [1-1] db=,user= LOG:  ...                                                                              (syslog, envelope stripped)
    2019-03-14T00:23:00+00:00 app[postgres.4849]: [GREEN] [19-1]  sql_error_code = 40P01 ERROR:  deadlock detected  (Heroku)
    2021-01-22 10:03:22.785 CET,"u","db",1486,...,ERROR,53300,"sorry, too many clients already",...       (csvlog)
    {"textPayload":"[24667]: [3-1] db=x,user=y FATAL:  ...","timestamp":"..."}                          (Cloud SQL)
    {"logger":"postgres","record":{"error_severity":"ERROR","sql_state_code":"42703",...}}              (CloudNativePG)

ERROR/FATAL/PANIC become one ``Error`` with the DETAIL/HINT/CONTEXT/STATEMENT lines that
follow it from the same backend; ``duration: N ms  statement:|execute …:`` becomes a
``DbStatement`` (multi-line SQL joined) with its QueryLogs/marginalia tags. Both are
held until the next line shows the record is complete. Every other message
(connections, checkpoints, autovacuum, lock waits) is skipped after a substring check.
"""
from __future__ import annotations

import csv
import json
import os
import re
from datetime import datetime, timezone
from typing import List, Optional, Sequence, Tuple, Union

from agent.events import DbStatement, Error, Event
from agent.parsers.base import NOTHING, Parser
from agent.parsers.numbers import bounded_float
from agent.parsers.postgres_fields import (
    CONTINUATIONS,
    ERROR_LEVELS,
    SEQ,
    infer_sqlstate,
    local_ts,
    locate_severity,
    pg_error_class,
    pid_of,
    prefix_fields,
    split_verbose_code,
    sql_tags,
)
from agent.timeparse import parse_syslog

DURATION = re.compile(r"duration: (\d+(?:\.\d+)?) ms  (?:statement|execute [^:]*): ")
SYSLOG_HEAD = re.compile(r"(?:<\d+>)?[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \S+ ")
CSV_HEAD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z+\-0-9:]+)?,")
# a prefix that could be PostgreSQL's: a time, a [pid] / [line-seq], a syslog tag or Heroku's app[postgres.N]
PREFIX_SHAPE = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\[\d+(?:-\d+)?\]|postgres\[\d+\]|app\[postgres\.\d+\]")
NOT_PG_PREFIX = re.compile(r" -- |TID-|pid=\d|[A-Z]\w*::[A-Z]")  # Ruby Logger, Sidekiq, exception classes
MAX_RECORD_LINES = 200
MAX_SQL_CHARS = 20000

_Held = Union[DbStatement, Error]


class PostgresParser(Parser):
    """Errors and timed statements from a PostgreSQL server log (stderr, syslog, csvlog, JSON)."""

    name = "postgres"
    description = "PostgreSQL server log (stderr/syslog/csvlog/Cloud SQL/CloudNativePG/Heroku)"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._held: Optional[_Held] = None
        self._held_pid = ""
        self._held_lines: List[str] = []
        self._in_sql = False  # continuation lines still extend the statement's SQL
        self._csv: Optional[bool] = None
        self._csv_buf: List[str] = []
        self._csv_line = 0
        self._year: Optional[int] = None

    # -- sniffing -------------------------------------------------------------------

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        seen = hits = 0
        for line in lines:
            if not line.strip() or line[0] == "\t":
                continue  # continuation lines say nothing either way
            seen += 1
            if _looks_like_postgres(line):
                hits += 1
        return hits / seen if seen else 0.0

    # -- feeding --------------------------------------------------------------------

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        first = line[:1]
        if first == "{":
            return self._feed_json(line, lineno)
        if self._csv is None and first.isdigit():
            self._csv = CSV_HEAD.match(line) is not None
        if self._csv:
            return self._feed_csv(line, lineno)
        return self._feed_text(line, line, lineno, ts_hint)

    def finish(self) -> List[Event]:
        out: List[Event] = []
        if self._csv_buf:
            out.extend(self._csv_record("\n".join(self._csv_buf), self._csv_line))
            self._csv_buf = []
        held = self._release()
        if held is not None:
            out.append(held)
        return out

    # -- stderr / syslog / Heroku text ------------------------------------------------

    def _feed_text(self, line: str, raw: str, lineno: int, ts: Optional[float]) -> List[Event]:
        first = line[:1]
        if first == "\t" or first == " " or not line:
            # stderr continuation (PostgreSQL indents a message's extra lines with a tab)
            if self._held is not None:
                self._extend(line[1:] if first == "\t" else line, raw)
            return NOTHING
        if self._held is None:
            # fast path: the great majority of lines is neither an error nor a timed statement
            if "duration: " not in line and "ERROR:  " not in line and "FATAL:  " not in line and "PANIC:  " not in line:
                if ":  " not in line and SEQ.search(line) is None:
                    self.unparsed += 1
                return NOTHING
            self._start(line, raw, lineno, ts, locate_severity(line))
            return NOTHING
        located = locate_severity(line)
        at, word = located[0], located[1]
        if at < 0:
            m = SEQ.search(line)
            if m is not None and m[2] != "1":  # syslog splits long messages into [N-2], [N-3] …
                pid = pid_of(line[: m.start()])
                if not pid or pid == self._held_pid:
                    self._extend(line[m.end():].replace("#011", "\t").lstrip(" ").lstrip("\t"), raw)
                    return NOTHING
            out = self._flush()
            if m is None:
                self.unparsed += 1
            return out
        if word in CONTINUATIONS and pid_of(line[:at]) == self._held_pid:
            self._in_sql = False
            self._attach(raw)
            return NOTHING
        out = self._flush()
        self._start(line, raw, lineno, ts, located)
        return out

    def _start(self, line: str, raw: str, lineno: int, ts: Optional[float], located: Tuple[int, str, int]) -> None:
        """Hold the record this line opens, if it is one we keep."""
        at, word, body = located
        if at < 0:
            self.unparsed += 1
            return
        text = line[body:]
        if word == "LOG":
            if text[:1] != "d":
                text = split_verbose_code(text)[1]  # "LOG:  00000: duration: …"
            m = DURATION.match(text)
            if m is None:
                return
            prefix = line[:at]
            pid, user, database, _ = prefix_fields(prefix)
            self._hold(
                DbStatement(
                    ts=self._prefix_ts(prefix, ts), source=self.source, line=lineno, raw=raw,
                    duration_ms=bounded_float(m[1]), sql=text[m.end():].lstrip(), user=user, database=database, pid=pid,
                ),
                pid, raw, in_sql=True,
            )
            return
        if word not in ERROR_LEVELS:
            return
        prefix = line[:at]
        pid, user, database, code = prefix_fields(prefix)
        verbose_code, message = split_verbose_code(text)
        code = verbose_code or code
        if not code or code == "00000":
            code = infer_sqlstate(message)
        self._hold(
            Error(
                ts=self._prefix_ts(prefix, ts), source=self.source, line=lineno, raw=raw, origin="postgres",
                error_class=pg_error_class(code), message=message, code=code, level=word, pid=pid,
            ),
            pid, raw, in_sql=False,
        )

    def _prefix_ts(self, prefix: str, hint: Optional[float]) -> Optional[float]:
        first = prefix[:1]
        ts: Optional[float] = None
        if first.isdigit():
            ts = local_ts(prefix)
        elif first.isupper() or first == "<":
            m = SYSLOG_HEAD.match(prefix)
            if m is not None:
                ts = parse_syslog(prefix.lstrip("<0123456789>"), self._syslog_year())
        if ts is None:
            ts = hint if hint is not None else self.last_ts
        if ts is not None:
            self.last_ts = ts
        return ts

    def _syslog_year(self) -> int:
        # syslog has no year: take the file's modification year, as the scan does for envelopes
        if self._year is None:
            try:
                self._year = datetime.fromtimestamp(os.path.getmtime(self.source), tz=timezone.utc).year
            except (OSError, ValueError):
                self._year = datetime.now(timezone.utc).year
        return self._year

    # -- the held record --------------------------------------------------------------

    def _hold(self, event: _Held, pid: str, raw: str, in_sql: bool) -> None:
        self._held = event
        self._held_pid = pid
        self._held_lines = [raw]
        self._in_sql = in_sql

    def _extend(self, text: str, raw: Optional[str]) -> None:
        """A continuation line: more SQL for a statement, more context for an error."""
        held = self._held
        if self._in_sql and isinstance(held, DbStatement) and len(held.sql) < MAX_SQL_CHARS:
            held.sql += "\n" + text
        if raw is not None:
            self._attach(raw)

    def _attach(self, raw: str) -> None:
        if len(self._held_lines) < MAX_RECORD_LINES:
            self._held_lines.append(raw)

    def _release(self) -> Optional[_Held]:
        held = self._held
        if held is None:
            return None
        self._held = None
        if len(self._held_lines) > 1:
            held.raw = "\n".join(self._held_lines)
        if isinstance(held, DbStatement):
            held.sql = held.sql.rstrip()
            held.tags = sql_tags(held.sql)
        return held

    def _flush(self) -> List[Event]:
        held = self._release()
        return [held] if held is not None else NOTHING

    # -- csvlog -------------------------------------------------------------------------

    def _feed_csv(self, line: str, lineno: int) -> List[Event]:
        if self._csv_buf:
            self._csv_buf.append(line)
            if line.count('"') % 2 == 0 or len(self._csv_buf) > MAX_RECORD_LINES:
                return NOTHING  # still inside a quoted field
            record, start = "\n".join(self._csv_buf), self._csv_line
            self._csv_buf = []
            return self._csv_record(record, start)
        if line.count('"') % 2 == 1:  # a quoted field runs over the end of the line
            self._csv_buf = [line]
            self._csv_line = lineno
            return NOTHING
        if not CSV_HEAD.match(line):
            self.unparsed += 1
            return NOTHING
        return self._csv_record(line, lineno)

    def _csv_record(self, record: str, lineno: int) -> List[Event]:
        if "duration: " not in record and ",ERROR," not in record and ",FATAL," not in record and ",PANIC," not in record:
            return NOTHING
        try:
            f = next(csv.reader([record]))
        except (csv.Error, StopIteration):
            self.unparsed += 1
            return NOTHING
        if len(f) < 14:
            self.unparsed += 1
            return NOTHING
        return self._fields(
            raw=record, lineno=lineno, ts=local_ts(f[0]), user=f[1], database=f[2], pid=f[3],
            severity=f[11], code=f[12], message=f[13],
        )

    def _fields(
        self, raw: str, lineno: int, ts: Optional[float], user: str, database: str, pid: str,
        severity: str, code: str, message: str,
    ) -> List[Event]:
        """One complete record from a structured format (csvlog, CloudNativePG)."""
        if ts is not None:
            self.last_ts = ts
        if severity == "LOG":
            m = DURATION.match(message)
            if m is None:
                return NOTHING
            sql = message[m.end():].strip()
            return [DbStatement(ts=ts, source=self.source, line=lineno, raw=raw, duration_ms=bounded_float(m[1]), sql=sql,
                                tags=sql_tags(sql), user=user, database=database, pid=pid)]
        if severity not in ERROR_LEVELS:
            return NOTHING
        if not code or code == "00000":
            code = infer_sqlstate(message)
        return [Error(ts=ts, source=self.source, line=lineno, raw=raw, origin="postgres", error_class=pg_error_class(code),
                      message=message, code=code, level=severity, pid=pid)]

    # -- JSON: Cloud SQL (Cloud Logging) and CloudNativePG --------------------------------

    def _feed_json(self, line: str, lineno: int) -> List[Event]:
        if '"record":{' in line:  # CloudNativePG: csvlog fields inside "record"
            out = self._flush() if self._held is not None else NOTHING
            if ('"error_severity":"ERROR"' not in line and '"error_severity":"FATAL"' not in line
                    and '"error_severity":"PANIC"' not in line and "duration: " not in line):
                return out
            rec = _json(line).get("record")
            if not isinstance(rec, dict):
                self.unparsed += 1
                return out
            more = self._fields(
                raw=line, lineno=lineno, ts=local_ts(str(rec.get("log_time", ""))), user=str(rec.get("user_name", "")),
                database=str(rec.get("database_name", "")), pid=str(rec.get("process_id", "")),
                severity=str(rec.get("error_severity", "")), code=str(rec.get("sql_state_code", "")),
                message=str(rec.get("message", "")),
            )
            return out + more if more else out
        if '"textPayload":' in line:  # Cloud SQL: a stderr-style line without its time
            if self._held is None and ("duration: " not in line and "ERROR:  " not in line
                                       and "FATAL:  " not in line and "PANIC:  " not in line):
                return NOTHING
            data = _json(line)
            text = data.get("textPayload")
            if not isinstance(text, str):
                self.unparsed += 1
                return NOTHING
            ts = local_ts(str(data.get("timestamp", "")))
            parts = text.split("\n")
            out = list(self._feed_text(parts[0], line, lineno, ts))
            for part in parts[1:]:
                if self._held is not None:
                    self._extend(part.lstrip("\t"), None)  # the JSON line already is the raw text
            return out
        if '"logging_pod"' in line or '"logger"' in line or ('"msg":' in line and '"level":' in line):
            return NOTHING  # CloudNativePG's own operator lines
        self.unparsed += 1
        return NOTHING


def _json(line: str) -> dict:  # type: ignore[type-arg]
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return {}
    return data if isinstance(data, dict) else {}


def _looks_like_postgres(line: str) -> bool:
    first = line[:1]
    if first == "{":
        return ('"textPayload":' in line and locate_severity(line)[0] > 0) or (
            '"logging_pod"' in line or ('"logger":"postgres"' in line and '"record":{' in line)
        )
    if first.isdigit() and CSV_HEAD.match(line):
        return any(s in line for s in (",LOG,", ",ERROR,", ",FATAL,", ",PANIC,", ",WARNING,", ",NOTICE,", ",DETAIL,"))
    at, _, _ = locate_severity(line)
    if at < 0:
        m = SEQ.search(line)  # a syslog continuation ([N-2] …) of a PostgreSQL message
        return m is not None and m[2] != "1" and (m.start() == 0 or "postgres" in line[: m.start()])
    prefix = line[:at]
    if at and (PREFIX_SHAPE.search(prefix) is None or NOT_PG_PREFIX.search(prefix) is not None):
        return False
    return True
