"""Puma's own log (its stdout/stderr): lifecycle lines and the errors Puma itself reports.

Matched shapes (puma/puma ``lib/puma/runner.rb``, ``cluster.rb``, ``single.rb``, ``launcher.rb``,
``log_writer.rb``, ``error_logger.rb``, ``thread_pool.rb``, v3 … v7; cluster mode prefixes ``[pid] ``):

    Puma starting in cluster mode...                        -> Process boot (held until the header ends)
    * Puma version: 6.4.2 (ruby 3.3.0-p0) ("The Eagle of Durango")   /  * Version 3.12.0 (ruby …), codename: …
    *  Min threads: 5  /  * Min threads: 5, max threads: 5  /  *      Workers: 2  /  * Listening on http://0.0.0.0:3000
    Use Ctrl-C to stop
    [14944] - Worker 0 (PID: 18138) booted in 0.0s, phase: 0           -> Process worker_boot (pid = the worker)
    [14944] ! Terminating timed out worker (Worker 0 failed to check in within 60 seconds): 5678   -> worker_timeout
    [14944] ! Terminating timed out worker: 19785                                                   (≤ 5.x)
    - Gracefully stopping, waiting for requests to finish   /  - Gracefully shutting down workers...  -> shutdown
    === puma shutdown: 2024-05-01 12:00:00 +0000 ===        /  - Goodbye!                              -> stopped
    ERROR: No application configured, nothing to run                                   -> Error
    Error reached top of thread-pool: boom (RuntimeError)                               -> Error
    2024-05-01 12:00:00 +0000 Rack app: #<RuntimeError: boom>  + request/headers/backtrace lines -> Error
    ActiveRecord::ConnectionTimeoutError: could not obtain …  + backtrace              -> Error
    /app/config.ru:3:in 'block in <main>': boom (RuntimeError)  + "\tfrom …" frames     -> Error

Puma's lines carry no time: events take the last time seen (``=== puma …: <time> ===``,
an error dump's own time), else the envelope's.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

from agent.events import Error, Event, Process
from agent.parsers.base import NOTHING, Parser, strip_ansi
from agent.parsers.numbers import safe_iso

PID_PREFIX = re.compile(r"\[(\d+)\] ")
STARTING = re.compile(r"Puma starting in (\w+) mode")
HEADER_VALUE = re.compile(r"\*\s+(Puma version|Version|Min threads|Max threads|Environment|Master PID|PID|Workers|Process workers|Listening on)[: ]\s*(.*)")
OLD_THREADS = re.compile(r"Min threads: (\d+), max threads: (\d+)")
WORKER_BOOTED = re.compile(r"- Worker (\d+) \((?:PID|pid): (\d+)\) booted")
TIMED_OUT = re.compile(r"! Terminating timed out worker(?: \((.*)\))?: (\d+)")
STAMP = re.compile(r"=== puma (startup|shutdown): (.*) ===")
TOP_OF_POOL = re.compile(r"Error reached top of thread-pool: (.*) \(((?:[A-Z]\w*::)*[A-Z]\w*)\)$")
DUMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})(?: ([^#]*?))?:? #<((?:[A-Z]\w*::)*[A-Z]\w*)(?:: (.*))?>$")
CLASS_MESSAGE = re.compile(r"((?:[A-Z]\w*::)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception|Interrupt|Timeout))(?: \((.*)\))?: (.+)")
UNCAUGHT = re.compile(r"(\S+:\d+:in [`'][^']*'): (.*) \(((?:[A-Z]\w*::)*[A-Z]\w*)\)$")
UNABLE_TO_LOAD = re.compile(r"! Unable to load application: ((?:[A-Z]\w*::)*[A-Z]\w*): (.*)")
FRAME = re.compile(r"\s*(?:from )?(?:[\w.-]+ \([\w.]+\) )?[^\s:]+:\d+(?::in |$)")
# lines of Puma's own that carry nothing we keep, but prove the file is Puma's
KNOWN_PREFIXES = (
    "* ", "*  ", "Use Ctrl-C to stop", "- Worker ", "- Spawned worker", "- Stopping ", "- Starting phased", "- TERM sent",
    "- KILL sent", "+ Changing to", "- All workers reached", "! WARNING", "! Running Puma", "! Consider", "! Set the",
    "! reaped unknown child", "! Out-of-sync worker", "! Cancelled waiting", "Early termination of worker", "Exiting",
    "=> Booting Puma", "=> Rails ", "=> Run `", "Detected force shutdown", "Master seems to have exited",
    "- Culling", "- Workers to cull",
)
SHUTDOWN_PREFIXES = ("- Gracefully stopping", "- Gracefully shutting down workers", "* Stopping immediately")
CRASH_PREFIXES = ("! Detected parent died", "! Complete inability to spawn new workers")
DUMP_DETAIL = ("Handling request {", "Headers: ", "Body: ", "bundler: failed to load command")
MAX_BACKTRACE = 20
MAX_RECORD_LINES = 80


class PumaParser(Parser):
    """Lifecycle (boot, worker boot/timeout, shutdown) and errors from Puma's stdout/stderr."""

    name = "puma"
    description = "Puma server log (boot/worker/shutdown lines, thread-pool and Rack errors)"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._boot: Optional[Process] = None
        self._boot_info: Dict[str, str] = {}
        self._boot_lines: List[str] = []
        self._error: Optional[Error] = None
        self._error_lines: List[str] = []
        self._frames: List[str] = []
        self._stopping = False  # a shutdown was reported since the last boot

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        seen = hits = 0
        for line in lines:
            line = strip_ansi(line)
            if not line.strip():
                continue
            seen += 1
            m = PID_PREFIX.match(line)
            text = line[m.end():] if m else line
            if _is_puma_line(text):
                hits += 1
        return hits / seen if seen else 0.0

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        if ts_hint is not None:
            self.last_ts = ts_hint
        if "\x1b" in line:
            line = strip_ansi(line)
        pid = ""
        text = line
        if line[:1] == "[":
            m = PID_PREFIX.match(line)
            if m is not None:
                pid, text = m[1], line[m.end():]
        out: List[Event] = []
        if self._error is not None:
            if self._absorb(text, line):
                return NOTHING
            out.append(self._release_error())
        if self._boot is not None:
            if text.startswith("*") or text.startswith("=> ") or not text.strip():
                self._header(text, line)
                return out or NOTHING
            out.append(self._release_boot())
        more = self._line(text, line, lineno, pid)
        if more is not None:
            out.append(more)
        return out or NOTHING

    def finish(self) -> List[Event]:
        out: List[Event] = []
        if self._error is not None:
            out.append(self._release_error())
        if self._boot is not None:
            out.append(self._release_boot())
        return out

    # -- one line ----------------------------------------------------------------------

    def _line(self, text: str, line: str, lineno: int, pid: str) -> Optional[Event]:
        if not text.strip():
            return None
        first = text[:1]
        if first == "P":
            m = STARTING.match(text)
            if m is not None:
                self._stopping = False
                self._boot = Process(ts=self.last_ts, source=self.source, line=lineno, raw=line, component="puma",
                                     state="boot", pid=pid)
                self._boot_info = {"mode": m[1]}
                self._boot_lines = [line]
                return None
        elif first == "-":
            m = WORKER_BOOTED.match(text)
            if m is not None:
                return self._process("worker_boot", m[2], text, line, lineno)
            if text.startswith(SHUTDOWN_PREFIXES):
                return self._shutdown(pid, text, line, lineno)
            if text.startswith("- Goodbye!"):
                return self._process("stopped", pid, text, line, lineno)
        elif first == "!":
            m = TIMED_OUT.match(text)
            if m is not None:
                return self._process("worker_timeout", m[2], text, line, lineno)
            m = UNABLE_TO_LOAD.match(text)
            if m is not None:
                self._open_error(m[1], m[2], "", line, lineno, pid)
                return None
            if text.startswith(CRASH_PREFIXES):
                return self._process("crash", pid, text, line, lineno)
        elif first == "=":
            m = STAMP.match(text)
            if m is not None:
                ts = safe_iso(m[2])
                if ts is not None:
                    self.last_ts = ts
                return self._shutdown(pid, text, line, lineno) if m[1] == "shutdown" else None
        elif first == "E":
            if text.startswith("ERROR: "):
                return self._error_event("", text[7:], "ERROR", line, lineno, pid)
            m = TOP_OF_POOL.match(text)
            if m is not None:
                return self._error_event(m[2], m[1], "ERROR", line, lineno, pid)
        elif first.isdigit():
            m = DUMP.match(text)
            if m is not None:
                ts = safe_iso(m[1])
                if ts is not None:
                    self.last_ts = ts
                self._open_error(m[3], m[4] or "", "", line, lineno, pid)
                return None
        if ": " in text:
            m = CLASS_MESSAGE.match(text) if first.isupper() else None
            if m is not None:
                self._open_error(m[1], m[3], "", line, lineno, pid)
                return None
            m = UNCAUGHT.match(text) if ":in " in text else None  # Ruby's report of an uncaught exception
            if m is not None:
                self._open_error(m[3], m[2], m[1], line, lineno, pid)
                return None
        if not text.startswith(KNOWN_PREFIXES) and not text.startswith(SHUTDOWN_PREFIXES):
            self.unparsed += 1
        return None

    def _process(self, state: str, pid: str, text: str, line: str, lineno: int) -> Process:
        return Process(ts=self.last_ts, source=self.source, line=lineno, raw=line, component="puma", state=state,
                       pid=pid, message=text.strip())

    def _shutdown(self, pid: str, text: str, line: str, lineno: int) -> Optional[Process]:
        if self._stopping:
            return None  # "Gracefully stopping" then "=== puma shutdown" is one shutdown
        self._stopping = True
        return self._process("shutdown", pid, text, line, lineno)

    def _error_event(self, error_class: str, message: str, level: str, line: str, lineno: int, pid: str) -> Error:
        return Error(ts=self.last_ts, source=self.source, line=lineno, raw=line, origin="puma", error_class=error_class,
                     message=message, level=level, pid=pid)

    # -- the boot header ---------------------------------------------------------------

    def _header(self, text: str, line: str) -> None:
        if len(self._boot_lines) < MAX_RECORD_LINES:
            self._boot_lines.append(line)
        m = HEADER_VALUE.match(text)
        if m is None:
            return
        key, value = m[1], m[2].strip()
        old = OLD_THREADS.match(text[2:])
        if old is not None:
            self._boot_info["min_threads"], self._boot_info["max_threads"] = old[1], old[2]
            return
        if key == "Listening on":
            self._boot_info.setdefault("listening", value)
            return
        if key in ("Puma version", "Version"):
            key, value = "Version", value.split(" ", 1)[0].rstrip(",")
        elif key in ("Master PID", "PID") and self._boot is not None and not self._boot.pid:
            self._boot.pid = value
        name = {"Process workers": "workers"}.get(key, key.lower().replace(" ", "_"))
        self._boot_info[name] = value

    def _release_boot(self) -> Process:
        boot = self._boot
        assert boot is not None
        self._boot = None
        boot.raw = "\n".join(self._boot_lines)
        # "mode=cluster version=6.4.2 min_threads=0 max_threads=5 workers=2 …": facts for the pool detector
        boot.message = " ".join(f"{k}={v}" for k, v in self._boot_info.items() if " " not in v)
        return boot

    # -- errors with a backtrace ---------------------------------------------------------

    def _open_error(self, error_class: str, message: str, frame: str, line: str, lineno: int, pid: str) -> None:
        self._error = self._error_event(error_class, message, "ERROR", line, lineno, pid)
        self._error_lines = [line]
        self._frames = [frame] if frame else []

    def _absorb(self, text: str, line: str) -> bool:
        """True when ``text`` continues the held error (detail, frame, or Ruby's own report of it)."""
        err = self._error
        assert err is not None
        m = UNCAUGHT.match(text)  # "! Unable to load application" is followed by Ruby's report of the same error
        if m is not None:
            if m[3] != err.error_class or m[2] != err.message:
                return False
            self._frame(m[1])
        elif text.startswith(DUMP_DETAIL):
            pass
        elif FRAME.match(text):
            frame = text.strip()
            self._frame(frame[5:] if frame.startswith("from ") else frame)
        else:
            return False
        self._keep(line)
        return True

    def _frame(self, frame: str) -> None:
        if len(self._frames) < MAX_BACKTRACE:
            self._frames.append(frame)

    def _keep(self, line: str) -> None:
        if len(self._error_lines) < MAX_RECORD_LINES:
            self._error_lines.append(line)

    def _release_error(self) -> Error:
        err = self._error
        assert err is not None
        self._error = None
        err.raw = "\n".join(self._error_lines)
        err.backtrace = tuple(self._frames)
        return err


def _is_puma_line(text: str) -> bool:
    if text.startswith(KNOWN_PREFIXES) or text.startswith(SHUTDOWN_PREFIXES) or text.startswith(CRASH_PREFIXES):
        return not text.startswith("* ") or HEADER_VALUE.match(text) is not None or text.startswith(
            ("* Preloading", "* Phased restart", "* Starting control", "* Daemonizing", "* Restarting", "* Ruby version",
             "*     Restarts", "* Pruning Bundler", "* phased-restart")
        )
    return (
        STARTING.match(text) is not None
        or TIMED_OUT.match(text) is not None
        or STAMP.match(text) is not None
        or text.startswith(("- Goodbye!", "Error reached top of thread-pool", "ERROR: ", "! Unable to load application"))
    )
