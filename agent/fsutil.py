"""Private, atomic file writes: what railwatch puts on disk is whole or absent, and 0600
(its directories 0700).

A reader (a sink, an operator, `railwatch bundle`) never sees half a file, and a crash
mid-write leaves only a temp file that the next write replaces. ``write_json_atomically``
is the one non-private write: the daemon's counters file, for tests and benchmarks.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from typing import Any, BinaryIO, Dict, Iterator


@contextlib.contextmanager
def atomic_private(path: str) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` (mode 0600) only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private(path: str, data: bytes) -> None:
    with atomic_private(path) as fh:
        fh.write(data)


def copy_private(src: str, dest: str) -> None:
    with atomic_private(dest) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out)


def write_json_atomically(path: str, data: Dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON in one rename (readable by others; no fsync:
    the daemon rewrites its counters every tick, and losing the last one is harmless)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def private_dir(path: str) -> str:
    """Create ``path`` (and parents) as 0700; tighten it if it exists and is ours."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except PermissionError:  # someone else's directory: leave its mode alone
        pass
    return path


class UnsafePathError(OSError):
    """A symlink (or a non-directory) where railwatch keeps its own files: refused, never followed."""


def private_dir_below(root: str, *parts: str) -> str:
    """Create ``root/parts…`` as 0700 directories without following a symlink below ``root``.

    ``root`` (the configured state dir) may itself be a symlink; anything below it that is
    one is refused with an explanation, so nothing is chmod'ed or written through it."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(exc.errno, f"{path} is a symlink or not a directory; railwatch refuses to "
                                      "follow it (remove it: railwatch recreates its own directories)") from None
            raise
        try:
            os.fchmod(fd, 0o700)
        except PermissionError:  # someone else's directory: leave its mode alone
            pass
        finally:
            os.close(fd)
    return path


def refuse_symlink(path: str) -> None:
    """Raise ``UnsafePathError`` if ``path`` exists as a symlink or a non-regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(errno.ELOOP, f"{path} is a symlink or not a regular file; railwatch refuses to follow "
                              "or replace it (remove it)")
