"""Private, atomic file writes: what railwatch puts on disk is whole or absent, and 0600
(its directories 0700).

A reader (a sink, an operator, `railwatch bundle`) never sees half a file, and a crash
mid-write leaves only a temp file that the next write replaces. ``write_json_atomically``
is the one non-private write: the daemon's counters file, for tests and benchmarks.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
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
