"""One open log file being tailed: complete lines out of raw reads, into its own parser.

The format is sniffed from the file's first lines with ``agent.parsers.choose``
(so ``run`` and ``scan`` read a file the same way), whatever the position tailing
starts at. A new file too short to tell waits for more lines (up to ``SNIFF_LINES``).

``offset`` only ever points just past a complete line (or into an over-long line
whose rest is being skipped, flagged by ``skipping``): a partial last line is kept
in ``pending`` until its newline arrives, so a checkpoint never cuts a line in two.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from itertools import accumulate
from operator import add
from typing import Deque, List, Optional, Tuple

from agent.events import Event
from agent.parsers import Parser
from agent.parsers.choose import SNIFF_LINES, choose_format
from agent.sources.checkpoint import FINGERPRINT_BYTES, FileIdentity, Position
from agent.sources.files import open_regular
from agent.sources.lasttime import LastTime

log = logging.getLogger("railwatch.tail")

CHUNK = 256 * 1024
SNIFF_BYTES = 64 * 1024
REPLAY_LINES = 512  # lines re-read (quietly) before a checkpoint on restart…
REPLAY_BYTES = 2 << 20  # …but never more bytes than this
LINE_COUNT_LIMIT = 512 << 20  # starting at the end of a bigger file, line numbers start at 0
SNIFF_WAIT_S = 30.0  # a new file too short to tell its format is declared unknown after this


def open_file(path: str, forced_format: Optional[str], ctx, pos: Optional[Position], start: str, replay: bool = True) -> "TailedFile":  # type: ignore[no-untyped-def]
    """Open ``path`` at ``pos`` (a checkpoint), else at its end or beginning per ``start``.

    Raises ``NotRegularFile`` for a FIFO, device or socket (a FIFO cannot block the open),
    and EMFILE when the tailer's share of file descriptors is used up (``TailContext``)."""
    ctx.reserve_descriptor()
    fd = open_regular(path)
    try:
        st = os.fstat(fd)
        ident = FileIdentity.of_fd(fd, st)
        quiet, skip, restored = 0, False, None
        if pos is not None and pos.offset <= st.st_size:
            if replay and 0 <= pos.replay_offset < pos.offset:
                offset, lineno, quiet, restored = pos.replay_offset, pos.replay_lineno, pos.lineno, pos
            else:
                offset, lineno, skip = pos.offset, pos.lineno, pos.skip
        elif start == "end":
            offset, skip = _line_start_before(fd, st.st_size)
            lineno = _count_lines(fd, offset)
        else:
            offset, lineno = 0, 0
        return TailedFile(path, fd, ident, offset, lineno, forced_format, ctx, st.st_size, quiet, skip, restored)
    except BaseException:
        os.close(fd)
        raise


class TailedFile:
    def __init__(
        self, path: str, fd: int, identity: FileIdentity, offset: int, lineno: int, forced_format: Optional[str],
        ctx, size: int, quiet_until: int = 0, skipping: bool = False, restored: Optional[Position] = None,  # type: ignore[no-untyped-def]
    ) -> None:
        self.path = path
        self.fd = fd
        ctx.open_files += 1
        self.identity = identity
        self.ctx = ctx
        self.max_line = ctx.max_line
        self.offset = offset
        self.lineno = lineno
        self.pending = b""
        self.skipping = skipping
        self.quiet_until = quiet_until  # lines up to here were delivered before the restart
        self._restored = restored
        self.ring: Deque[Tuple[int, int]] = deque(maxlen=REPLAY_LINES)  # (lineno, start offset)
        self.forced_format = forced_format
        self.parser: Optional[Parser] = None
        self.envelope = None
        self.format = ""  # "" until sniffed, "unknown" when no format fits
        self._sniff_since: Optional[float] = None
        self.times = LastTime()  # this file's untimed lines take its last time seen
        self.year = time.gmtime(ctx.clock.now()).tm_year  # for syslog envelopes, which carry no year
        self.lines = 0
        self.cut_lines = 0
        self.unknown_lines = 0
        self._unparsed_base = 0
        self._unparsed_prev = 0
        self.last_size = size
        self.retired_at = 0.0
        self.last_growth = ctx.clock.monotonic()
        self._fed_since_release = 0  # lines the parser got since it last held nothing for sure
        os.lseek(fd, offset, os.SEEK_SET)

    @property
    def read_pos(self) -> int:
        return self.offset + len(self.pending)

    # ----- format ------------------------------------------------------------------------
    def _choose_parser(self) -> bool:
        head = os.pread(self.fd, SNIFF_BYTES, 0)
        complete = head.split(b"\n")[:-1]
        sample = [l.decode("utf-8", "replace").rstrip("\r") for l in complete[:SNIFF_LINES]]
        parser_type, envelope = choose_format([l for l in sample if l.strip()], self.forced_format)
        if parser_type is not None:
            self.parser = parser_type(self.path)
            self.envelope = envelope
            self.format = parser_type.name
            return True
        now = self.ctx.clock.monotonic()
        if self._sniff_since is None:
            self._sniff_since = now
        waited_enough = complete and now - self._sniff_since >= SNIFF_WAIT_S  # a few odd lines that never grow
        if len(complete) >= SNIFF_LINES or len(head) >= SNIFF_BYTES or waited_enough:
            self.format = "unknown"
            log.warning("%s: unknown log format (not Rails, lograge, Sidekiq, Puma, Postgres…); its lines are counted, not parsed", self.path)
            return True
        return False  # too few lines to tell yet

    # ----- reading -----------------------------------------------------------------------
    def read(self, budget: int) -> Tuple[int, bool]:
        """Read up to ``budget`` bytes; returns (bytes read, reached end of file)."""
        if not self.format and not self._choose_parser():
            return 0, True
        n = 0
        while n < budget:
            chunk = os.read(self.fd, max(min(CHUNK, budget - n), 4096))
            if not chunk:
                break
            n += len(chunk)
            self._take(chunk)
        else:  # the budget ran out before the end of the file
            if n:
                self.last_growth = self.ctx.clock.monotonic()
            return n, False
        if n:
            self.last_growth = self.ctx.clock.monotonic()
        return n, True

    def release_if_idle(self, idle_s: float) -> None:
        """The file has not grown for ``idle_s``: deliver the records the parser still holds.

        Parsers release a record (a backtrace) when a later line shows it is complete; on a
        quiet log that line may not come for minutes. Nothing is held after this, so the
        re-read window of the next checkpoint starts here.
        """
        if not self._fed_since_release or self.parser is None or self.lineno < self.quiet_until:
            return
        if self.ctx.clock.monotonic() - self.last_growth < idle_s:
            return
        self._fed_since_release = 0
        self._deliver(list(self.parser.finish()))
        self.ring.clear()
        self._restored = None

    def _take(self, chunk: bytes) -> None:
        if self.skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                self.offset += len(chunk)
                return
            self.skipping = False
            self.offset += nl + 1
            chunk = chunk[nl + 1 :]
        data = self.pending + chunk if self.pending else chunk
        last = data.rfind(b"\n")
        if last < 0:
            rest = data
        else:
            rest = data[last + 1 :]
            self._lines(data[:last])
        if len(rest) > self.max_line:  # no newline in sight: cut here, skip to the newline
            start = self.offset
            self.offset += len(rest)
            self.skipping = True
            self._line(rest, start)
            rest = b""
        self.pending = rest

    def _lines(self, body: bytes) -> None:
        """The complete lines ``body`` holds (each was followed by a newline), decoded and parsed as
        one chunk: one decode and split, the ring and counters once, the parser's ``feed_lines``
        (as scan's reader does). Text, numbers and offsets are the same as ``_line`` per line would
        make them (a newline byte is never part of a UTF-8 sequence, so one decode replaces invalid
        bytes as per-line decodes do); a chunk with a line to cut or a line re-read quietly after a
        restart goes line by line."""
        raws = body.split(b"\n")
        n = len(raws)
        first = self.lineno + 1
        start = self.offset
        if first <= self.quiet_until or (len(body) > self.max_line and max(map(len, raws)) > self.max_line):
            for raw in raws:  # rare: re-reading before the last checkpoint, or a line to cut
                line_start = self.offset
                self.offset += len(raw) + 1
                self._line(raw, line_start)
            return
        end = start + len(body) + 1
        self.offset = end
        self.lineno += n
        self.lines += n
        # (lineno, start offset) of the last REPLAY_LINES lines, computed in C: a line starts after
        # the lengths and newlines of the lines before it
        kept = raws[-REPLAY_LINES:] if n > REPLAY_LINES else raws
        k = len(kept)
        base = end - sum(map(len, kept)) - k
        self.ring.extend(zip(range(first + n - k, first + n), map(add, accumulate(map(len, kept), initial=0), range(base, base + k))))
        parser = self.parser
        if parser is None:
            self.unknown_lines += n
            return
        text = body.decode("utf-8", "replace")
        lines = text.split("\n")
        if "\r" in text:
            lines = [l[:-1] if l[-1:] == "\r" else l for l in lines]
        self._fed_since_release += n
        envelope = self.envelope
        if envelope is None:
            events = parser.feed_lines(lines, first)
        else:
            events = []
            split, year, feed = envelope.split, self.year, parser.feed
            for lineno, line in enumerate(lines, first):
                inner, hint = split(line, year)
                more = feed(inner, lineno, hint)
                if more:
                    events.extend(more)
        self._deliver(events)

    def _line(self, raw: bytes, start: int) -> None:
        self.lineno += 1
        lineno = self.lineno
        self.ring.append((lineno, start))
        cut = len(raw) > self.max_line
        text = (raw[: self.max_line] if cut else raw).decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        quiet = lineno <= self.quiet_until
        if not quiet:
            self.lines += 1
            self.cut_lines += cut
        parser = self.parser
        if parser is None:
            self.unknown_lines += not quiet
            return
        hint = None
        if self.envelope is not None:
            text, hint = self.envelope.split(text, self.year)
        self._fed_since_release += 1
        events = parser.feed(text, lineno, hint)
        if quiet and lineno == self.quiet_until:
            self._unparsed_base = parser.unparsed
            self._restored = None
        self._deliver(events, quiet)

    def _deliver(self, events: List[Event], quiet: bool = False) -> None:
        self.times.fill(events)
        if not quiet:
            for event in events:
                self.ctx.on_event(event)

    # ----- state changes -----------------------------------------------------------------
    def finish(self) -> None:
        """End of this file for good: its partial last line and held records are delivered."""
        if self.pending and not self.skipping:
            line, self.pending = self.pending, b""
            start = self.offset
            self.offset += len(line)
            self._line(line, start)
        if self.parser is not None:
            self._deliver(list(self.parser.finish()), self.lineno <= self.quiet_until)

    def restart_from_zero(self, finish_parser: bool) -> None:
        """The file was truncated: read it again from the start with a fresh parser."""
        if self.parser is not None:
            if finish_parser:
                self._deliver(list(self.parser.finish()))
            self._unparsed_prev += self.parser.unparsed - self._unparsed_base
            self._unparsed_base = 0
            self.parser = type(self.parser)(self.path)
        self.offset = self.lineno = 0
        self.pending = b""
        self.skipping = False
        self.quiet_until = 0
        self._restored = None
        self.ring.clear()
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.identity = FileIdentity.of_fd(self.fd)
        self.last_size = os.fstat(self.fd).st_size

    def hand_parser_to(self, other: "TailedFile") -> None:
        """``other`` (the copy made by copytruncate) continues our record stream exactly."""
        other.parser, other.envelope, other.format = self.parser, self.envelope, self.format
        other.times = LastTime(self.times.ts)
        other._unparsed_base = self._unparsed_base
        self._unparsed_base = self.parser.unparsed if self.parser is not None else 0

    def refresh_identity(self) -> None:
        if self.identity.fp_len < FINGERPRINT_BYTES and self.last_size > self.identity.fp_len:
            self.identity = self.identity.grown(self.fd)

    # ----- reporting ---------------------------------------------------------------------
    def position(self) -> Position:
        if self._restored is not None and self.lineno < self._restored.lineno:
            return self._restored  # still re-reading the window before the last checkpoint
        replay_offset, replay_lineno = self.offset, self.lineno
        floor = self.offset - REPLAY_BYTES
        for lineno, start in self.ring:
            if start >= floor:
                replay_offset, replay_lineno = start, lineno - 1
                break
        i = self.identity
        return Position(i.dev, i.ino, i.fp, i.fp_len, self.offset, self.lineno, replay_offset, replay_lineno, self.skipping, self.path)

    def unparsed_count(self) -> int:
        parsed = self.parser.unparsed - self._unparsed_base if self.parser is not None else 0
        return self.unknown_lines + self._unparsed_prev + max(parsed, 0)

    def fstat(self) -> Optional[os.stat_result]:
        try:
            return os.fstat(self.fd)
        except OSError:
            return None

    def lag_bytes(self) -> int:
        try:
            return max(os.fstat(self.fd).st_size - self.offset, 0)
        except OSError:
            return 0

    def close(self) -> None:
        if self.fd < 0:
            return
        self.ctx.open_files -= 1
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1


def _line_start_before(fd: int, size: int) -> Tuple[int, bool]:
    """Where to start "at the end": after the last newline, so a line being written is read whole."""
    if size == 0:
        return 0, False
    tail = os.pread(fd, min(size, 64 * 1024), max(size - 64 * 1024, 0))
    nl = tail.rfind(b"\n")
    if nl < 0:
        # one unfinished line: read it whole if we have its start, else skip to its newline
        return (0, False) if size <= len(tail) else (size, True)
    return size - len(tail) + nl + 1, False


def _count_lines(fd: int, upto: int) -> int:
    if upto > LINE_COUNT_LIMIT:
        return 0  # evidence line numbers will count from here; not worth reading gigabytes for
    count = pos = 0
    while pos < upto:
        chunk = os.pread(fd, min(1 << 20, upto - pos), pos)
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count
