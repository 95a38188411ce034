"""Where a tailed file was left off, and how to recognise that file again.

A file is identified by device + inode *and* a fingerprint of its first bytes: an
inode number is reused once a rotated file is deleted, so the inode alone would resume
a brand-new file at the old file's offset. The fingerprint also tells a
copytruncate'd file (same inode, new first bytes) from one that merely grew.

A ``Position`` is what goes into the state store, one per tailed path::

    {"dev": 2049, "ino": 131, "fp": "9f2c…", "fp_len": 512,
     "offset": 81920, "lineno": 1200,          # everything before was handed to detectors
     "replay_offset": 40960, "replay_lineno": 700,   # re-read quietly on restart (see below)
     "skip": false,                             # inside an over-long line: drop to its newline
     "draining": [ {…same fields…} ],           # rotated-away files not yet finished
     "saved_at": 1764151200.5}                  # files rotated in later are read whole on restart

Parsers hold a record back while its continuation lines arrive (a backtrace), and
which lines they hold is their own business. So instead of asking, a restart re-reads
a window of lines *before* the checkpoint into a fresh parser and drops the events
they complete (those were delivered before the checkpoint); a record that straddled
the checkpoint is thus re-assembled whole from its first line and delivered once.

``find_sibling`` and ``newer_rotations`` find a checkpointed file again after it was
renamed (rotation) or copied (copytruncate), and the files rotated in since.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional

from agent.sources.files import rotation_key

FINGERPRINT_BYTES = 512
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")  # rotated and compressed: not tailed


def fingerprint_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:20]


@dataclass(frozen=True)
class FileIdentity:
    dev: int
    ino: int
    fp: str = ""  # fingerprint of the first ``fp_len`` bytes ("" for an empty file)
    fp_len: int = 0

    @classmethod
    def of_fd(cls, fd: int, st: Optional[os.stat_result] = None) -> "FileIdentity":
        st = st if st is not None else os.fstat(fd)
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        return cls(st.st_dev, st.st_ino, fingerprint_of(head) if head else "", len(head))

    @classmethod
    def of_path(cls, path: str) -> Optional["FileIdentity"]:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            return cls.of_fd(fd)
        finally:
            os.close(fd)

    def same_inode(self, st: os.stat_result) -> bool:
        return (self.dev, self.ino) == (st.st_dev, st.st_ino)

    def head_matches(self, fd: int) -> bool:
        """Do the file's first ``fp_len`` bytes still hash to our fingerprint?"""
        if self.fp_len == 0:
            return True
        head = os.pread(fd, self.fp_len, 0)
        return len(head) == self.fp_len and fingerprint_of(head) == self.fp

    def grown(self, fd: int) -> "FileIdentity":
        """The same identity with a longer fingerprint once the file has more bytes."""
        if self.fp_len >= FINGERPRINT_BYTES:
            return self
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        if len(head) <= self.fp_len:
            return self
        return FileIdentity(self.dev, self.ino, fingerprint_of(head), len(head))


@dataclass
class Position:
    """A resumable place in one file (see the module docstring for the fields)."""

    dev: int
    ino: int
    fp: str
    fp_len: int
    offset: int
    lineno: int
    replay_offset: int
    replay_lineno: int
    skip: bool = False
    path: str = ""  # where the file was last seen (rotated files change names)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino, self.fp, self.fp_len)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> Optional["Position"]:
        try:
            return cls(
                dev=int(data["dev"]), ino=int(data["ino"]), fp=str(data.get("fp", "")),  # type: ignore[arg-type]
                fp_len=int(data.get("fp_len", 0)), offset=int(data["offset"]),  # type: ignore[arg-type]
                lineno=int(data.get("lineno", 0)),  # type: ignore[arg-type]
                replay_offset=int(data.get("replay_offset", data["offset"])),  # type: ignore[arg-type]
                replay_lineno=int(data.get("replay_lineno", data.get("lineno", 0))),  # type: ignore[arg-type]
                skip=bool(data.get("skip", False)), path=str(data.get("path", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None  # a damaged or older record: start over rather than crash


@dataclass
class LogCheckpoint:
    """Everything to resume one tailed path: its current file and rotated ones still draining."""

    current: Optional[Position] = None
    draining: List[Position] = field(default_factory=list)
    saved_at: float = 0.0  # wall time: files rotated in after this are newer than the checkpoint

    def to_dict(self) -> Dict[str, object]:
        data: Dict[str, object] = self.current.to_dict() if self.current else {}
        data["draining"] = [p.to_dict() for p in self.draining]
        data["saved_at"] = self.saved_at
        return data

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, object]]) -> "LogCheckpoint":
        if not data:
            return cls()
        current = Position.from_dict(data) if "ino" in data else None
        raw = data.get("draining") or []
        draining = [p for p in (Position.from_dict(d) for d in raw if isinstance(d, dict)) if p]  # type: ignore[union-attr]
        saved_at = data.get("saved_at", 0.0)
        return cls(current, draining, float(saved_at) if isinstance(saved_at, (int, float)) else 0.0)


def checkpoint_key(path: str) -> str:
    return "tail:" + path


class MemoryCheckpoints:
    """The checkpoint part of the state store, in memory (tests, dry runs)."""

    def __init__(self) -> None:
        self.data: Dict[str, dict] = {}  # type: ignore[type-arg]
        self.commits = 0

    def get_checkpoint(self, key: str) -> Optional[dict]:  # type: ignore[type-arg]
        value = self.data.get(key)
        return json.loads(json.dumps(value)) if value is not None else None

    def set_checkpoints(self, values: Dict[str, dict]) -> None:  # type: ignore[type-arg]
        self.data.update(json.loads(json.dumps(values)))
        self.commits += 1


# ----------------------------------------------------------------------------- finding a file again

def find_sibling(path: str, pos: Position, by_content_only: bool = False) -> Optional[str]:
    """The file, next to ``path``, that is the one ``pos`` was read in (rotated or copied)."""
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    by_content: Optional[str] = None
    ident = pos.identity
    for name in names:
        candidate = os.path.join(directory, name)
        if candidate == path or not name.startswith(base.split(".")[0]) or name.endswith(COMPRESSED):
            continue
        st = file_stat(candidate)
        if st is None or not os.path.isfile(candidate) or st.st_size < pos.offset:
            continue
        if not head_matches(candidate, ident):
            continue
        if ident.same_inode(st) and not by_content_only:
            return candidate
        if by_content is None and not ident.same_inode(st):
            by_content = candidate
    return by_content


def file_stat(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except OSError:
        return None


def head_matches(path: str, ident: FileIdentity) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        return bool(ident.head_matches(fd))
    finally:
        os.close(fd)


def newer_rotations(path: str, saved_at: float, known: Iterable[Optional[os.stat_result]]) -> List[str]:
    """Rotated files of ``path``'s log written after ``saved_at`` and not among ``known``, oldest first."""
    if not saved_at:
        return []
    base = rotation_key(path)[0]
    directory = os.path.dirname(path) or "."
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    seen = {(st.st_dev, st.st_ino) for st in known if st is not None}
    found = []
    for name in names:
        candidate = os.path.join(directory, name)
        if candidate == path or name.endswith(COMPRESSED) or rotation_key(candidate)[0] != base:
            continue
        st = file_stat(candidate)
        if st is None or st.st_mtime <= saved_at or (st.st_dev, st.st_ino) in seen:
            continue
        found.append((rotation_key(candidate)[1], candidate))
    return [c for _, c in sorted(found)]
