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

import re
from dataclasses import fields as dataclass_fields
from typing import Dict, List, Optional, Sequence, Tuple

from agent.events import Error, Event, Job, Process
from agent.parsers.base import NOTHING, strip_ansi
from agent.parsers.numbers import bounded_float
from agent.parsers.sidekiq_errors import HeldRecord, SidekiqErrorGrouping
from agent.parsers.sidekiq_lines import (
    ADDING_DEAD, AJ_ERROR, BOOT, BOOT_NOISE, CRASH, DONE_LEGACY, JOB_LINE, JOB_LINE_SECONDS, MINUTE, QUIET, REDIS_LINES, SILENT, SNIFF, WRAPPERS,
    StampClock, context_fields, is_frame, job_class_of, job_context, job_fields, pretty_parts, split_line, split_pretty, split_sk8,
)

__all__ = ["SidekiqParser", "split_sk8", "job_fields", "job_class_of"]

MAX_PIDS = 4096

# Job built with positional arguments on the hot path (keywords cost 2.5x as much); a keyword
# adapter takes over should the dataclass's field order ever change.
_JOB_ORDER = ("ts", "source", "line", "raw", "state", "job_class", "jid", "queue", "tid", "pid", "elapsed_s")


def _job_by_keywords(ts, source, line, raw, state, job_class, jid, queue, tid, pid, elapsed_s):  # type: ignore[no-untyped-def]
    return Job(ts=ts, source=source, line=line, raw=raw, state=state, job_class=job_class, jid=jid, queue=queue, tid=tid, pid=pid, elapsed_s=elapsed_s)


new_job = Job if tuple(f.name for f in dataclass_fields(Job))[: len(_JOB_ORDER)] == _JOB_ORDER else _job_by_keywords


class SidekiqParser(SidekiqErrorGrouping):
    """Sidekiq's own log, 4.x to 8.x (shapes in the module docstring): which line is which, job and
    process events; the failures' error records are grouped by ``SidekiqErrorGrouping``."""

    name = "sidekiq"
    description = "Sidekiq 4-8 logs (Pretty, WithoutTimestamp, JSON, 8.x severity-first), job lifecycle, errors, process lifecycle"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._booting: Dict[str, bool] = {}  # pids between their boot lines and their first other line
        self._quiet: Dict[str, bool] = {}
        self._aj_errors: Dict[Tuple[str, str], Tuple[str, str]] = {}  # ActiveJob's own error line, per thread
        self._last_pid = ""
        self._clock = StampClock()

    # ----- sniffing -------------------------------------------------------------------
    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        seen = hits = 0
        for raw in lines:
            line = strip_ansi(raw).strip()
            if not line:
                continue
            if SNIFF.match(line) or line.startswith(CRASH):
                seen += 1
                hits += 1
            elif not is_frame(line):  # backtrace lines belong to whichever format wrote the record
                seen += 1
        return hits / seen if hits and seen else 0.0

    # ----- parsing --------------------------------------------------------------------
    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if "\x1b" in line:
            line = strip_ansi(line)
        c = line[:1]
        if c == "/":  # no Sidekiq prefix starts so: a backtrace frame (most lines of a failing log)
            rec = self._open
            if rec is not None and is_frame(line):
                if ts_hint is not None:
                    self.last_ts = ts_hint
                rec.add_frame_line(line, lineno)
                return NOTHING
            return self._unprefixed(line, lineno, ts_hint)
        if c == "2" or c == "p":
            if self._open is None:
                whole = JOB_LINE.match(line)
                if whole is not None:
                    # The hot path (most lines of a busy log), inline as a call costs as much as a field: a
                    # start/done line of a thread with nothing held, unless it is time to release stale records.
                    stamp, pid, tid, job_class, jid, elapsed_text, pid4, tid4, class4, jid4, msg, seconds = whole.groups()
                    if pid is None:
                        pid, tid, job_class, jid = pid4, tid4, class4, jid4
                    if not self._records or ((pid, tid) not in self._records and lineno % 64):
                        elapsed = bounded_float(elapsed_text)
                        if seconds is not None:  # 4.x/5.x "done: 0.123 sec"
                            elapsed = bounded_float(seconds)
                        ts = self._clock.read_stamp(stamp) if stamp else None
                        if ts is None:
                            ts = ts_hint if ts_hint is not None else self.last_ts
                        else:
                            self.last_ts = ts
                        self._last_pid = pid
                        self._text_open = False
                        if self._booting:
                            self._booting.pop(pid, None)
                        state = "start" if msg == "start" else "done"
                        return [new_job(ts, self.source, lineno, line, state, job_class, jid, "", tid, pid, elapsed)]
                split = split_pretty(line)
                if split is not None:
                    msg = split[6]
                    if msg == "start" or msg == "done" or msg[:6] == "done: ":
                        job = self._fast_job(split, line, lineno, ts_hint)
                        if job is not None:
                            return [job]
                    parsed = pretty_parts(split)
                else:
                    parsed = None
            else:
                parsed = split_line(line)
        elif c == "{" or c in "DIWEF" or c.isdigit():  # "" (a blank line) is "in" any string: split_line says None
            parsed = split_line(line)
        else:  # no Sidekiq prefix starts so: a backtrace frame, a message's next line, or noise
            return self._unprefixed(line, lineno, ts_hint)
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

    def feed_lines(self, lines: Sequence[str], first_lineno: int) -> List[Event]:
        """``feed`` on each line, with feed's hot path (a start/done line as JOB_LINE matches it, of a thread
        with nothing held, while no record is open) in this loop: the state in locals, the stamp read from
        its minute (checked and converted once per minute, ``StampClock.read_stamp``'s arithmetic) and its
        seconds. Every other line goes to ``feed``, with the state written back first."""
        out: List[Event] = []
        append = out.append
        feed = self.feed
        match = JOB_LINE_SECONDS.match
        minute_shape = MINUTE.match
        minute_epoch = self._clock.minute_epoch
        records = self._records
        booting = self._booting
        source = self.source
        minute: Optional[str] = None  # the stamps' "2024-05-01T12:00:" read last, and its epoch (None:
        base: Optional[float] = None  # a date parse_iso rejects, such lines go to feed)
        open_rec = self._open  # while a record is open, its next lines are feed's
        last_ts = last_pid = None  # what the lines done here leave in self.last_ts, self._last_pid
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            head = line[:17]
            if open_rec is None:
                if head != minute and minute_shape(head) is not None:
                    minute, base = head, minute_epoch(head)
                if head == minute and base is not None:
                    m = match(line, 17)
                    if m is not None:
                        seconds, pid, tid, job_class, jid, elapsed_text, pid4, tid4, class4, jid4, msg, seconds4 = m.groups()
                        if pid is None:
                            pid, tid, job_class, jid = pid4, tid4, class4, jid4
                        if seconds4 is not None:  # "done: 0.123 sec" (4.x/5.x), whatever elapsed= said
                            elapsed_text = seconds4
                        if ("\n" not in line and "\x1b" not in line and (not records or ((pid, tid) not in records and lineno % 64))
                                and seconds[:2] <= "60" and len(seconds) <= 12):  # plain_seconds, inlined
                            elapsed = None if elapsed_text is None else float(elapsed_text)  # = bounded_float: at most 15 digits
                            last_ts = ts = base + float(seconds)
                            last_pid = pid
                            if booting:
                                booting.pop(pid, None)
                            append(new_job(ts, source, lineno, line, "start" if msg == "start" else "done", job_class, jid, "", tid, pid, elapsed))
                            continue
            if last_pid is not None:
                self.last_ts, self._last_pid, self._text_open = last_ts, last_pid, False
                last_pid = None
            events = feed(line, lineno)
            if events:
                out.extend(events)
            open_rec = self._open
        if last_pid is not None:
            self.last_ts, self._last_pid, self._text_open = last_ts, last_pid, False
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
    def _time(self, stamp: Optional[str], ts_hint: Optional[float]) -> Optional[float]:
        ts = self._clock.read(stamp) if stamp else None
        if ts is None:
            return ts_hint if ts_hint is not None else self.last_ts
        self.last_ts = ts
        return ts

    def _fast_job(
        self, split: Tuple[Optional[str], str, str, str, bool, str, str], line: str, lineno: int, ts_hint: Optional[float]
    ) -> Optional[Job]:
        """A start/done line of another shape (more context keys, another level) of a thread with nothing held."""
        stamp, pid, tid, ctx, legacy, _level, msg = split
        if self._records and ((pid, tid) in self._records or lineno % 64 == 0):
            return None  # something is held for this thread, or it is time to release stale records
        job_class, jid, elapsed = job_context(ctx, legacy)
        state = "start" if msg == "start" else "done"
        if msg[:6] == "done: " and msg[-4:] == " sec":
            elapsed = bounded_float(msg[6:-4])
        ts = self._time(stamp, ts_hint)
        self._last_pid = pid
        self._text_open = False
        if self._booting:
            self._booting.pop(pid, None)
        return new_job(ts, self.source, lineno, line, state, job_class, jid, "", tid, pid, elapsed)

    # ----- one prefixed record ----------------------------------------------------------
    def _handle(
        self, rec: Optional[HeldRecord], key: Tuple[str, str], ts: Optional[float], pid: str, tid: str,
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
            held = HeldRecord(job, line, lineno)
            held.dead = dead
            self._hold(key, held)
            return out
        # the error handler's records (WARN in 4-7, one INFO with context= in 8.x)
        fields = context_fields(ctx) if isinstance(ctx, dict) or "context=" in ctx or "job=" in ctx else None  # type: ignore[operator]
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
        fields = ctx if isinstance(ctx, dict) else context_fields(ctx)
        elapsed: Optional[float] = None
        if state != "start":
            value = fields.get("elapsed")
            if value is None and len(msg) > 6:
                m = DONE_LEGACY.match(msg)
                value = m.group(1) if m else None
            elapsed = bounded_float(value)
        return Job(
            ts=ts, source=self.source, line=lineno, raw=line, state=state, job_class=str(fields.get("class", "")),
            jid=str(fields.get("jid", "")), tid=tid, pid=pid, elapsed_s=elapsed,
        )

    def _dead(
        self, rec: Optional[HeldRecord], key: Tuple[str, str], ts: Optional[float], pid: str, tid: str, ctx: object,
        msg: str, line: str, lineno: int,
    ) -> List[Event]:
        m = ADDING_DEAD.match(msg)
        fields = context_fields(ctx)
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
        self._hold(key, HeldRecord(dead, line, lineno))
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
            msg = _with_readable_downtime(msg)
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
        if body.startswith(CRASH):
            crash = Process(
                ts=ts_hint if ts_hint is not None else self.last_ts, source=self.source, line=lineno, raw=line,
                component="sidekiq", state="crash", pid=self._last_pid, message=body,
            )
            self._open = HeldRecord(crash, line, lineno)
            self._booting.pop(self._last_pid, None)
            return NOTHING
        if not self._text_open:
            self.unparsed += 1
        return NOTHING


DOWNTIME = re.compile(r"([\d.]+) sec downtime")


def _with_readable_downtime(msg: str) -> str:
    """``Redis is online, 12.3 sec downtime`` as is; an unreadable or unbounded downtime
    ("1.2.3", 400 digits) is dropped from the message (the raw line keeps it), so whoever
    reads the number back out of the message gets a finite float or no number."""
    m = DOWNTIME.search(msg)
    if m is None:
        return msg
    if bounded_float(m[1]) is None:
        return "Redis is online"
    return f"Redis is online, {m[1]} sec downtime"
