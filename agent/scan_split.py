"""``railwatch scan --jobs N`` on one big file: byte ranges parsed on several cores, one detector pass.

The file is cut into ranges at line starts. This process parses the first range itself,
feeding the detectors as it goes; worker processes parse the later ranges at the same
time and spill their events to temporary files (``agent.event_spill``), which this process
then feeds, in order, to the same pipeline. So the detectors see one timeline, as with
``--jobs 1``.

Making the events the same as one parser reading the whole file:

* Ownership: a range owns the events whose first line lies in it; the others are dropped.
* Warm-up: a range's parser starts ``WARMUP_BYTES`` before its range, so the requests
  and records open at the cut (a ``Started`` line before it, a SQL line waiting for its
  ``↳``) are known when the range begins.
* Spill: a range's parser reads ``SPILL_LINES`` past its end, so a record it owns that is
  completed by a later line (a backtrace, an exception report, a ``↳``) is still emitted.
  The parsers allowed here emit any held record at most 400 lines after its last line
  (``STALE_AFTER_LINES``).
* Order: each event keeps the line number at which the parser emitted it; the ranges'
  events are merged by that number, which is the order one parser would have emitted them.

The one known difference: for logs without request ids, Rails numbers requests per pid
from the start of what it read (``pid4321.17``); a later range numbers them from its
warm-up. Those keys only group one request's lines, so findings do not change.
tests/test_scan_split.py compares incidents (fingerprints, counts, first and last
times) with the one-process scan on the e2e fixtures and the corpus.
"""
from __future__ import annotations

import concurrent.futures as cf
import heapq
import itertools
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, Type

from agent.event_spill import SpillWriter, decode, encode, follow, init_worker
from agent.events import Event, Finding
from agent.parsers.base import Parser
from agent.parsers.choose import SNIFF_LINES, choose_format
from agent.pipeline import Pipeline
from agent.sources.files import ReadStats, read_batches
from agent.sources.lasttime import LastTime
from agent.sources.replay import FileReport

SPLIT_MIN_BYTES = 32 << 20  # smaller files are not split: worker start-up and warm-up would eat the gain
WARMUP_BYTES = 4 << 20
SPILL_LINES = 2000
#: formats whose parsers emit every held record within STALE_AFTER_LINES (400) lines
SPLIT_FORMATS = frozenset(("rails", "lograge"))
# Not Sidekiq, though its parser would qualify: it emits about one event per line, and
# decoding an event in this process (which also runs the detectors) costs about what
# parsing its line does. Measured with the compact encoding below, 42 MB Sidekiq 7 log:
# 2.2 s in one process, 2.8-3.2 s split in two; before it, 3.7 -> 6.9 CPU-seconds on 64 MB.
#: this process's share of the lines, relative to a worker's: it also runs every detector
MAIN_WEIGHT = 0.25
COUNT_CHUNK = 16 << 20
FEED_BATCH = 4096

Emitted = Tuple[int, Event]  # (line number the parser emitted it at, event)


@dataclass
class Range:
    warm_byte: int  # where its parser starts reading (a line start)
    warm_line: int  # the line number there
    start_line: int  # first line it owns
    end_line: Optional[int]  # first line it no longer owns (None: to the end of the file)


def _head(path: str) -> List[str]:
    head: List[str] = []
    for batch in read_batches(path, ReadStats()):
        head.extend(batch[: SNIFF_LINES - len(head)])
        if len(head) >= SNIFF_LINES:
            break
    return [l for l in head if l.strip()]


def parser_for(path: str, log_format: Optional[str]) -> Tuple[Optional[Type[Parser]], bool]:
    parser_type, envelope = choose_format(_head(path), log_format)
    return parser_type, envelope is None


def splittable(path: str, log_format: Optional[str], min_bytes: Optional[int] = None) -> bool:
    """A plain (uncompressed) file big enough, in a format whose records are known to end."""
    try:
        if os.path.getsize(path) < (SPLIT_MIN_BYTES if min_bytes is None else min_bytes):
            return False
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError:
        return False
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic[:6] == b"\xfd7zXZ\x00":
        return False
    parser_type, plain = parser_for(path, log_format)
    return parser_type is not None and plain and parser_type.name in SPLIT_FORMATS


def _line_start_after(fh, offset: int) -> int:  # type: ignore[no-untyped-def]
    """The first line start at or after ``offset`` (the file's size if there is none)."""
    if offset <= 0:
        return 0
    fh.seek(offset - 1)
    pos = offset - 1
    while True:
        chunk = fh.read(1 << 16)
        if not chunk:
            return pos
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)


def _lines_before(fh, offsets: List[int]) -> List[int]:  # type: ignore[no-untyped-def]
    """Newlines before each of these (sorted) byte offsets, in one pass."""
    counts: List[int] = []
    fh.seek(0)
    pos = seen = 0
    for target in offsets:
        while pos < target:
            chunk = fh.read(min(COUNT_CHUNK, target - pos))
            if not chunk:
                break
            seen += chunk.count(b"\n")
            pos += len(chunk)
        counts.append(seen)
    return counts


def plan(path: str, parts: int) -> List[Range]:
    """``parts`` ranges: the first (read here, beside the detectors) smaller, by MAIN_WEIGHT."""
    size = os.path.getsize(path)
    weights = [MAIN_WEIGHT] + [1.0] * (parts - 1)
    cuts: List[int] = []
    acc = 0.0
    with open(path, "rb") as fh:
        for w in weights[:-1]:
            acc += w
            cuts.append(_line_start_after(fh, int(size * acc / sum(weights))))
        cuts = sorted(set(c for c in cuts if 0 < c < size))
        warms = [_line_start_after(fh, max(0, c - WARMUP_BYTES)) for c in cuts]
        offsets = sorted(set(cuts + warms))
        line_at = dict(zip(offsets, (n + 1 for n in _lines_before(fh, offsets))))
    ranges = [Range(0, 1, 1, None)]
    for cut, warm in zip(cuts, warms):
        ranges[-1].end_line = line_at[cut]
        ranges.append(Range(warm, line_at[warm], line_at[cut], None))
    return ranges


@dataclass
class RangeReport:
    last_line: int = 0  # the last line number read (the file's line count for the last range)
    unparsed: int = 0  # lines of its own the parser could not read
    cut_lines: int = 0
    problems: Tuple[str, ...] = ()


def _segments(first: int, last: int, rng: Range) -> Iterator[Tuple[int, int, bool]]:
    """Cut lines ``first..last`` (a chunk read) into runs ``(a, b, exact)``, ``b`` exclusive.

    Exact runs are fed line by line, so each event is labelled with the line it was emitted
    at: needed where ranges meet, for the first ``SPILL_LINES`` lines a range owns (the
    previous range's spill is merged with them) and from its end on (its spill). Elsewhere
    a run goes to the parser's ``feed_lines`` at once and its events are labelled with the
    run's last line: later than they really were, but before every line of the next run,
    which is all the merge needs. Runs never straddle the range's start or end."""
    start, end = rng.start_line, rng.end_line
    marks = {start, end} if end is not None else {start}
    exact_from = start if rng.warm_line < start else None  # the first range has nothing before it
    if exact_from is not None:
        marks.add(exact_from + SPILL_LINES + 1)
    cuts = sorted(m for m in marks if first < m <= last) + [last + 1]
    a = first
    for b in cuts:
        if b > a:
            in_head = exact_from is not None and exact_from <= a <= exact_from + SPILL_LINES
            yield a, b, in_head or (end is not None and a >= end)
        a = b


def parse_range(
    path: str, log_format: Optional[str], rng: Range, report: RangeReport, on_bytes: Optional[Callable[[int], None]] = None
) -> Iterator[List[Emitted]]:
    """The events a range owns, each with the line it was emitted at (see ``_segments``),
    a list per chunk read."""
    parser_type, _ = parser_for(path, log_format)
    assert parser_type is not None
    parser = parser_type(path)
    feed, feed_lines = parser.feed, parser.feed_lines
    start, end = rng.start_line, rng.end_line
    stop = end + SPILL_LINES if end is not None else None
    stats = ReadStats()
    lineno = rng.warm_line - 1  # the last line fed
    unparsed_at_start = unparsed_at_end = None
    for batch in read_batches(path, stats, on_bytes=on_bytes, offset=rng.warm_byte):
        first = lineno + 1
        if stop is not None and first + len(batch) - 1 > stop:
            batch = batch[: stop - first + 1]
        out: List[Emitted] = []
        for a, b, exact in _segments(first, first + len(batch) - 1, rng):
            if a == start:
                unparsed_at_start = parser.unparsed
            elif a == end:
                unparsed_at_end = parser.unparsed
            lines = batch[a - first : b - first]
            if exact:
                for n, line in enumerate(lines, a):
                    for e in feed(line, n) or ():
                        if start <= e.line and (end is None or e.line < end):
                            out.append((n, e))
            else:
                at = b - 1
                for e in feed_lines(lines, a):
                    if start <= e.line and (end is None or e.line < end):
                        out.append((at, e))
        lineno = first + len(batch) - 1
        yield out
        if lineno == stop:
            break
    else:
        yield [(lineno + 1, e) for e in parser.finish() if start <= e.line and (end is None or e.line < end)]
    if unparsed_at_end is None:
        unparsed_at_end = parser.unparsed
    report.last_line = lineno
    report.unparsed = unparsed_at_end - (unparsed_at_start or 0)
    report.cut_lines = stats.cut_lines
    report.problems = tuple(stats.problems)


def _spill_range(path: str, log_format: Optional[str], rng: Range, spill: str, slot: int) -> RangeReport:
    """Worker side: a range's events into ``spill`` (``agent.event_spill``), labelled with
    the line each was emitted at."""
    report = RangeReport()
    writer = SpillWriter(spill, slot)
    try:
        for batch in parse_range(path, log_format, rng, report):
            if batch:
                writer.write_when_read(batch)
    finally:
        writer.close()
    return report


def merged_events(ranges: List[Range], streams: Iterable[Iterable[Emitted]]) -> Iterator[Event]:
    """The ranges' events in the order one parser would have emitted them: by emitting line,
    an earlier range's first on the same line. ``streams`` are taken one at a time, in order."""
    carry: List[Emitted] = []  # emitted past the next range's start: they wait for its early events
    for i, stream in enumerate(streams):
        boundary = ranges[i + 1].start_line if i + 1 < len(ranges) else None
        merged = heapq.merge(carry, stream, key=_emitted_at) if carry else iter(stream)
        carry = []
        for item in merged:
            if boundary is not None and item[0] >= boundary:
                carry.append(item)
            else:
                yield item[1]
    for _, event in carry:
        yield event


def split_events(path: str, parts: int, log_format: Optional[str] = None) -> Iterator[Event]:
    """The events of ``path`` read as ``parts`` ranges, in this process (for tests and tools)."""
    ranges = plan(path, parts)
    reports = [RangeReport() for _ in ranges]
    # each range's events go through the workers' encoding, so the tests cover it too
    streams = ((x for batch in parse_range(path, log_format, r, rep) for x in decode(encode(batch))) for r, rep in zip(ranges, reports))
    times = LastTime()
    for event in merged_events(ranges, streams):
        times.fill((event,))
        yield event


def run_split(
    path: str,
    jobs: int,
    report: FileReport,
    pipeline: Pipeline,
    log_format: Optional[str],
    within: Callable[[Event], bool],
    context,  # type: ignore[no-untyped-def]
    on_bytes: Optional[Callable[[int], None]] = None,
) -> List[Finding]:
    """Scan one big file in ``jobs`` ranges through ``pipeline``; fills ``report``.
    ``on_bytes`` hears of the first range's bytes as they are read, the rest at the end."""
    ranges = plan(path, jobs)
    parser_type, _ = parser_for(path, log_format)
    assert parser_type is not None
    report.format = parser_type.name
    findings: List[Finding] = []
    times = LastTime()
    pending: List[Event] = []

    def flush() -> None:
        times.fill(pending)
        batch = [e for e in pending if within(e)]
        pending.clear()
        if batch:
            found = pipeline.feed_batch(batch)
            if found:
                findings.extend(found)

    reports = [RangeReport()]
    with tempfile.TemporaryDirectory(prefix="railwatch-split-") as tmp:
        spills = [os.path.join(tmp, f"range{i}.pickle") for i in range(len(ranges))]
        for spill in spills:
            open(spill, "wb").close()  # there before its worker starts: this process may look first
        read_upto = context.Array("q", len(ranges))
        # every range at once: this process reads the spills in order, and a worker waiting for
        # it (MAX_AHEAD_BYTES) must not hold up a range it reads first
        pool = cf.ProcessPoolExecutor(max_workers=max(1, len(ranges) - 1), mp_context=context,
                                      initializer=init_worker, initargs=(read_upto, os.getpid()))
        try:
            futures = [pool.submit(_spill_range, path, log_format, r, s, i) for i, (r, s) in enumerate(zip(ranges[1:], spills[1:]), 1)]
            counted = [0]

            def count(n: int) -> None:
                counted[0] += n
                if on_bytes is not None:
                    on_bytes(n)

            first = (x for batch in parse_range(path, log_format, ranges[0], reports[0], count) for x in batch)
            later = (follow(spill, fut.done, read_upto, i) for i, (spill, fut) in enumerate(zip(spills[1:], futures), 1))
            for event in merged_events(ranges, itertools.chain([first], later)):
                pending.append(event)
                if len(pending) >= FEED_BATCH:
                    flush()
            flush()
            reports.extend(f.result() for f in futures)
            if on_bytes is not None:
                on_bytes(max(0, os.path.getsize(path) - counted[0]))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    report.lines = reports[-1].last_line
    report.unparsed = sum(r.unparsed for r in reports)
    cut = sum(r.cut_lines for r in reports)
    if cut:
        report.problems.append(f"{path}: {cut} line(s) longer than 64 KiB were cut")
    for r in reports:
        report.problems.extend(p for p in r.problems if p not in report.problems)
    findings.extend(pipeline.flush(None))
    return findings


def _emitted_at(item: Emitted) -> int:
    return item[0]
