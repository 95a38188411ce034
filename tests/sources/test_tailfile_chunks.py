"""The tail reader handles a read's complete lines as one chunk: exactly what it did line by line.

``TailedFile._take`` decodes and splits a read's complete lines once and hands them to the
parser's ``feed_lines``; before, it split the bytes and decoded, counted, remembered and fed
each line on its own. The old per-line ``_take`` is kept here as the reference: the same
bytes, appended and read in the same random pieces, must give the same events (every field),
offsets, line numbers, counters, ring of recent line starts, checkpoint position and held
partial line — with invalid UTF-8, carriage returns, empty lines, lines to cut, idle releases,
a restart from a checkpoint (its re-read window is quiet) and the file's end.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import astuple
from functools import lru_cache
from pathlib import Path
from types import MethodType
from typing import List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parsers.choose import SNIFF_LINES
from agent.sources.tail import TailContext
from agent.sources.tailfile import TailedFile, open_file
from agent.testing import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
CASES = {  # name: (forced format, fixtures the lines come from)
    "sidekiq": ("sidekiq", ["sidekiq/sidekiq5_failure.log", "sidekiq/sidekiq7_synthetic.log", "sidekiq/sidekiq4_crash.log"]),
    "rails": ("rails", ["rails/rails52_production.log"]),
    "sniffed": (None, ["sidekiq/sidekiq7_synthetic.log", "rails/rails52_production.log", "postgres"]),
    "syslog": (None, ["syslog:sidekiq/sidekiq7_synthetic.log"]),  # an envelope: its time is the lines' only one
    "unknown": (None, ["../corpus/request-log-analyzer/merb.log"]),  # no format fits: lines are counted
}
MAX_LINE = 300  # small, so that cut lines are common
SETTINGS = settings(max_examples=int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 0) or 150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT[\d:.]+Z ")
ODD = [b"\xff", b"\xe2\x82", b"\xc3", b"\xed\xa0\x80", "é字".encode(), b"\r", b"\r\r", b"", b"\x00", b"\x1b[31m", b"x" * 700]


def per_line_take(self: TailedFile, chunk: bytes) -> None:
    """``TailedFile._take`` as it was (railwatch 0.x up to issue 18): one ``_line`` per line."""
    if self.skipping:
        nl = chunk.find(b"\n")
        if nl < 0:
            self.offset += len(chunk)
            return
        self.skipping = False
        self.offset += nl + 1
        chunk = chunk[nl + 1 :]
    data = self.pending + chunk if self.pending else chunk
    parts = data.split(b"\n")
    rest = parts.pop()
    for part in parts:
        start = self.offset
        self.offset += len(part) + 1
        self._line(part, start)
    if len(rest) > self.max_line:
        start = self.offset
        self.offset += len(rest)
        self.skipping = True
        self._line(rest, start)
        rest = b""
    self.pending = rest


@lru_cache(maxsize=None)
def fixture_lines(name: str) -> Tuple[bytes, ...]:
    if name == "postgres":
        return tuple(l for p in sorted((FIXTURES / "postgres").glob("*.log"))[:1] for l in p.read_bytes().splitlines(keepends=True)[:300])
    if name.startswith("syslog:"):  # "May  1 12:00:07 host sidekiq[7]: pid=1 tid=… INFO: start", no time of its own
        return tuple(
            b"May  1 12:%02d:%02d host sidekiq[7]: " % (i // 60 % 60, i % 60) + STAMP.sub(b"", l, count=1)
            for i, l in enumerate(fixture_lines(name[7:]))
        )
    return tuple((FIXTURES / name).read_bytes().splitlines(keepends=True)[:300])


class Reader:
    """One TailedFile on the file and everything it delivered."""

    def __init__(self, path: str, fmt: Optional[str], clock: FakeClock, reference: bool, pos=None, max_line: int = MAX_LINE) -> None:  # type: ignore[no-untyped-def]
        self.events: List[object] = []
        self.ctx = TailContext(clock, self.events.append, max_line)
        self.f = open_file(path, fmt, self.ctx, pos, "beginning")
        if reference:
            self.f._take = MethodType(per_line_take, self.f)  # type: ignore[method-assign]

    def state(self) -> Tuple[object, ...]:
        f = self.f
        events = [(type(e).__name__,) + astuple(e) for e in self.events]  # type: ignore[call-overload]
        return (
            repr(events), f.offset, f.lineno, f.lines, f.cut_lines, f.unknown_lines, f.pending, f.skipping,
            list(f.ring), astuple(f.position()), f.unparsed_count(), f.format, f.read_pos,
        )


def content(data: st.DataObject, names: List[str]) -> bytes:
    pool = [l for name in names for l in fixture_lines(name)]
    picks = data.draw(st.lists(st.one_of(
        st.sampled_from(pool), st.sampled_from(pool), st.sampled_from(pool),
        st.builds(lambda l, odd, at: l[:at] + odd + l[at:], st.sampled_from(pool), st.sampled_from(ODD), st.integers(0, 200)),
        st.sampled_from(ODD).map(lambda b: b + b"\n"),
    ), min_size=1, max_size=120))
    head = b"".join(pool[:SNIFF_LINES])  # the format is sniffed from the file's first lines
    return head + b"".join(picks) + data.draw(st.sampled_from([b"", b"partial last line", b"\xe2\x82"]))


@SETTINGS
@given(data=st.data(), case=st.sampled_from(sorted(CASES)), max_line=st.sampled_from([64 * 1024, MAX_LINE]))
def test_chunked_reads_equal_line_by_line_reads(data: st.DataObject, case: str, max_line: int) -> None:
    fmt, names = CASES[case]
    body = content(data, names)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.log")
        with open(path, "wb"):
            pass
        clock = FakeClock()
        new, ref = Reader(path, fmt, clock, False, max_line=max_line), Reader(path, fmt, clock, True, max_line=max_line)
        written = 0
        restarted = False
        while written < len(body):
            step = data.draw(st.sampled_from([4000, 1, 37, 333, 1000, 100_000]))  # bytes appended
            with open(path, "ab") as fh:
                fh.write(body[written : written + step])
            written += step
            budget = data.draw(st.sampled_from([1 << 20, 1, 7, 100, 4096]))
            for _ in range(data.draw(st.integers(1, 3))):
                assert new.f.read(budget) == ref.f.read(budget)
            assert new.state() == ref.state()
            action = data.draw(st.integers(0, 9))
            if action == 0:  # the log goes quiet: held records are delivered
                clock.advance(1.0)
                new.f.release_if_idle(0.5)
                ref.f.release_if_idle(0.5)
            elif action == 1 and not restarted:  # a restart from the checkpoint: its window is re-read quietly
                restarted = True
                pos = ref.f.position()
                assert astuple(new.f.position()) == astuple(pos)
                for r in (new, ref):
                    r.f.close()
                new, ref = Reader(path, fmt, clock, False, pos, max_line), Reader(path, fmt, clock, True, pos, max_line)
            assert new.state() == ref.state()
        for _ in range(3):
            new.f.read(1 << 20)
            ref.f.read(1 << 20)
        new.f.finish()
        ref.f.finish()
        assert new.state() == ref.state()
        assert (new.f.format == "unknown") == (case == "unknown")
        new.f.close()
        ref.f.close()


def test_the_reference_reads_lines_one_by_one_and_the_reader_in_chunks() -> None:
    """The comparison above compares two different code paths (else it proves nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.log")
        with open(path, "wb") as fh:
            fh.write(b"".join(fixture_lines("sidekiq/sidekiq7_synthetic.log")))
        calls = {"feed_lines": 0}
        new = Reader(path, "sidekiq", FakeClock(), False, max_line=64 * 1024)
        ref = Reader(path, "sidekiq", FakeClock(), True, max_line=64 * 1024)
        for r in (new, ref):
            assert r.f._choose_parser()
            parser = r.f.parser
            assert parser is not None
            inner = parser.feed_lines

            def counting(lines, first, inner=inner):  # type: ignore[no-untyped-def]
                calls["feed_lines"] += 1
                return inner(lines, first)

            parser.feed_lines = counting  # type: ignore[method-assign]
        new.f.read(1 << 20)
        assert calls["feed_lines"] == 1
        ref.f.read(1 << 20)
        assert calls["feed_lines"] == 1
        assert new.state() == ref.state() and new.f.lineno == 37


def test_invalid_utf8_and_carriage_returns_come_out_as_before() -> None:
    raw = (
        b"2024-05-01T00:00:00.000Z pid=1 tid=a INFO: caf\xc3 \xff\xfe ok\r\n\r\r\n\xe2\x82\nlast\r\n"
        b"2024-05-01T00:00:01.000Z pid=1 tid=b WARN: RuntimeError: caf\xc3 \xed\xa0\x80 boom\r\r\n"  # one "\r" is taken off
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.log")
        with open(path, "wb") as fh:
            fh.write(b"".join(fixture_lines("sidekiq/sidekiq7_synthetic.log")[:20]) + raw)
        clock = FakeClock()
        new, ref = Reader(path, "sidekiq", clock, False, max_line=4096), Reader(path, "sidekiq", clock, True, max_line=4096)
        new.f.read(1 << 20)
        ref.f.read(1 << 20)
        new.f.finish()
        ref.f.finish()
        assert new.state() == ref.state()
        assert new.f.lineno == 25
        error = new.events[-1]
        assert getattr(error, "message") == "caf\ufffd \ufffd\ufffd\ufffd boom\r", error
