"""Sidekiq failures: holding a ``fail`` until the error handler's records have told what failed.

A failure is several records of one thread: ``fail`` (INFO, with the job context), maybe
``Adding dead <Class> job <jid>``, then the error handler's WARN records without class/jid:
the job hash (JSON, or a Ruby ``inspect`` in 4.x), ``ErrorClass: message`` and the backtrace
(one record: only its first line has the prefix). 8.x logs one INFO record instead:
``context=Job raised exception job={…}: message (ErrorClass)``. ``SidekiqErrorGrouping`` holds the
``fail`` per (pid, tid), attaches those records to it, and emits it once the backtrace ended, the
thread logged something else, the record went stale, or at ``finish()``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from agent.events import Error, Event, Job, Process
from agent.parsers.base import NOTHING, Parser
from agent.parsers.numbers import bounded_int
from agent.parsers.sidekiq_lines import ERROR_LINE, ERROR_TAIL, LEAD_FRAME, WRAPPERS, is_frame, job_class_of, job_fields, job_hash

MAX_FRAMES = 20  # backtrace head kept in the event
MAX_RECORD_LINES = 60  # raw lines kept per record (the rest is counted as parsed, not kept)
MAX_MESSAGE_LINES = 20
STALE_AFTER_LINES = 400  # a held failure is emitted once this many lines passed without news for it


class HeldRecord:
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

    def add_frame_line(self, line: str, lineno: int) -> None:
        """A backtrace line (``is_frame``) of this record: most lines of a failing log, so past
        MAX_FRAMES (and MAX_RECORD_LINES) nothing is built for it."""
        lines = self.lines
        if len(lines) < MAX_RECORD_LINES:
            lines.append(line)
        self.last_lineno = lineno
        self.has_frames = True
        event = self.event
        if isinstance(event, (Job, Error)) and len(event.backtrace) < MAX_FRAMES:
            body = line.strip()
            event.backtrace = event.backtrace + ((body[5:] if body.startswith("from ") else body).strip(),)


class SidekiqErrorGrouping(Parser):
    """The held records of a Sidekiq log, per (pid, tid), and how error-handler records join them.

    ``SidekiqParser`` builds on it: it decides which line is which, this class keeps what a
    failure is made of until it is complete.
    """

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._records: "OrderedDict[Tuple[str, str], HeldRecord]" = OrderedDict()
        self._open: Optional[HeldRecord] = None  # receives the unprefixed lines that follow (backtrace, message)
        self._text_open = False  # a multi-line WARN text (heredoc) is running: its lines are not noise
        self._terminating: Dict[str, bool] = {}  # pids that logged "Terminating N busy threads"
        self._jid_class: "OrderedDict[str, str]" = OrderedDict()  # failed jobs' classes, for wrapper-named dead lines

    def _hold(self, key: Tuple[str, str], rec: HeldRecord) -> None:
        self._records[key] = rec
        self._records.move_to_end(key)

    def _error(self, ts: Optional[float], pid: str, level: str, line: str, lineno: int) -> Error:
        return Error(ts=ts, source=self.source, line=lineno, raw=line, origin="sidekiq", level=level, pid=pid)

    def _take_line(
        self, rec: Optional[HeldRecord], key: Tuple[str, str], complete: bool, ts: Optional[float], pid: str, level: str,
        line: str, lineno: int,
    ) -> Tuple[HeldRecord, List[Event]]:
        """Add an error-handler line to the thread's held record, or start one when there is
        none or the held one is ``complete`` (this line belongs to another failure)."""
        out: List[Event] = NOTHING
        if rec is not None and complete:
            out = self._release(key)
            rec = None
        if rec is None:
            rec = HeldRecord(self._error(ts, pid, level, line, lineno), line, lineno)
            self._hold(key, rec)
        else:
            rec.add_line(line, lineno)
        return rec, out

    @staticmethod
    def _other_job(rec: Optional[HeldRecord], jid: str) -> bool:
        """Is the held record complete, or about another job than ``jid``?"""
        return rec is not None and (rec.has_error or bool(jid and getattr(rec.event, "jid", "") not in ("", jid)))

    # ----- attaching the error handler's records ------------------------------------------
    def _error_record(
        self, rec: Optional[HeldRecord], key: Tuple[str, str], ts: Optional[float], pid: str, level: str, msg: str, line: str, lineno: int
    ) -> Optional[List[Event]]:
        """Attach a 4.x-7.x error-handler record (job hash, ``Class: message``, backtrace); None if it is none."""
        if msg[:1] == "{":
            if '"context"' not in msg[:60] and ":context" not in msg[:60]:
                return None
            fields = job_hash(msg)
            jid = str(fields.get("jid") or "")
            rec, out = self._take_line(rec, key, self._other_job(rec, jid), ts, pid, level, line, lineno)
            self._apply_job_hash(rec.event, fields)
            return out
        if is_frame(msg):
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
        rec, out = self._take_line(rec, key, rec is not None and rec.has_error, ts, pid, level, line, lineno)
        self._set_error(rec, m.group(1), m.group(2))
        self._open = rec  # a multi-line message continues on unprefixed lines
        return out

    def _error_context_8(
        self, rec: Optional[HeldRecord], key: Tuple[str, str], ts: Optional[float], pid: str, fields: Dict[str, object],
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
        rec, out = self._take_line(rec, key, self._other_job(rec, jid), ts, pid, "INFO", line, lineno)
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

    @staticmethod
    def _apply_job_hash(event: Event, fields: Dict[str, object]) -> None:
        queue = fields.get("queue")
        retry_count = fields.get("retry_count")
        if isinstance(event, Job):
            if queue and not event.queue:
                event.queue = str(queue)
            if retry_count is not None:
                count = bounded_int(retry_count)
                if count is not None:
                    event.retry_count = count
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
    def _set_error(rec: HeldRecord, error_class: str, message: str) -> None:
        rec.has_error = True
        event = rec.event
        if isinstance(event, Job):
            event.error_class, event.error_message = error_class or event.error_class, message
        elif isinstance(event, Error):
            event.error_class, event.message = error_class, message

    @staticmethod
    def _add_frame(rec: HeldRecord, frame: str) -> None:
        rec.has_frames = True
        event = rec.event
        if isinstance(event, (Job, Error)) and len(event.backtrace) < MAX_FRAMES:
            event.backtrace = event.backtrace + (frame.strip(),)

    def _continue(self, rec: HeldRecord, line: str, lineno: int) -> bool:
        """An unprefixed line after a record: a frame, or more of the error message. False if neither."""
        if is_frame(line):
            rec.add_frame_line(line, lineno)  # (a crash's frames only make its record complete)
            return True
        event = rec.event
        if isinstance(event, Process):  # a crash: "SignalException: SIGHUP", then its backtrace
            body = line.strip()
            if rec.has_frames or rec.has_error or not ERROR_LINE.match(body):
                return False
            rec.has_error = True
            event.message = body
            rec.add_line(line, lineno)
            return True
        if rec.has_error and not rec.has_frames and len(rec.lines) < MAX_MESSAGE_LINES:
            rec.add_line(line, lineno)
            if isinstance(event, Job):
                event.error_message += "\n" + line
            elif isinstance(event, Error):
                event.message += "\n" + line
            return True
        return False

    # ----- releasing held records --------------------------------------------------------
    def _release(self, key: Tuple[str, str]) -> List[Event]:
        rec = self._records.pop(key, None)
        if rec is None:
            return NOTHING
        if self._open is rec:
            self._open = None
        return self._emit(rec)

    def _release_record(self, rec: HeldRecord) -> List[Event]:
        for key, held in self._records.items():
            if held is rec:
                return self._release(key)
        return self._emit(rec)

    def _emit(self, rec: HeldRecord) -> List[Event]:
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
