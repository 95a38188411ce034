"""``railwatch scan``: drive the pipeline from files as fast as they can be read.

Each input file gets its format sniffed from its first lines (or forced), and its
own parser. Files of one log are read oldest rotation first; different logs
(production.log, sidekiq.log, postgresql.log) are merged by event time, so the
detectors see one timeline, as they would tailing the same logs live.

Speed: lines arrive in lists (one per chunk read, see ``read_batches``) and events
leave in lists, so the per-line cost here is one loop step and one ``feed`` call;
the parsers' own work is what remains. ``jobs > 1`` scans different logs in worker
processes (``agent.scan_parallel``): each log gets its own pipeline, so detectors
that correlate events *across* logs (a Rails 500 with a Postgres "too many clients")
do not see both sides. That is why the default is one job.
"""
from __future__ import annotations

import heapq
import itertools
import time as _time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from agent.aggregate import merge_findings
from agent.events import Event, Finding
from agent.parsers import BY_NAME, MIN_SNIFF_SCORE, Parser, sniff
from agent.parsers.envelope import ENVELOPES, Envelope
from agent.pipeline import Pipeline
from agent.sources.files import STDIN, InputFile, ReadStats, expand, group_files, read_batches
from detectors import UnknownDetector, build_detectors
from detectors.base import AppFacts, Settings

SNIFF_LINES = 64
MERGE_BATCH = 4096  # merged events handed to the pipeline at a time
MIN_ENVELOPE_SHARE = 0.6


@dataclass
class FileReport:
    path: str
    format: str = "unknown"
    lines: int = 0
    unparsed: int = 0
    envelope: str = ""
    problems: List[str] = field(default_factory=list)


@dataclass
class ScanResult:
    files: List[FileReport]
    incidents: List[Finding]
    errors: List[str]  # one-line messages: bad paths, damaged files, unknown formats
    detectors: List[str]
    events: int = 0
    seconds: float = 0.0


class UsageError(ValueError):
    """Bad arguments (unknown format, --jobs < 1): exit status 2."""


def choose_format(sample: Sequence[str], forced: Optional[str]) -> Tuple[Optional[Type[Parser]], Optional[Envelope]]:
    """Pick the parser (and envelope) for a file from its first lines."""
    if forced:
        parser = BY_NAME[forced]
        if parser.sniff(sample) >= MIN_SNIFF_SCORE:
            return parser, None
        for env in ENVELOPES:
            if env.share(sample) >= MIN_ENVELOPE_SHARE and parser.sniff([env.split(l, 1970)[0] for l in sample]) >= MIN_SNIFF_SCORE:
                return parser, env
        return parser, None
    parser, _ = sniff(sample)
    if parser is not None:
        return parser, None
    for env in ENVELOPES:
        if env.share(sample) >= MIN_ENVELOPE_SHARE:
            parser, _ = sniff([env.split(l, 1970)[0] for l in sample])
            if parser is not None:
                return parser, env
    return None, None


def _year_of(path: str) -> int:
    # syslog lines carry no year: take the file's modification year
    import os
    from datetime import datetime, timezone

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
    last_ts: Optional[float] = None
    lineno = 0
    feed = parser.feed
    for batch in itertools.chain(first, batches):
        out: List[Event] = []
        # the hot loop: one step and one feed() per line; most lines yield no event
        if envelope is None:
            for line in batch:
                lineno += 1
                events = feed(line, lineno)
                if events:
                    out.extend(events)
        else:
            split = envelope.split
            for line in batch:
                lineno += 1
                inner, hint = split(line, year)
                events = feed(inner, lineno, hint)
                if events:
                    out.extend(events)
        for event in out:  # lines without a time of their own take the last time seen
            if event.ts is None:
                event.ts = last_ts
            else:
                last_ts = event.ts
        yield out
    tail = list(parser.finish())
    for event in tail:
        if event.ts is None:
            event.ts = last_ts
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
    elif groups:  # several logs: one timeline, merged by event time (each log's own order kept)
        streams = [itertools.chain.from_iterable(_group_batches(m, reports, log_format, on_bytes)) for m in groups]
        merged = heapq.merge(*streams, key=_event_time)
        while True:
            batch = list(itertools.islice(merged, MERGE_BATCH))
            if not batch:
                break
            if window:
                batch = [e for e in batch if _within(e, since, until)]
            found = pipeline.feed_batch(batch)
            if found:
                findings.extend(found)
    findings.extend(pipeline.flush(None))
    return findings


def _within(event: Event, since: Optional[float], until: Optional[float]) -> bool:
    ts = event.ts
    if ts is None:
        return True
    return not ((since is not None and ts < since) or (until is not None and ts > until))


def scan(
    paths: Sequence[str],
    detectors: Optional[Sequence[str]] = None,
    facts: AppFacts = AppFacts(),
    log_format: Optional[str] = None,
    settings: Optional[Dict[str, Settings]] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    on_bytes: Optional[Callable[[int], None]] = None,
    on_error: Optional[Callable[[str], None]] = None,
    jobs: int = 1,
) -> ScanResult:
    """Scan files and return merged incidents, per-file reports and problems.

    ``jobs`` > 1 scans different logs in that many processes (see the module doc:
    cross-log correlation is lost); files of one log always stay in one process.
    """
    started = _time.perf_counter()
    if log_format is not None and log_format not in BY_NAME:
        raise UsageError(f"unknown log format {log_format!r}; choose from: {', '.join(BY_NAME)}")
    if jobs < 1:
        raise UsageError("--jobs must be 1 or more")
    try:
        instances = build_detectors(detectors, facts, settings)
    except UnknownDetector as exc:
        raise UsageError(str(exc)) from None
    errors: List[str] = []

    def problem(message: str) -> None:
        errors.append(message)
        if on_error is not None:
            on_error(message)

    files, problems = expand(list(paths))
    for p in problems:
        problem(p)
    groups = list(group_files(files).values())
    if jobs > 1 and len(groups) > 1 and not any(f.path == STDIN for f in files):
        from agent.scan_parallel import scan_in_processes

        outcome = scan_in_processes(
            groups, jobs, [d.name for d in instances], facts, settings, log_format, since, until, on_bytes
        )
        reports, findings, events = outcome.reports, outcome.findings, outcome.events
        for message in outcome.errors:
            problem(message)
    else:
        reports = {f.path: FileReport(f.path) for f in files}
        pipeline = Pipeline(instances, on_error=problem)
        findings = run_groups(groups, reports, pipeline, log_format, since, until, on_bytes)
        events = pipeline.events
    reported = set()
    for f in files:
        for message in reports[f.path].problems:
            if message not in reported:
                reported.add(message)
                problem(message)
    return ScanResult(
        files=[reports[f.path] for f in files],
        incidents=merge_findings(findings),
        errors=errors,
        detectors=[d.name for d in instances],
        events=events,
        seconds=_time.perf_counter() - started,
    )


def _event_time(event: Event) -> float:
    return event.ts if event.ts is not None else 0.0
