"""Replaying log files: each file's events, in order, and several logs merged into one timeline.

The reader behind ``railwatch scan`` (and ``scan --jobs``' workers). Each file gets its
format from its first lines (``agent.parsers.choose``) and its own parser. Files of one
log are read oldest rotation first; different logs (production.log, sidekiq.log,
postgresql.log) are merged by event time, so the detectors see one timeline, as they
would tailing the same logs live.

Speed: lines arrive in lists (one per chunk read, see ``read_batches``) and events
leave in lists, so the per-line cost here is one loop step and one ``feed`` call;
the parsers' own work is what remains.
"""
from __future__ import annotations

import heapq
import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from agent.events import Event, Finding
from agent.parsers.choose import SNIFF_LINES, choose_format
from agent.pipeline import Pipeline
from agent.sources.files import STDIN, InputFile, ReadStats, read_batches
from agent.sources.lasttime import LastTime

MERGE_BATCH = 4096  # merged events handed to the pipeline at a time


@dataclass
class FileReport:
    """What reading one file found: its format, line counts and problems."""

    path: str
    format: str = "unknown"
    lines: int = 0
    unparsed: int = 0
    envelope: str = ""
    problems: List[str] = field(default_factory=list)


def _year_of(path: str) -> int:
    # syslog lines carry no year: take the file's modification year
    try:
        return datetime.fromtimestamp(os.path.getmtime(path), tz=timezone.utc).year if path != STDIN else datetime.now(timezone.utc).year
    except OSError:
        return datetime.now(timezone.utc).year


def iter_file_event_batches(
    path: str, report: FileReport, log_format: Optional[str] = None, on_bytes: Optional[Callable[[int], None]] = None
) -> Iterator[List[Event]]:
    """Events of one file, a list per chunk of lines read (lists may be empty); the
    file's report is filled in as it is read."""
    stats = ReadStats()
    batches = read_batches(path, stats, on_bytes=on_bytes)
    head: List[str] = []
    first: List[List[str]] = []  # the batches the sniffing sample came from, parsed next
    for batch in batches:
        first.append(batch)
        head.extend(batch[: SNIFF_LINES - len(head)])
        if len(head) >= SNIFF_LINES:
            break
    sample = [l for l in head if l.strip()]
    parser_type, envelope = choose_format(sample, log_format)
    if parser_type is None:
        for _ in batches:  # count what we cannot read, so the report says how much was skipped
            pass
        report.lines = stats.lines
        report.unparsed = stats.lines
        report.problems.extend(stats.problems)
        if stats.lines or not stats.problems:
            report.problems.append(
                f"{path}: unknown log format (not Rails, lograge, Sidekiq, Puma, Bullet, Postgres or PgBouncer); skipped"
                if stats.lines else f"{path}: empty file"
            )
        return
    parser = parser_type(path)
    report.format = parser_type.name
    report.envelope = envelope.name if envelope else ""
    year = _year_of(path) if envelope is not None and envelope.name == "syslog" else 1970
    times = LastTime()
    lineno = 0
    feed = parser.feed
    feed_lines = parser.feed_lines
    for batch in itertools.chain(first, batches):
        out: List[Event] = []
        # the hot loop: a parser's feed_lines per chunk (a fast path of its own, or feed() per line)
        if envelope is None:
            out = feed_lines(batch, lineno + 1)
            lineno += len(batch)
        else:
            split = envelope.split
            for line in batch:
                lineno += 1
                inner, hint = split(line, year)
                events = feed(inner, lineno, hint)
                if events:
                    out.extend(events)
        times.fill(out)
        yield out
    tail = list(parser.finish())
    times.fill(tail)
    yield tail
    report.lines = stats.lines
    report.unparsed = parser.unparsed
    if stats.cut_lines:
        report.problems.append(f"{path}: {stats.cut_lines} line(s) longer than 64 KiB were cut")
    report.problems.extend(stats.problems)


def iter_file_events(
    path: str, report: FileReport, log_format: Optional[str] = None, on_bytes: Optional[Callable[[int], None]] = None
) -> Iterator[Event]:
    """Events of one file, one by one, with the file's report filled in as it is read."""
    for batch in iter_file_event_batches(path, report, log_format, on_bytes):
        yield from batch


def iter_events(path: str, log_format: Optional[str] = None) -> Iterator[Event]:
    """Events of one file (for tests and tools)."""
    return iter_file_events(path, FileReport(path), log_format)


def _group_batches(members: List[InputFile], reports: Dict[str, FileReport], log_format: Optional[str], on_bytes) -> Iterator[List[Event]]:  # type: ignore[no-untyped-def]
    for f in members:
        yield from iter_file_event_batches(f.path, reports[f.path], log_format, on_bytes)


def run_groups(
    groups: Sequence[List[InputFile]],
    reports: Dict[str, FileReport],
    pipeline: Pipeline,
    log_format: Optional[str] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    on_bytes: Optional[Callable[[int], None]] = None,
) -> List[Finding]:
    """Feed the events of these logs, merged by event time, through ``pipeline``; flush at the end."""
    findings: List[Finding] = []
    window = since is not None or until is not None
    if len(groups) == 1:  # one log: no merge, events go through in lists
        for batch in _group_batches(groups[0], reports, log_format, on_bytes):
            if window:
                batch = [e for e in batch if _within(e, since, until)]
            if batch:
                found = pipeline.feed_batch(batch)
                if found:
                    findings.extend(found)
    elif groups:  # several logs: one timeline
        streams = [itertools.chain.from_iterable(_group_batches(m, reports, log_format, on_bytes)) for m in groups]
        findings.extend(feed_merged(streams, pipeline, since, until))
    findings.extend(pipeline.flush(None))
    return findings


def feed_merged(
    streams: Sequence[Iterator[Event]], pipeline: Pipeline, since: Optional[float] = None, until: Optional[float] = None,
    after_batch: Optional[Callable[[], None]] = None,
) -> List[Finding]:
    """Feed these logs' events through ``pipeline`` as one timeline, merged by event time (each
    log's own order kept), ``MERGE_BATCH`` at a time; ``after_batch`` is called after each."""
    findings: List[Finding] = []
    window = since is not None or until is not None
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_event_time)
    while True:
        batch = list(itertools.islice(merged, MERGE_BATCH))
        if not batch:
            break
        if window:
            batch = [e for e in batch if _within(e, since, until)]
        if batch:
            found = pipeline.feed_batch(batch)
            if found:
                findings.extend(found)
        if after_batch is not None:
            after_batch()
    return findings


def _within(event: Event, since: Optional[float], until: Optional[float]) -> bool:
    ts = event.ts
    if ts is None:
        return True
    return not ((since is not None and ts < since) or (until is not None and ts > until))


def _event_time(event: Event) -> float:
    return event.ts if event.ts is not None else 0.0
