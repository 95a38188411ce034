"""Events handed from a parsing worker process to the process that runs the detectors.

A worker appends its events to a spill file, one length-framed encoded list per chunk
it read, flushed at once; the detecting process follows the file as it grows, so it
feeds the detectors while the worker reads on. Files, not pipes: a worker never waits
for the reader (a log whose events are needed later simply spills to disk meanwhile).

Events cross as ``(label, type number, field values)`` rows: about half the cost of
pickling the dataclasses, on both sides; the detecting process is the one that limits
the speed-up. The label is the caller's (``agent.scan_split`` sends the line each event
was emitted at).
"""
from __future__ import annotations

import dataclasses
import operator
import pickle
import time
from typing import IO, Callable, Iterator, List, Tuple, TypeVar

from agent.events import EVENT_TYPES, Event

FOLLOW_POLL_S = 0.005

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


def write_frame(fh: IO[bytes], batch: List[Tuple[L, Event]]) -> None:
    """Append one encoded batch to a spill, visible to its reader at once."""
    body = encode(batch)
    fh.write(len(body).to_bytes(8, "little"))
    fh.write(body)
    fh.flush()


def follow(spill: str, finished: Callable[[], bool]) -> Iterator[Tuple[L, Event]]:
    """The events of a spill file as its worker writes them, to the end of the worker's run
    (``finished``: the worker has ended, whether it wrote everything or died)."""
    with open(spill, "rb") as fh:
        while True:
            done = finished()  # asked before reading: a finished worker has written everything
            at = fh.tell()
            head = fh.read(8)
            if len(head) == 8:
                size = int.from_bytes(head, "little")
                body = fh.read(size)
                if len(body) == size:
                    yield from decode(body)
                    continue
            if done:
                return
            fh.seek(at)
            time.sleep(FOLLOW_POLL_S)
