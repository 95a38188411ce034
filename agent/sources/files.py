"""Reading log files for ``scan``: paths, directories, globs, .gz, .bz2 and stdin.

Files are read in large binary chunks and split into lines here, so a 50 MB line is
cut at ``max_line`` bytes instead of being held whole, invalid UTF-8 is replaced
instead of raising, and a truncated compressed file yields every line before the
damage. Rotated files of one log (``production.log.2.gz``, ``production.log.1``,
``production.log``) are grouped and ordered oldest first.

Only regular files (and stdin) are read: a FIFO would block the reader, a device such as
/dev/zero never ends, a socket cannot be read as a file. Such a path is refused with a
one-line reason (``open_regular`` opens with O_NONBLOCK, so even a FIFO cannot block the
open itself, then checks the open file's type).
"""
from __future__ import annotations

import bz2
import errno
import fcntl
import glob
import gzip
import io
import lzma
import os
import re
import stat
import sys
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

CHUNK = 128 * 1024  # read size: big enough for few system calls, small enough to stay in the CPU cache
MAX_LINE = 64 * 1024  # longer lines are cut: no Rails line worth reading is this long

STDIN = "-"
_ROTATION = re.compile(r"^(?P<base>.+?)(?:\.(?P<n>\d+)|[-.](?P<date>\d{8}(?:\d{2})?))?(?:\.(?:gz|bz2|xz))?$")
_LOGLIKE = re.compile(r"\.(?:log|json|jsonl|out|err)(?:[.-]\d+)*(?:\.(?:gz|bz2|xz))?$|\.(?:gz|bz2|xz)$|[-.]\d{8}(?:\d{2})?$")


class InputError(Exception):
    """A path that cannot be read at all (missing, unreadable, empty directory)."""


class NotRegularFile(OSError):
    """A path that is a FIFO, device, socket or directory: never read as a log."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{kind}, not a regular file: not read")
        self.path, self.kind = path, kind


def file_kind(mode: int) -> str:
    """What a stat mode says the file is, in words (for refusals)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: str) -> int:
    """A read-only descriptor for ``path`` if it is a regular file; else ``NotRegularFile``.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; the
    type is then checked on the open file (no race with a rename), and the flag cleared.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # opening a Unix socket
            raise NotRegularFile(path, "a socket") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, file_kind(mode))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd
    except BaseException:
        os.close(fd)
        raise


def special_file_problem(path: str) -> Optional[str]:
    """A one-line refusal if ``path`` exists and is not a regular file (stat follows links)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return f"{path}: {file_kind(mode)}, not a regular file: not read"


@dataclass
class InputFile:
    path: str  # as given (or found in a directory); "-" for stdin
    group: str  # the log it belongs to (rotation suffixes stripped)
    order: Tuple[int, str] = (0, "")  # oldest first within the group


@dataclass
class ReadStats:
    lines: int = 0
    cut_lines: int = 0  # lines longer than MAX_LINE, truncated
    problems: List[str] = field(default_factory=list)


def rotation_key(path: str) -> Tuple[str, Tuple[int, str]]:
    """``log/production.log.2.gz`` -> ("log/production.log", (-2, "")): older sorts first."""
    name = os.path.basename(path)
    m = _ROTATION.match(name)
    assert m is not None
    base = os.path.join(os.path.dirname(path), m.group("base"))
    if m.group("n") is not None:
        return base, (-int(m.group("n")), "")
    if m.group("date") is not None:
        return base, (-(10**9), m.group("date"))  # dated rotations: older than numbered ones, by date
    return base, (0, "")


def expand(paths: List[str]) -> Tuple[List[InputFile], List[str]]:
    """Turn CLI arguments into input files; problems are returned as one-line messages."""
    found: List[str] = []
    problems: List[str] = []
    for arg in paths:
        if arg == STDIN:
            found.append(STDIN)
            continue
        if not os.path.exists(arg) and any(c in arg for c in "*?["):
            matches = sorted(glob.glob(arg))
            if not matches:
                problems.append(f"{arg}: no file matches this pattern")
            found.extend(m for m in matches if os.path.isfile(m))
            continue
        if os.path.isdir(arg):
            logs = _logs_in(arg)
            if not logs:
                problems.append(f"{arg}: directory holds no log files (*.log, *.log.N, *.gz, *.bz2)")
            for path in logs:
                refused = special_file_problem(path)
                if refused:
                    problems.append(refused)
                else:
                    found.append(path)
            continue
        if not os.path.exists(arg):
            problems.append(f"{arg}: no such file or directory")
            continue
        refused = special_file_problem(arg)
        if refused:
            problems.append(refused)
            continue
        if not os.access(arg, os.R_OK):
            problems.append(f"{arg}: permission denied")
            continue
        found.append(arg)
    files: List[InputFile] = []
    seen = set()
    for path in found:
        key = os.path.realpath(path) if path != STDIN else STDIN
        if key in seen:
            continue
        seen.add(key)
        group, order = rotation_key(path) if path != STDIN else (STDIN, (0, ""))
        files.append(InputFile(path=path, group=group, order=order))
    return files, problems


def _logs_in(directory: str) -> List[str]:
    out = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and _LOGLIKE.search(name):
                out.append(os.path.join(root, name))
    return out


def group_files(files: List[InputFile]) -> Dict[str, List[InputFile]]:
    """Files of one log, oldest first; groups in the order first given."""
    groups: Dict[str, List[InputFile]] = {}
    for f in files:
        groups.setdefault(f.group, []).append(f)
    for members in groups.values():
        members.sort(key=lambda f: f.order)
    return groups


def open_binary(path: str) -> BinaryIO:
    """Open plain, gzip, bzip2 or xz by magic number (names lie); stdin for "-"."""
    if path == STDIN:
        return _stdin_by_magic(sys.stdin.buffer)
    raw = os.fdopen(open_regular(path), "rb")
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        raw.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic[:3] == b"BZh":
        raw.close()
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if magic[:6] == b"\xfd7zXZ\x00":
        raw.close()
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return raw


def _stdin_by_magic(stdin: BinaryIO) -> BinaryIO:
    """stdin decompressed when it starts with a gzip, bzip2 or xz magic number (``zcat``-free pipes).

    A pipe cannot seek back, so the bytes read to look at the magic are put back in front."""
    head = stdin.read(6)  # blocks until 6 bytes or end of input: a short first write cannot hide the magic
    stream = io.BufferedReader(_Rejoined(head, stdin), CHUNK)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.BZ2File(stream, "rb")  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(stream, "rb")  # type: ignore[return-value]
    return stream  # type: ignore[return-value]


class _Rejoined(io.RawIOBase):
    """A stream whose first bytes were already read, with those bytes put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def, override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        read = getattr(self._rest, "read1", self._rest.read)  # read1: what the pipe has now, no waiting for more
        data = read(len(buf))
        buf[: len(data)] = data
        return len(data)


_DAMAGED = (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def read_lines(path: str, stats: ReadStats, max_line: int = MAX_LINE, on_bytes: Optional[Callable[[int], None]] = None) -> Iterator[str]:
    """Yield decoded lines without their newline; never raises for damaged content.

    Problems (truncated archive, read error) are appended to ``stats.problems``; the
    lines read before them are still yielded.
    """
    for batch in read_batches(path, stats, max_line, on_bytes):
        yield from batch


def read_batches(
    path: str, stats: ReadStats, max_line: int = MAX_LINE, on_bytes: Optional[Callable[[int], None]] = None, offset: int = 0
) -> Iterator[List[str]]:
    """The lines of ``path`` as lists, one list per chunk read (the fast path for ``scan``).

    Each chunk is cut after its last newline and decoded in one call, then split: one
    C-level decode per chunk instead of one per line, and the caller loops over a list
    instead of resuming a generator per line. A newline byte never occurs inside a
    UTF-8 sequence, so decoding whole lines at once replaces invalid bytes exactly as
    decoding line by line would. ``offset`` (a line start of a plain file) starts the
    reading there: ``scan --jobs`` on one big file (``agent.scan_split``).
    """
    try:
        stream = open_binary(path)
        if offset:
            stream.seek(offset)
    except NotRegularFile as exc:
        stats.problems.append(f"{path}: {exc.strerror}")
        return
    except OSError as exc:
        stats.problems.append(f"{path}: cannot open: {exc.strerror or exc}")
        return
    pending = b""
    skipping = False  # inside an over-long line, dropping bytes until its newline
    try:
        while True:
            try:
                chunk = stream.read(CHUNK)
            except _DAMAGED as exc:
                stats.problems.append(f"{path}: damaged or truncated after {stats.lines} lines ({_describe(exc)}); kept what was read")
                break
            if not chunk:
                break
            if on_bytes is not None:
                on_bytes(len(chunk))
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                skipping = False
                chunk = chunk[nl + 1 :]
            data = pending + chunk if pending else chunk
            last = data.rfind(b"\n")
            if last < 0:
                pending = data
            else:
                pending = data[last + 1 :]
                text = data[:last].decode("utf-8", "replace")
                lines = text.split("\n")
                if last > max_line // 4 and max(map(len, lines)) > max_line // 4:
                    lines = _cut_long(lines, max_line, stats)  # rare: only chunks with a line over 16 KiB
                if "\r" in text:
                    lines = [l.rstrip("\r") for l in lines]
                stats.lines += len(lines)
                yield lines
            if len(pending) > max_line:
                stats.lines += 1
                stats.cut_lines += 1
                yield [pending[:max_line].decode("utf-8", "replace")]
                pending = b""
                skipping = True
        if pending:
            stats.lines += 1
            yield [pending.decode("utf-8", "replace").rstrip("\r")]
    finally:
        if path != STDIN:
            stream.close()


def _cut_long(lines: List[str], max_line: int, stats: ReadStats) -> List[str]:
    """Cut lines longer than ``max_line`` bytes, as the byte-wise reader would."""
    out = []
    for line in lines:
        if len(line) > max_line // 4:
            raw = line.encode("utf-8", "surrogateescape")
            if len(raw) > max_line:
                stats.cut_lines += 1
                line = raw[:max_line].decode("utf-8", "replace")
        out.append(line)
    return out


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:120]


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path) if path != STDIN else 0
    except OSError:
        return 0
