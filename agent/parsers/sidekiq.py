"""Sidekiq's own log, every shape Sidekiq 4 to 8 writes it.

Matched shapes (ANSI colours stripped first; the time is absent with WithoutTimestamp/``DYNO``):

    2016-08-17T08:43:03.200Z 5207 TID-9s4zo UpdateCountersWorker JID-3c… INFO: done: 0.123 sec     (4.x, 5.x)
    2024-05-01T12:00:00.123Z pid=1 tid=2b8 class=HardJob jid=b4a5… elapsed=0.5 INFO: done           (6.0 - 7.x)
    INFO  2025-04-01T12:00:00.123Z pid=1 tid=2b8 class=HardJob jid=b4a5… elapsed=0.5: done           (8.x Pretty/Plain)
    {"ts":"2024-…","pid":1,"tid":"2b8","lvl":"INFO","msg":"done","ctx":{"class":"HardJob",…}}      (JSON formatter)

A failure is several records of one thread: ``fail`` (INFO, with the job context), maybe
``Adding dead <Class> job <jid>``, then the error handler's WARN records without class/jid:
the job hash (JSON, or a Ruby ``inspect`` in 4.x), ``ErrorClass: message`` and the backtrace
(one record: only its first line has the prefix). 8.x logs one INFO record instead:
``context=Job raised exception job={…}: message (ErrorClass)``. The parser holds the ``fail``
per (pid, tid) and emits one ``Job(state="fail")`` carrying error class, message, backtrace head,
queue and retry_count once the backtrace ended, the thread logged something else, the record
went stale, or at ``finish()``. A ``dead`` event held with it follows it.

Events: ``Job`` (start/done/fail/dead; ``job_class`` is the wrapped ActiveJob class, as in
Sidekiq's own context), ``Process`` (component "sidekiq"; state boot, quiet, shutdown,
terminate_busy, stopped (``Bye!``), crash (``bundler: failed to load command: sidekiq`` + the
exception), redis_error, redis_online), ``Error`` (origin "sidekiq") for errors not tied to a job
(Redis, connection pools, internal errors). A ``fail`` with no error that follows a WARN
``Terminating N busy threads`` of its process gets error_class ``Sidekiq::Shutdown``: the job was
interrupted by the shutdown and pushed back, it did not fail.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from agent.events import Error, Event, Job, Process
from agent.parsers.base import NOTHING, Parser, strip_ansi
from agent.timeparse import parse_iso

# [time ](pid=P tid=T | P TID-T)<context> LEVEL: message   (4.x to 7.x)
PRETTY = re.compile(
    r"(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) )?(?:pid=(\d+) tid=(\w+)|(\d+) TID-([\w-]+))"
    r"(.*?) (DEBUG|INFO|WARN|ERROR|FATAL): ?"
)
# LEVEL [time ]pid=P tid=T<context>: message   (8.x; the context may hold spaces and a job={…} hash)
SK8 = re.compile(r"(DEBUG|INFO|WARN|ERROR|FATAL) +(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) )?pid=(\d+) tid=(\w+)")
SNIFF = re.compile(
    r"(?:(?:DEBUG|INFO|WARN|ERROR|FATAL) +)?(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z )?(?:pid=\d+ tid=\w+|\d+ TID-[\w-]+ )"
    r'|\{"ts":"[^"]*","pid":\d+,"tid":'
)
ERROR_LINE = re.compile(r"((?:[A-Z]\w*::)*[A-Z]\w*): (.*)", re.S)
ERROR_TAIL = re.compile(r"(.*) \(((?:[A-Z]\w*::)*[A-Z]\w*)\)$", re.S)  # 8.x detailed_message
FRAME = re.compile(r"\s*(?:from )?[^\s:]+:\d+(?::in |$)")
LEAD_FRAME = re.compile(r"([^\s:]+:\d+:in [`'][^`']*'): ")  # full_message: "file:1:in 'm': msg (Class)"
JOB_FIELD = re.compile(
    r'"(class|wrapped|display_class|queue|jid|retry_count|error_class)"\s*(?::|=>)\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+))'
)
ADDING_DEAD = re.compile(r"Adding dead (\S+) job (\w+)")
DONE_LEGACY = re.compile(r"(?:done|fail): ([\d.]+) sec")
DOWNTIME = re.compile(r"Redis is online, ([\d.]+) sec downtime")
AJ_ERROR = re.compile(r"(?:\[[^\]]*\] )*Error performing ([\w:]+) \(Job ID: [\w-]+\) from .*?: ((?:[A-Z]\w*::)*[A-Z]\w*) \((.*)")

BOOT = ("Booted Rails", "Booting Sidekiq", "Running in ", "Starting processing")
BOOT_NOISE = ("See LICENSE", "Upgrade to Sidekiq Pro", "Sidekiq Pro ", "Sidekiq Enterprise ")
QUIET = ("Received USR1", "Received TSTP", "Terminating quiet")
REDIS_LINES = ("Error fetching job", "heartbeat: ", "Unable to flush stats", "Your Redis network connection")
SILENT = (
    "Pausing to allow", "Pushed ", "Heartbeat stopping", "Scheduler exiting", "Work still in progress",
    "Received TTIN", "Received INFO", "Thread TID-", "Jobs still in progress", "Re-queueing terminated jobs", "Performing ", "Performed ",
    "Enqueued ", "Retrying ", "!!! ERROR HANDLER",
)
WRAPPERS = ("ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "Sidekiq::ActiveJob::Wrapper")

MAX_FRAMES = 20  # backtrace head kept in the event
MAX_RECORD_LINES = 60  # raw lines kept per record (the rest is counted as parsed, not kept)
MAX_MESSAGE_LINES = 20
STALE_AFTER_LINES = 400  # a held failure is emitted once this many lines passed without news for it
MAX_PIDS = 4096


class _Record:
    """A failure (or a standalone error) waiting for the error handler's lines."""

    __slots__ = ("event", "lines", "has_error", "has_frames", "last_lineno", "dead")

    def __init__(self, event: Event, line: str, lineno: int) -> None:
        self.event = event
        self.lines = [line]
        self.has_error = False
        self.has_frames = False
        self.last_lineno = lineno
        self.dead: Optional[Job] = None

    def add_line(self, line: str, lineno: int) -> None:
        if len(self.lines) < MAX_RECORD_LINES:
            self.lines.append(line)
        self.last_lineno = lineno


def _kv(ctx: str) -> Dict[str, str]:
    """`` class=HardJob jid=b4a5 elapsed=0.5`` -> dict (values without spaces, 6.x/7.x)."""
    out: Dict[str, str] = {}
    for part in ctx.split():
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out


def _legacy_ctx(ctx: str) -> Dict[str, str]:
    """`` UpdateCountersWorker JID-3c4f… BID-…`` (4.x/5.x context)."""
    parts = ctx.split()
    out: Dict[str, str] = {}
    if len(parts) >= 2 and parts[1].startswith("JID-"):
        out["class"], out["jid"] = parts[0], parts[1][4:]
    return out


def _matching_brace(text: str, start: int) -> int:
    """Index just past the ``}`` closing the ``{`` at ``start`` (strings skipped); -1 if none."""
    depth = 0
    in_str = False
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def split_sk8(rest: str) -> Tuple[Dict[str, str], str]:
    """8.x: `` class=X jid=Y: msg`` or `` context=Job raised exception job={…}: msg`` -> (ctx, msg)."""
    if rest.startswith(": "):
        return {}, rest[2:]
    ctx: Dict[str, str] = {}
    j = rest.find(" job={")
    if j >= 0:
        end = _matching_brace(rest, j + 5)
        if end > 0 and rest.startswith(": ", end):
            ctx["job"] = rest[j + 5 : end]
            head, msg = rest[:j], rest[end + 2 :]
        else:
            head, _, msg = rest.partition(": ")
    else:
        head, _, msg = rest.partition(": ")
    keys = list(re.finditer(r" (\w+)=", head))
    for i, m in enumerate(keys):
        stop = keys[i + 1].start() if i + 1 < len(keys) else len(head)
        ctx[m.group(1)] = head[m.end() : stop]
    return ctx, msg


def job_fields(text: str) -> Dict[str, str]:
    """Top-level fields of a job hash printed as JSON or Ruby ``inspect`` (first occurrence wins)."""
    out: Dict[str, str] = {}
    for m in JOB_FIELD.finditer(text):
        key = m.group(1)
        if key not in out:
            out[key] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


def job_class_of(fields: Dict[str, object]) -> str:
    """What Sidekiq's job logger shows: display_class, else wrapped (ActiveJob), else class."""
    for key in ("display_class", "wrapped", "class"):
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


class SidekiqParser(Parser):
    name = "sidekiq"
    description = "Sidekiq 4-8 logs (Pretty, WithoutTimestamp, JSON, 8.x severity-first), job lifecycle, errors, process lifecycle"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._records: "OrderedDict[Tuple[str, str], _Record]" = OrderedDict()
        self._open: Optional[_Record] = None  # receives the unprefixed lines that follow (backtrace, message)
        self._text_open = False  # a multi-line WARN text (heredoc) is running: its lines are not noise
        self._booting: Dict[str, bool] = {}  # pids between their boot lines and their first other line
        self._quiet: Dict[str, bool] = {}
        self._terminating: Dict[str, bool] = {}  # pids that logged "Terminating N busy threads"
        self._aj_errors: Dict[Tuple[str, str], Tuple[str, str]] = {}  # ActiveJob's own error line, per thread
        self._jid_class: "OrderedDict[str, str]" = OrderedDict()  # failed jobs' classes, for wrapper-named dead lines
        self._last_pid = ""
        self._minute_key = ""
        self._minute_epoch = 0.0

    # ----- sniffing -------------------------------------------------------------------
    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        seen = hits = 0
        for raw in lines:
            line = strip_ansi(raw).strip()
            if not line:
                continue
            if SNIFF.match(line) or line.startswith("bundler: failed to load command: sidekiq"):
                seen += 1
                hits += 1
            elif not FRAME.match(line):  # backtrace lines belong to whichever format wrote the record
                seen += 1
        return hits / seen if hits and seen else 0.0

    # ----- parsing --------------------------------------------------------------------
    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if "\x1b" in line:
            line = strip_ansi(line)
        c = line[:1]
        m = PRETTY.match(line) if (c == "2" or c == "p") and self._open is None else None
        if m is not None:
            msg = line[m.end() :]
            if msg == "start" or msg == "done" or msg[:6] == "done: ":
                job = self._fast_job(m, msg, line, lineno, ts_hint)
                if job is not None:
                    return [job]
            parsed = self._split(line, m)
        else:
            parsed = self._split(line)
        if parsed is None:
            return self._unprefixed(line, lineno, ts_hint)
        stamp, pid, tid, ctx, level, msg = parsed
        ts = self._time(stamp, ts_hint)
        self._last_pid = pid
        self._text_open = False
        out: List[Event] = NOTHING
        opened = self._open
        if opened is not None:
            self._open = None
            if opened.has_frames or isinstance(opened.event, Process):
                out = self._release_record(opened)
        if "\n" in msg:  # JSON formatter: a backtrace or multi-line message is one record
            msg, _, more = msg.partition("\n")
            extra = more.split("\n")
        else:
            extra = None
        key = (pid, tid)
        rec = self._records.get(key) if self._records else None
        produced = self._handle(rec, key, ts, pid, tid, ctx, level, msg, line, lineno)
        if extra and self._open is not None:
            for more_line in extra:
                self._continue(self._open, more_line, lineno)
        if produced:
            out = out + produced if out else produced
        if self._records and lineno % 64 == 0:
            stale = self._release_stale(lineno)
            if stale:
                out = out + stale
        return out

    def finish(self) -> List[Event]:
        out: List[Event] = []
        if self._open is not None and isinstance(self._open.event, Process):
            out.extend(self._release_record(self._open))
        self._open = None
        for key in list(self._records):
            out.extend(self._release(key))
        return out

    # ----- line shapes ----------------------------------------------------------------
    def _time(self, stamp: str, ts_hint: Optional[float]) -> Optional[float]:
        ts: Optional[float] = None
        if stamp:
            # Sidekiq writes "2024-05-01T12:00:00.123Z": lines of the same minute only differ in the seconds
            if stamp[:17] == self._minute_key and stamp[-1] == "Z" and len(stamp) > 19:
                try:
                    ts = self._minute_epoch + float(stamp[17:-1])
                except ValueError:
                    ts = None
            if ts is None:
                ts = parse_iso(stamp)
                if ts is not None and stamp[16:17] == ":" and stamp[-1] == "Z":
                    self._minute_key = stamp[:17]
                    self._minute_epoch = float(int(ts) - int(ts) % 60)
        if ts is None:
            return ts_hint if ts_hint is not None else self.last_ts
        self.last_ts = ts
        return ts

    def _fast_job(self, m: "re.Match[str]", msg: str, line: str, lineno: int, ts_hint: Optional[float]) -> Optional[Job]:
        """The hot path: a start/done line of a thread that has nothing held (most of a busy log)."""
        stamp, pid, tid, pid4, tid4, ctx, _level = m.groups()
        if pid is None:
            pid, tid = pid4, tid4
        if self._records and ((pid, tid) in self._records or lineno % 64 == 0):
            return None  # something is held for this thread, or it is time to release stale records
        job_class = jid = ""
        elapsed: Optional[float] = None
        if ctx:
            if pid4 is None:
                for part in ctx.split(" "):
                    if part[:6] == "class=":
                        job_class = part[6:]
                    elif part[:4] == "jid=":
                        jid = part[4:]
                    elif part[:8] == "elapsed=":
                        try:
                            elapsed = float(part[8:])
                        except ValueError:
                            pass
            else:
                parts = ctx.split(" ")
                if len(parts) >= 3 and parts[2][:4] == "JID-":
                    job_class, jid = parts[1], parts[2][4:]
        state = "start" if msg == "start" else "done"
        if msg[:6] == "done: " and msg[-4:] == " sec":
            try:
                elapsed = float(msg[6:-4])
            except ValueError:
                pass
        ts = self._time(stamp, ts_hint)
        self._last_pid = pid
        self._text_open = False
        if self._booting:
            self._booting.pop(pid, None)
        return Job(ts=ts, source=self.source, line=lineno, raw=line, state=state, job_class=job_class, jid=jid, tid=tid, pid=pid, elapsed_s=elapsed)

    def _split(self, line: str, m: "Optional[re.Match[str]]" = None) -> Optional[Tuple[str, str, str, object, str, str]]:
        """(time, pid, tid, context, level, message) of a Sidekiq-prefixed line, else None."""
        if m is not None:
            return self._pretty_parts(line, m)
        c = line[:1]
        if c == "{":
            return self._split_json(line)
        if c in "DIWEF":
            m = SK8.match(line)
            if m is not None:
                ctx, msg = split_sk8(line[m.end() :])
                return m.group(2) or "", m.group(3), m.group(4), ctx, m.group(1), msg
            return None
        if not c.isdigit() and c != "p":
            return None
        m = PRETTY.match(line)
        if m is None:
            return None
        return self._pretty_parts(line, m)

    @staticmethod
    def _pretty_parts(line: str, m: "re.Match[str]") -> Tuple[str, str, str, object, str, str]:
        stamp, pid, tid, pid4, tid4, ctx, level = m.groups()
        if pid is not None:
            return stamp or "", pid, tid, ctx, level, line[m.end() :]
        return stamp or "", pid4, tid4, _legacy_ctx(ctx) if ctx else {}, level, line[m.end() :]

    @staticmethod
    def _split_json(line: str) -> Optional[Tuple[str, str, str, object, str, str]]:
        if '"tid"' not in line[:80]:
            return None
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or "tid" not in data:
            return None
        ctx = data.get("ctx") or {}
        if not isinstance(ctx, dict):
            ctx = {}
        msg = data.get("msg")
        return str(data.get("ts") or ""), str(data.get("pid", "")), str(data["tid"]), ctx, str(data.get("lvl", "")), msg if isinstance(msg, str) else json.dumps(msg)

    @staticmethod
    def _ctx(ctx: object) -> Dict[str, object]:
        if isinstance(ctx, dict):
            return ctx
        return _kv(ctx) if ctx else {}  # type: ignore[arg-type]

    # ----- one prefixed record ----------------------------------------------------------
    def _handle(
        self, rec: Optional[_Record], key: Tuple[str, str], ts: Optional[float], pid: str, tid: str,
        ctx: object, level: str, msg: str, line: str, lineno: int,
    ) -> List[Event]:
        first = msg[:1]
        # the hot path: job lifecycle lines
        if first in ("s", "d") and (msg == "start" or msg == "done" or msg.startswith("done: ")):
            out = self._release(key) if rec is not None else NOTHING
            if self._booting:
                self._booting.pop(pid, None)
            job = self._job(msg[:4] if first == "d" else "start", ts, pid, tid, ctx, msg, line, lineno)
            return out + [job] if out else [job]
        if first == "f" and (msg == "fail" or msg.startswith("fail: ")):
            job = self._job("fail", ts, pid, tid, ctx, msg, line, lineno)
            dead: Optional[Job] = None
            out = NOTHING
            if rec is not None:
                if isinstance(rec.event, Job) and rec.event.state == "dead" and rec.event.jid in ("", job.jid):
                    dead = rec.event  # "Adding dead" came first (the retry ran inside the job logger): keep it for after the fail
                    del self._records[key]
                else:
                    out = self._release(key)
            hint = self._aj_errors.pop(key, None) if self._aj_errors else None
            if hint is not None:
                job.error_class, job.error_message = hint
            held = _Record(job, line, lineno)
            held.dead = dead
            self._hold(key, held)
            return out
        # the error handler's records (WARN in 4-7, one INFO with context= in 8.x)
        fields = self._ctx(ctx) if isinstance(ctx, dict) or "context=" in ctx or "job=" in ctx else None  # type: ignore[operator]
        if fields and "context" in fields:
            return self._error_context_8(rec, key, ts, pid, fields, msg, line, lineno)
        in_job = ("class" in ctx) if isinstance(ctx, dict) else ("class=" in ctx)  # type: ignore[operator]
        if level in ("WARN", "ERROR", "FATAL") and msg and not in_job:
            # the error handler runs after the job context is cleared; a WARN inside a job is the app's own
            attached = self._error_record(rec, key, ts, pid, level, msg, line, lineno)
            if attached is not None:
                return attached
        if first == "A" and msg.startswith("Adding dead "):
            return self._dead(rec, key, ts, pid, tid, ctx, msg, line, lineno)
        if first == "E" or first == "[":
            m = AJ_ERROR.match(msg)
            if m is not None:  # ActiveJob's own line, before Sidekiq's fail: a fallback for the error
                self._aj_errors[key] = (m.group(2), m.group(3).rstrip("):"))
                if len(self._aj_errors) > 256:
                    self._aj_errors.clear()
                self._text_open = True  # its backtrace follows on unprefixed lines
                return NOTHING
        out = self._release(key) if rec is not None else NOTHING
        if msg == "Bye!" and self._records:
            more = self._release_pid(pid)  # before the pid's shutdown flags are forgotten
            out = out + more if out else more
        event = self._lifecycle(ts, pid, "INFO" if in_job else level, msg, line, lineno)
        if event is not None:
            return out + [event] if out else [event]
        return out

    def _job(self, state: str, ts: Optional[float], pid: str, tid: str, ctx: object, msg: str, line: str, lineno: int) -> Job:
        fields = ctx if isinstance(ctx, dict) else self._ctx(ctx)
        elapsed: Optional[float] = None
        if state != "start":
            value = fields.get("elapsed")
            if value is None and len(msg) > 6:
                m = DONE_LEGACY.match(msg)
                value = m.group(1) if m else None
            try:
                elapsed = float(value) if value is not None else None  # type: ignore[arg-type]
            except ValueError:
                elapsed = None
        return Job(
            ts=ts, source=self.source, line=lineno, raw=line, state=state, job_class=str(fields.get("class", "")),
            jid=str(fields.get("jid", "")), tid=tid, pid=pid, elapsed_s=elapsed,
        )

    def _hold(self, key: Tuple[str, str], rec: _Record) -> None:
        self._records[key] = rec
        self._records.move_to_end(key)

    def _error_record(
        self, rec: Optional[_Record], key: Tuple[str, str], ts: Optional[float], pid: str, level: str, msg: str, line: str, lineno: int
    ) -> Optional[List[Event]]:
        """Attach a 4.x-7.x error-handler record (job hash, ``Class: message``, backtrace); None if it is none."""
        first = msg[:1]
        out: List[Event] = NOTHING
        if first == "{":
            if '"context"' not in msg[:60] and ":context" not in msg[:60]:
                return None
            fields = self._job_hash(msg)
            jid = str(fields.get("jid") or "")
            if rec is not None and (rec.has_error or (jid and getattr(rec.event, "jid", "") not in ("", jid))):
                out = self._release(key)
                rec = None
            if rec is None:
                rec = _Record(self._error(ts, pid, level, line, lineno), line, lineno)
                self._hold(key, rec)
            else:
                rec.add_line(line, lineno)
            self._apply_job_hash(rec.event, fields)
            return out
        if FRAME.match(msg):
            if rec is None:
                self._text_open = True  # a thread dump (TTIN) or a lone backtrace: nothing to attach it to
                return NOTHING
            rec.add_line(line, lineno)
            self._add_frame(rec, msg)
            self._open = rec
            return NOTHING
        m = ERROR_LINE.match(msg)
        if m is None or not any(ch.islower() for ch in m.group(1)):  # "WARNING: …" is not an exception class
            return None
        if rec is not None and rec.has_error:
            out = self._release(key)
            rec = None
        if rec is None:
            rec = _Record(self._error(ts, pid, level, line, lineno), line, lineno)
            self._hold(key, rec)
        else:
            rec.add_line(line, lineno)
        self._set_error(rec, m.group(1), m.group(2))
        self._open = rec  # a multi-line message continues on unprefixed lines
        return out

    def _error_context_8(
        self, rec: Optional[_Record], key: Tuple[str, str], ts: Optional[float], pid: str, fields: Dict[str, object],
        msg: str, line: str, lineno: int,
    ) -> List[Event]:
        """8.x: ``context=Job raised exception job={…}: message (Class)`` is the whole error report."""
        job = fields.get("job")
        info: Dict[str, object] = {}
        if isinstance(job, dict):
            info = job
        elif isinstance(job, str):
            info = dict(job_fields(job))
        jid = str(info.get("jid") or "")
        out: List[Event] = NOTHING
        if rec is not None and (rec.has_error or (jid and getattr(rec.event, "jid", "") not in ("", jid))):
            out = self._release(key)
            rec = None
        if rec is None:
            rec = _Record(self._error(ts, pid, "INFO", line, lineno), line, lineno)
            self._hold(key, rec)
        else:
            rec.add_line(line, lineno)
        self._apply_job_hash(rec.event, info)
        lead = LEAD_FRAME.match(msg)
        if lead is not None:  # full_message (development, or DEBUG level): backtrace on "\tfrom" lines
            self._add_frame(rec, lead.group(1))
            msg = msg[lead.end() :]
        m = ERROR_TAIL.match(msg)
        if m is not None:
            self._set_error(rec, m.group(2), m.group(1))
        else:
            self._set_error(rec, "", msg)
        if lead is not None:
            self._open = rec
            return out
        released = self._release(key)
        return out + released if out else released

    def _dead(
        self, rec: Optional[_Record], key: Tuple[str, str], ts: Optional[float], pid: str, tid: str, ctx: object,
        msg: str, line: str, lineno: int,
    ) -> List[Event]:
        m = ADDING_DEAD.match(msg)
        fields = self._ctx(ctx)
        jid = str(fields.get("jid") or (m.group(2) if m else ""))
        job_class = str(fields.get("class") or "")
        if not job_class or job_class in WRAPPERS:  # the message names the ActiveJob wrapper, not the job
            job_class = self._jid_class.get(jid) or (m.group(1) if m else job_class)
        dead = Job(ts=ts, source=self.source, line=lineno, raw=line, state="dead", job_class=job_class, jid=jid, tid=tid, pid=pid)
        if rec is not None and isinstance(rec.event, Job) and rec.event.state == "fail" and rec.event.jid in ("", jid) and rec.dead is None:
            rec.dead = dead  # logged between the fail and the error handler: emit it after the fail
            rec.last_lineno = lineno
            return NOTHING
        out = self._release(key) if rec is not None else NOTHING
        # usually logged *before* its fail (the retry runs inside the job logger): wait for the fail
        self._hold(key, _Record(dead, line, lineno))
        return out

    def _lifecycle(self, ts: Optional[float], pid: str, level: str, msg: str, line: str, lineno: int) -> Optional[Event]:
        """Boot, quiet, shutdown and Redis lines; None (counted as parsed) for the rest."""
        state = ""
        if msg.startswith(BOOT):
            if pid in self._booting:
                return None
            self._booting[pid] = True
            self._quiet.pop(pid, None)
            self._terminating.pop(pid, None)
            if len(self._booting) > MAX_PIDS:
                self._booting.clear()
            state = "boot"
        elif msg.startswith(BOOT_NOISE) or msg.startswith(SILENT):
            return None
        elif msg.startswith(QUIET):
            if pid in self._quiet:
                return None
            self._quiet[pid] = True
            if len(self._quiet) > MAX_PIDS:
                self._quiet.clear()
            state = "quiet"
        elif msg == "Shutting down":
            state = "shutdown"
        elif msg == "Bye!":
            state = "stopped"
            self._booting.pop(pid, None)
            self._quiet.pop(pid, None)
            self._terminating.pop(pid, None)
        elif msg.startswith("Terminating ") and " busy " in msg:
            self._terminating[pid] = True
            state = "terminate_busy"
        elif msg.startswith(REDIS_LINES):
            state = "redis_error"
            self._text_open = msg.startswith("Your Redis")
        elif msg.startswith("Redis is online"):
            state = "redis_online"
        elif msg.startswith("Failed to requeue"):  # in-flight jobs lost at shutdown
            return Error(ts=ts, source=self.source, line=lineno, raw=line, origin="sidekiq", message=msg, level=level, pid=pid)
        elif not msg.strip() or msg.startswith("WARNING:"):
            self._text_open = True  # a heredoc warning (Redis eviction policy…) follows
            return None
        elif level in ("DEBUG", "INFO"):
            return None  # the app's own log lines through Sidekiq's logger
        else:
            self.unparsed += 1
            return None
        return Process(ts=ts, source=self.source, line=lineno, raw=line, component="sidekiq", state=state, pid=pid, message=msg)

    # ----- error records ----------------------------------------------------------------
    def _error(self, ts: Optional[float], pid: str, level: str, line: str, lineno: int) -> Error:
        return Error(ts=ts, source=self.source, line=lineno, raw=line, origin="sidekiq", level=level, pid=pid)

    @staticmethod
    def _job_hash(msg: str) -> Dict[str, object]:
        if msg.startswith('{"'):
            try:
                data = json.loads(msg)
            except ValueError:
                data = None
            if isinstance(data, dict):
                job = data.get("job")
                out: Dict[str, object] = dict(job) if isinstance(job, dict) else {}
                out["context"] = data.get("context", "")
                return out
        end = _matching_brace(msg, msg.find("=>{") + 2) if "=>{" in msg else -1
        return dict(job_fields(msg[:end] if end > 0 else msg))

    @staticmethod
    def _apply_job_hash(event: Event, fields: Dict[str, object]) -> None:
        queue = fields.get("queue")
        retry_count = fields.get("retry_count")
        if isinstance(event, Job):
            if queue and not event.queue:
                event.queue = str(queue)
            if retry_count is not None:
                try:
                    event.retry_count = int(retry_count)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    pass
            if not event.job_class or event.job_class in WRAPPERS:
                event.job_class = job_class_of(fields) or event.job_class
            if not event.jid and fields.get("jid"):
                event.jid = str(fields["jid"])
        elif isinstance(event, Error):
            event.job_class = event.job_class or job_class_of(fields)
            event.jid = event.jid or str(fields.get("jid") or "")
            if fields.get("context") and not event.message:
                event.message = str(fields["context"])

    @staticmethod
    def _set_error(rec: _Record, error_class: str, message: str) -> None:
        rec.has_error = True
        event = rec.event
        if isinstance(event, Job):
            event.error_class, event.error_message = error_class or event.error_class, message
        elif isinstance(event, Error):
            event.error_class, event.message = error_class, message

    @staticmethod
    def _add_frame(rec: _Record, frame: str) -> None:
        rec.has_frames = True
        event = rec.event
        if isinstance(event, (Job, Error)) and len(event.backtrace) < MAX_FRAMES:
            event.backtrace = event.backtrace + (frame.strip(),)

    def _continue(self, rec: _Record, line: str, lineno: int) -> bool:
        """An unprefixed line after a record: a frame, or more of the error message. False if neither."""
        body = line.strip()
        if isinstance(rec.event, Process):  # a crash: "SignalException: SIGHUP" and its backtrace
            if FRAME.match(line):
                rec.has_frames = True
            elif rec.has_frames or rec.has_error or not ERROR_LINE.match(body):
                return False
            else:
                rec.has_error = True
                rec.event.message = body
            rec.add_line(line, lineno)
            return True
        if FRAME.match(line):
            rec.add_line(line, lineno)
            self._add_frame(rec, body[5:] if body.startswith("from ") else body)
            return True
        if rec.has_error and not rec.has_frames and len(rec.lines) < MAX_MESSAGE_LINES:
            rec.add_line(line, lineno)
            event = rec.event
            if isinstance(event, Job):
                event.error_message += "\n" + line
            elif isinstance(event, Error):
                event.message += "\n" + line
            return True
        return False

    def _unprefixed(self, line: str, lineno: int, ts_hint: Optional[float]) -> List[Event]:
        if ts_hint is not None:
            self.last_ts = ts_hint
        rec = self._open
        if rec is not None:
            if self._continue(rec, line, lineno):
                return NOTHING
            self._open = None
            if rec.has_frames or isinstance(rec.event, Process):
                out = self._release_record(rec)
                more = self._unprefixed(line, lineno, ts_hint)
                return out + more if more else out
        body = line.strip()
        if not body:
            return NOTHING
        if body.startswith("bundler: failed to load command: sidekiq"):
            crash = Process(
                ts=ts_hint if ts_hint is not None else self.last_ts, source=self.source, line=lineno, raw=line,
                component="sidekiq", state="crash", pid=self._last_pid, message=body,
            )
            self._open = _Record(crash, line, lineno)
            self._booting.pop(self._last_pid, None)
            return NOTHING
        if not self._text_open:
            self.unparsed += 1
        return NOTHING

    # ----- releasing held records --------------------------------------------------------
    def _release(self, key: Tuple[str, str]) -> List[Event]:
        rec = self._records.pop(key, None)
        if rec is None:
            return NOTHING
        if self._open is rec:
            self._open = None
        return self._emit(rec)

    def _release_record(self, rec: _Record) -> List[Event]:
        for key, held in self._records.items():
            if held is rec:
                return self._release(key)
        return self._emit(rec)

    def _emit(self, rec: _Record) -> List[Event]:
        event = rec.event
        event.raw = "\n".join(rec.lines)
        if isinstance(event, Job) and event.state == "fail":
            if not event.error_class and self._terminating.get(event.pid):
                event.error_class = "Sidekiq::Shutdown"
                event.error_message = "interrupted by the shutdown (Terminating busy threads); pushed back to Redis"
            if event.jid and event.job_class:
                self._jid_class[event.jid] = event.job_class
                if len(self._jid_class) > 1024:
                    self._jid_class.popitem(last=False)
        if rec.dead is not None:
            dead = rec.dead
            if isinstance(event, Job):
                dead.job_class = dead.job_class if dead.job_class not in WRAPPERS else event.job_class
                dead.queue, dead.error_class, dead.error_message = event.queue, event.error_class, event.error_message
                dead.retry_count = event.retry_count
            return [event, dead]
        return [event]

    def _release_stale(self, lineno: int) -> List[Event]:
        out: List[Event] = []
        for key in [k for k, rec in self._records.items() if lineno - rec.last_lineno >= STALE_AFTER_LINES]:
            out.extend(self._release(key))
        return out

    def _release_pid(self, pid: str) -> List[Event]:
        out: List[Event] = []
        for key in [k for k in self._records if k[0] == pid]:
            out.extend(self._release(key))
        return out
