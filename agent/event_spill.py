"""Events handed from a parsing worker process to the process that runs the detectors.

A worker appends its events to a spill file, one length-framed encoded list per chunk
it read, flushed at once; the detecting process follows the file as it grows, so it
feeds the detectors while the worker reads on. Files, not pipes: a worker never waits
for the reader (a log whose events are needed later simply spills to disk meanwhile).

A spill is never more than ``MAX_AHEAD_BYTES`` ahead of its reader: the reader records
how far it has read in a shared array (one slot per spill, handed to the workers when
their pool starts, ``init_worker``), and a writer that far ahead waits. Without it a
worker parsing a 10 GB log while the detectors are still busy with the first range
would fill TMPDIR with gigabytes of events (a debug log's events take more bytes than
its lines).

Events cross as ``(label, type number, field values)`` rows: about half the cost of
pickling the dataclasses, on both sides; the detecting process is the one that limits
the speed-up. The label is the caller's (``agent.scan_split`` sends the line each event
was emitted at).
"""
from __future__ import annotations

import dataclasses
import operator
import os
import pickle
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

from agent.events import EVENT_TYPES, Event

FOLLOW_POLL_S = 0.005
MAX_AHEAD_BYTES = 64 << 20
WAIT_POLL_S = 0.01

L = TypeVar("L")
_TYPE_NUMBER = {t: i for i, t in enumerate(EVENT_TYPES)}
_FIELDS = [operator.attrgetter(*(f.name for f in dataclasses.fields(t))) for t in EVENT_TYPES]


def encode(batch: List[Tuple[L, Event]]) -> bytes:
    number, fields = _TYPE_NUMBER, _FIELDS
    rows = []
    for label, e in batch:
        n = number[type(e)]
        rows.append((label, n, fields[n](e)))
    return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


def decode(body: bytes) -> List[Tuple[L, Event]]:
    types = EVENT_TYPES
    return [(label, types[n](*values)) for label, n, values in pickle.loads(body)]


_read_upto: Optional[Any] = None  # worker side: the shared array of bytes each spill's reader has read
_reader = 0  # worker side: the reading process; a writer whose reader died exits instead of waiting


def init_worker(read_upto: Any, reader: int) -> None:
    """Pool initializer: the array the reader keeps up to date (``multiprocessing.Array('q', n)``)
    and the reader's pid."""
    global _read_upto, _reader
    _read_upto, _reader = read_upto, reader


def reader_gone() -> bool:
    return bool(_reader) and os.getppid() != _reader


class SpillWriter:
    """Appends encoded batches to the spill file in ``slot``; ``close`` marks its end."""

    def __init__(self, path: str, slot: int) -> None:
        self.fh = open(path, "wb")
        self.slot = slot
        self.written = 0

    def write(self, batch: List[Tuple[L, Event]]) -> None:
        self._frame(encode(batch))

    def blocked(self) -> bool:
        """The reader is ``MAX_AHEAD_BYTES`` behind: writing more would only fill the disk."""
        return _read_upto is not None and self.written - _read_upto[self.slot] > MAX_AHEAD_BYTES

    def write_when_read(self, batch: List[Tuple[L, Event]]) -> None:
        """``write``, first waiting while the reader is far behind."""
        while self.blocked():
            if reader_gone():
                os._exit(1)  # nobody will read this: stop instead of waiting forever
            time.sleep(WAIT_POLL_S)
        self.write(batch)

    def close(self) -> None:
        if not self.fh.closed:
            self._frame(b"")  # the end mark: the reader stops here without waiting for the process to end
            self.fh.close()

    def _frame(self, body: bytes) -> None:
        self.fh.write(len(body).to_bytes(8, "little"))
        self.fh.write(body)
        self.fh.flush()  # visible to the reader at once
        self.written += 8 + len(body)


def follow(spill: str, finished: Callable[[], bool], read_upto: Optional[Any] = None, slot: int = 0) -> Iterator[Tuple[L, Event]]:
    """The events of a spill file as its worker writes them, to its end mark (or, if the worker
    died first, to what it wrote: ``finished`` says the worker has ended); how far it has read
    goes to ``read_upto[slot]``, for the writer's ``MAX_AHEAD_BYTES``."""
    with open(spill, "rb") as fh:
        while True:
            done = finished()  # asked before reading: a finished worker has written everything
            at = fh.tell()
            head = fh.read(8)
            if len(head) == 8:
                size = int.from_bytes(head, "little")
                if size == 0:
                    return  # the end mark
                body = fh.read(size)
                if len(body) == size:
                    if read_upto is not None:
                        read_upto[slot] = fh.tell()
                    yield from decode(body)
                    continue
            if done:
                return
            fh.seek(at)
            time.sleep(FOLLOW_POLL_S)
