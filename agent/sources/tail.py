"""Following live log files through rotation, truncation and restarts.

``Tailer`` follows paths and globs. Each path is a ``TailedLog`` holding the file now at
that path plus rotated-away files it is still finishing; each open file is a
``TailedFile`` with its own parser, sniffed the way ``scan`` does it (agent.parsers.choose).

What happens to a path, checked on every poll (a watchdog event only means "look again";
without inotify the daemon's poll interval does the same):

    inode at the path changed       rename-and-create rotation, or delete and recreate: the
                                    old file is read to its end (and for ``ROTATE_GRACE_S``
                                    more, for late writes by the app) before it is closed;
                                    the new file is read from 0
    size < what was read, or the    copytruncate / truncation: unread lines are taken from
    first bytes changed             the copy (a sibling whose first bytes match) if there is
                                    one; the file is then read from 0
    path missing                    the open file is finished; a file that appears later is
                                    read from 0
    a new path matches a glob       read from 0, unless it is a file already followed under
                                    another name (a rotated file matched by ``log/*``)

A parser holds a record (a backtrace) until a later line shows it is complete; when a log
goes quiet for ``IDLE_RELEASE_S`` its held records are delivered anyway, so an incident
does not wait for the next request. Offsets only move past complete lines; checkpoints
(``positions()``) are taken by the daemon after the lines' events were handed to the
detectors; restarting from one re-reads a window of earlier lines quietly (see
agent.sources.checkpoint), and a log rotated more than once meanwhile has the files
rotated in since the checkpoint read whole.
Lines longer than ``max_line`` bytes are cut there and the rest is skipped, never buffered.

Inputs: only regular files are followed. A FIFO, device or socket at a path is refused
with one warning (``refused_sources()``), never opened for reading (a FIFO would block,
/dev/zero never ends). A path (or a glob's directory) that does not exist is a warning at
start and is listed by ``missing_sources()`` until it appears; it is then read from its
start. File descriptors: the tailer keeps ``RESERVED_FDS`` of the process's limit free for
the rest of the agent; beyond that (or on EMFILE) the files already open are followed,
the others wait for a free descriptor, with one warning for the whole tailer.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import resource
import stat
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from agent.clock import Clock
from agent.events import Event
from agent.sources.checkpoint import (
    COMPRESSED, LogCheckpoint, Position, checkpoint_key, file_stat, find_sibling, head_matches, newer_rotations,
)
from agent.sources.files import NotRegularFile, file_kind
from agent.sources.tailfile import TailedFile, open_file
from agent.sources.watch import Waker

log = logging.getLogger("railwatch.tail")

ROTATE_GRACE_S = 5.0  # a rotated-away file is still read this long after it last grew
RESCAN_S = 1.0  # globs are re-expanded at least this often
IDLE_RELEASE_S = 0.5  # a log quiet this long has its held records (backtraces) delivered
RESERVED_FDS = 64  # descriptors left for the store, sockets, the watcher and bundles


@dataclass(frozen=True)
class TailSpec:
    pattern: str  # a path or a glob
    format: Optional[str] = None  # force a parser instead of sniffing
    start: str = "end"  # where a file seen for the very first time starts: "end" | "beginning"

    @property
    def is_glob(self) -> bool:
        return any(c in self.pattern for c in "*?[")


@dataclass
class SourceStats:
    path: str
    format: str
    lines: int
    unparsed: int
    cut_lines: int
    lag_bytes: int
    lag_seconds: float  # how long the source has been behind (0 when caught up)
    stalled: bool  # behind and nothing read for ``stall_after_s``
    files: int  # open files (current + rotated ones being finished)


class TailContext:
    """What every tailed file shares: the clock, limits and where events go."""

    def __init__(self, clock: Clock, on_event: Callable[[Event], None], max_line: int) -> None:
        self.clock = clock
        self.on_event = on_event
        self.max_line = max_line
        # files finished under one name that may reappear under another (a glob matching
        # rotated names): (dev, ino) -> their final position, bounded
        self.finished: Dict[Tuple[int, int], Position] = {}
        self.open_files = 0  # TailedFiles open now
        self.max_open = _descriptor_budget()
        self.descriptors_short = False  # warned once: some logs wait for a free descriptor

    def reserve_descriptor(self) -> None:
        """Raise EMFILE before opening one more file past the tailer's descriptor budget."""
        if self.open_files >= self.max_open:
            raise OSError(errno.EMFILE, f"descriptor budget of {self.max_open} open logs reached")

    def out_of_descriptors(self, path: str, exc: OSError) -> None:
        if not self.descriptors_short:
            self.descriptors_short = True
            log.warning(
                "%s: cannot open (%s); following the %d log files already open, others wait for a free "
                "descriptor (raise LimitNOFILE / ulimit -n; this is logged once)", path, exc.strerror or exc, self.open_files,
            )

    def remember_finished(self, pos: Position) -> None:
        self.finished[(pos.dev, pos.ino)] = pos
        if len(self.finished) > 1000:
            self.finished.pop(next(iter(self.finished)))


def _descriptor_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(int(soft) - RESERVED_FDS, 8)


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


class TailedLog:
    """One followed path: the file there now, and rotated-away files being finished."""

    def __init__(self, path: str, spec: TailSpec, ctx: TailContext, checkpoint: LogCheckpoint, initial: bool) -> None:
        self.path = path
        self.spec = spec
        self.ctx = ctx
        self.current: Optional[TailedFile] = None
        self.draining: List[TailedFile] = []
        self.closed_totals = [0, 0, 0]  # lines, unparsed, cut of files already closed
        self.behind_since: Optional[float] = None
        self.last_read = ctx.clock.monotonic()
        self._warned: Set[str] = set()
        self.refused = ""  # why the file at the path is not read (a FIFO, a device…), if so
        self.missing = False  # nothing at the path (noticed at start or since)
        self._restore(checkpoint, initial)

    # ----- opening ---------------------------------------------------------------------
    def _open(self, path: str, pos: Optional[Position], start: str, replay: bool = True) -> Optional[TailedFile]:
        try:
            f = open_file(path, self.spec.format, self.ctx, pos, start, replay)
        except NotRegularFile as exc:
            self._refuse(exc.kind)
            return None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.ctx.out_of_descriptors(path, exc)
            else:
                self._warn(f"{path}: cannot open ({exc.strerror or exc}); will retry")
            return None
        self._warned.discard(path)
        return f

    def _restore(self, ckpt: LogCheckpoint, initial: bool) -> None:
        for pos in ckpt.draining:
            self._resume_elsewhere(pos)
        cur = ckpt.current
        st = file_stat(self.path)
        if st is None or not is_regular(st):
            if cur is not None:
                self._resume_elsewhere(cur)
            if st is None:
                self._gone(at_start=True)
            else:
                self._refuse(file_kind(st.st_mode))
            return
        if cur is not None:
            ident = cur.identity
            if ident.same_inode(st) and st.st_size >= cur.offset and head_matches(self.path, ident):
                self.current = self._open(self.path, cur, "end")
                return
            self._resume_elsewhere(cur)  # rotated (or truncated) while we were down
            self._newer_rotations(ckpt.saved_at, st)
            self.current = self._open(self.path, None, "beginning")
            return
        known = self._known_elsewhere(st)
        if known is not None:
            self.current = self._open(self.path, known, "end")
            return
        self.current = self._open(self.path, None, self.spec.start if initial else "beginning")

    def _resume_elsewhere(self, pos: Position) -> None:
        found = find_sibling(self.path, pos)
        if found is None:
            log.warning("%s: the file last read at byte %d is gone; lines written to it after that are lost", self.path, pos.offset)
            return
        f = self._open(found, pos, "end")
        if f is not None:
            f.retired_at = self.ctx.clock.monotonic()  # the app may still be writing to it
            self.draining.append(f)

    def _newer_rotations(self, saved_at: float, current: os.stat_result) -> None:
        """Rotated files written after the checkpoint (the log rotated more than once while
        we were stopped): read whole, oldest first, before the file now at the path."""
        for candidate in newer_rotations(self.path, saved_at, [current] + [f.fstat() for f in self.draining]):
            f = self._open(candidate, None, "beginning")
            if f is not None:
                f.retired_at = self.ctx.clock.monotonic()
                self.draining.append(f)

    def _known_elsewhere(self, st: os.stat_result) -> Optional[Position]:
        pos = self.ctx.finished.get((st.st_dev, st.st_ino))
        return pos if pos is not None and head_matches(self.path, pos.identity) else None

    # ----- checking ----------------------------------------------------------------------
    def check(self) -> None:
        """Notice rotation, truncation, deletion and (re)creation at the path."""
        st = file_stat(self.path)
        cur = self.current
        if st is None or not is_regular(st):
            if cur is not None:
                self._retire(cur)
            if st is None:
                self._gone(at_start=False)
            else:
                self._refuse(file_kind(st.st_mode))
            return
        if self.missing or self.refused:
            log.info("%s: a regular file is there now; reading it from the start", self.path)
            self.missing, self.refused = False, ""
        if cur is None:
            known = self._known_elsewhere(st)
            self.current = self._open(self.path, known, "end" if known else "beginning")
            return
        if not cur.identity.same_inode(st):
            self._retire(cur)
            self.current = self._open(self.path, None, "beginning")
            return
        if st.st_size < cur.read_pos or (st.st_size != cur.last_size and not cur.identity.head_matches(cur.fd)):
            self._truncated(cur)
        cur.last_size = st.st_size
        cur.refresh_identity()

    def _retire(self, f: TailedFile) -> None:
        f.retired_at = self.ctx.clock.monotonic()
        self.draining.append(f)
        self.current = None

    def _truncated(self, cur: TailedFile) -> None:
        pos = cur.position()
        copy = find_sibling(self.path, pos, by_content_only=True)
        if copy is not None and os.path.getsize(copy) > pos.offset:
            taken = self._open(copy, pos, "end", replay=False)
            if taken is not None:
                cur.hand_parser_to(taken)  # the copy continues the same record stream
                taken.retired_at = self.ctx.clock.monotonic()
                self.draining.append(taken)
        log.info("%s: truncated (copytruncate?); reading it again from the start", self.path)
        cur.restart_from_zero(finish_parser=copy is None)

    # ----- reading -----------------------------------------------------------------------
    def read(self, budget: int) -> Tuple[int, bool]:
        """Read up to ``budget`` bytes; returns (bytes read, caught up with every file)."""
        total = 0
        caught_up = True
        now = self.ctx.clock.monotonic()
        for f in list(self.draining):
            n, at_eof = f.read(budget - total)
            total += n
            if n:
                f.retired_at = now  # still growing: the app has not reopened its log yet
            if at_eof and now - f.retired_at >= ROTATE_GRACE_S:
                self._close(f, finish=True)
            caught_up = caught_up and at_eof
        if self.current is not None and total < budget:
            n, at_eof = self.current.read(budget - total)
            total += n
            caught_up = caught_up and at_eof
            if at_eof:
                self.current.release_if_idle(IDLE_RELEASE_S)
        elif self.current is not None:
            caught_up = False
        if total:
            self.last_read = now
        if caught_up:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now
        return total, caught_up

    def _close(self, f: TailedFile, finish: bool) -> None:
        if finish:
            f.finish()
            self.ctx.remember_finished(f.position())
        for i, n in enumerate((f.lines, f.unparsed_count(), f.cut_lines)):
            self.closed_totals[i] += n
        f.close()
        if f in self.draining:
            self.draining.remove(f)
        if f is self.current:
            self.current = None

    def close(self) -> None:
        """Stop without finishing parsers: held records are re-read after a restart."""
        for f in list(self.draining) + ([self.current] if self.current else []):
            self._close(f, finish=False)

    @property
    def idle(self) -> bool:
        return self.current is None and not self.draining

    # ----- reporting ---------------------------------------------------------------------
    def checkpoint(self) -> LogCheckpoint:
        return LogCheckpoint(
            current=self.current.position() if self.current else None,
            draining=[f.position() for f in self.draining],
        )

    def stats(self, stall_after_s: float) -> SourceStats:
        files = list(self.draining) + ([self.current] if self.current else [])
        lag = sum(f.lag_bytes() for f in files)
        now = self.ctx.clock.monotonic()
        behind = now - self.behind_since if self.behind_since is not None else 0.0
        return SourceStats(
            path=self.path,
            format=self.current.format if self.current else (files[0].format if files else ""),
            lines=self.closed_totals[0] + sum(f.lines for f in files),
            unparsed=self.closed_totals[1] + sum(f.unparsed_count() for f in files),
            cut_lines=self.closed_totals[2] + sum(f.cut_lines for f in files),
            lag_bytes=lag,
            lag_seconds=behind,
            stalled=lag > 0 and now - self.last_read >= stall_after_s,
            files=len(files),
        )

    def _gone(self, at_start: bool) -> None:
        if self.missing:
            return
        self.missing = True
        if at_start:
            parent = os.path.dirname(os.path.abspath(self.path))
            where = f"its directory {parent} does not exist" if not os.path.isdir(parent) else "no such file"
            log.warning("%s: missing (%s); it will be read when it appears", self.path, where)

    def _refuse(self, kind: str) -> None:
        self.missing = False
        if self.refused != kind:
            self.refused = kind
            log.warning("%s: %s, not a regular file: not read", self.path, kind)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)


class Tailer:
    """Follows every path and glob of the ``specs``; the daemon calls ``poll`` in its loop."""

    def __init__(
        self,
        specs: Sequence[TailSpec],
        checkpoints: object,  # anything with get_checkpoint(key) -> dict | None
        clock: Clock,
        on_event: Callable[[Event], None],
        max_line: int = 64 * 1024,
        stall_after_s: float = 60.0,
        use_watchdog: bool = True,
    ) -> None:
        self.ctx = TailContext(clock, on_event, max_line)
        self.checkpoints = checkpoints
        self.stall_after_s = stall_after_s
        self.specs: List[TailSpec] = []
        self.logs: Dict[str, TailedLog] = {}
        self.waker = Waker(enabled=use_watchdog)
        self._next_rescan = 0.0
        self._removed_lines = 0  # lines read from paths no longer followed
        self.set_specs(specs)

    def set_specs(self, specs: Sequence[TailSpec]) -> None:
        """Start following new paths (from their checkpoint) and drop removed ones; kept paths keep their place."""
        self.specs = list(specs)
        wanted = self._expand()
        for path in [p for p in self.logs if p not in wanted]:
            self._remove(path)
        for path, spec in wanted.items():
            if path not in self.logs:
                self._add(path, spec, initial=True)
        self._watch_dirs()
        for spec in self.specs:
            if spec.is_glob and not any(l.spec is spec for l in self.logs.values()):
                parent = os.path.dirname(os.path.abspath(spec.pattern))
                where = f"its directory {parent} does not exist" if not os.path.isdir(parent) else "no file matches yet"
                log.warning("%s: missing (%s); matching files will be read when they appear", spec.pattern, where)
        self._next_rescan = self.ctx.clock.monotonic() + RESCAN_S

    def _watch_dirs(self) -> None:
        """Watch the logs' directories (the Waker skips missing ones; called again on rescans)."""
        self.waker.watch(sorted({os.path.dirname(os.path.abspath(s.pattern)) for s in self.specs}))

    def _expand(self) -> Dict[str, TailSpec]:
        out: Dict[str, TailSpec] = {}
        for spec in self.specs:
            if not spec.is_glob:
                out.setdefault(spec.pattern, spec)
                continue
            for path in sorted(glob.glob(spec.pattern)):
                if os.path.isfile(path) and not path.endswith(COMPRESSED):
                    out.setdefault(path, spec)
        return out

    def _add(self, path: str, spec: TailSpec, initial: bool) -> None:
        if spec.is_glob and self._open_elsewhere(path):
            return  # a file we already follow under its old name (rotated into the glob)
        ckpt = LogCheckpoint.from_dict(self.checkpoints.get_checkpoint(checkpoint_key(path)))  # type: ignore[attr-defined]
        self.logs[path] = TailedLog(path, spec, self.ctx, ckpt, initial)

    def _open_elsewhere(self, path: str) -> bool:
        st = file_stat(path)
        if st is None:
            return True
        for other in self.logs.values():
            for f in other.draining + ([other.current] if other.current else []):
                if f.identity.same_inode(st):
                    return True
        return False

    def _rescan(self) -> None:
        self._watch_dirs()  # a directory that appeared since
        wanted = self._expand()
        for path, spec in wanted.items():
            if path not in self.logs:
                self._add(path, spec, initial=False)
        for path in [p for p, l in self.logs.items() if p not in wanted and l.idle]:
            self._remove(path)  # a glob match that went away and is finished

    def _remove(self, path: str) -> None:
        tailed = self.logs.pop(path)
        self._removed_lines += tailed.stats(self.stall_after_s).lines
        tailed.close()

    def poll(self, budget: int = 4 << 20) -> Tuple[int, bool]:
        """Check every path, then read up to ``budget`` bytes; (bytes read, all caught up)."""
        now = self.ctx.clock.monotonic()
        if now >= self._next_rescan or self.waker.created:
            self.waker.created = False
            self._rescan()
            self._next_rescan = now + RESCAN_S
        logs = list(self.logs.values())
        total = 0
        caught_up = True
        share = max(budget // max(len(logs), 1), 64 * 1024)  # one busy log must not starve the others
        for tailed in logs:
            tailed.check()
            n, done = tailed.read(min(share, max(budget - total, 0)) if total < budget else 0)
            total += n
            caught_up = caught_up and done
        return total, caught_up

    def wait(self, timeout: float) -> None:
        self.waker.wait(timeout)

    def positions(self) -> Dict[str, dict]:  # type: ignore[type-arg]
        now = self.ctx.clock.now()
        out = {}
        for path, tailed in self.logs.items():
            ckpt = tailed.checkpoint()
            ckpt.saved_at = now
            out[checkpoint_key(path)] = ckpt.to_dict()
        return out

    def stats(self) -> List[SourceStats]:
        return [l.stats(self.stall_after_s) for l in self.logs.values()]

    def missing_sources(self) -> List[str]:
        """Configured paths with nothing there, and globs matching nothing (for /healthz)."""
        out = [p for p, l in self.logs.items() if l.missing and not l.spec.is_glob]
        out += [s.pattern for s in self.specs if s.is_glob and not any(l.spec is s for l in self.logs.values())]
        return sorted(out)

    def refused_sources(self) -> Dict[str, str]:
        """Paths refused because they are not regular files -> what they are ("a FIFO (named pipe)")."""
        return {p: l.refused for p, l in self.logs.items() if l.refused}

    def descriptors_short(self) -> bool:
        """True once some log could not be opened for want of a file descriptor."""
        return self.ctx.descriptors_short

    def lines_read(self) -> int:
        """Lines read by this tailer so far (re-read windows after a restart not counted)."""
        return self._removed_lines + sum(s.lines for s in self.stats())

    def close(self) -> None:
        for tailed in self.logs.values():
            tailed.close()
        self.logs.clear()
        self.waker.stop()
