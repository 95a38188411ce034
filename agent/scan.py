"""``railwatch scan``: drive the pipeline from files as fast as they can be read.

Each input file gets its format sniffed from its first lines (or forced), and its
own parser. Files of one log are read oldest rotation first; different logs
(production.log, sidekiq.log, postgresql.log) are merged by event time, so the
detectors see one timeline, as they would tailing the same logs live.
"""
from __future__ import annotations

import heapq
import itertools
import time as _time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Type

from agent.aggregate import merge_findings
from agent.events import Event, Finding
from agent.parsers import BY_NAME, MIN_SNIFF_SCORE, Parser, sniff
from agent.parsers.envelope import ENVELOPES, Envelope
from agent.pipeline import Pipeline
from agent.sources.files import STDIN, InputFile, ReadStats, expand, group_files, read_lines
from detectors import REGISTRY
from detectors.base import AppFacts, DetectorContext, Settings

SNIFF_LINES = 64
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
    """Bad arguments (unknown detector or format): exit status 2."""


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


def iter_file_events(
    path: str, report: FileReport, log_format: Optional[str] = None, on_bytes: Optional[Callable[[int], None]] = None
) -> Iterator[Event]:
    """Events of one file, with the file's report filled in as it is read."""
    stats = ReadStats()
    lines = read_lines(path, stats, on_bytes=on_bytes)
    head = list(itertools.islice(lines, SNIFF_LINES))
    sample = [l for l in head if l.strip()]
    parser_type, envelope = choose_format(sample, log_format)
    if parser_type is None:
        for _ in lines:  # count what we cannot read, so the report says how much was skipped
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
    for line in itertools.chain(head, lines):
        lineno += 1
        hint = None
        if envelope is not None:
            line, hint = envelope.split(line, year)
        for event in parser.feed(line, lineno, hint):
            if event.ts is None:
                event.ts = last_ts
            else:
                last_ts = event.ts
            yield event
    for event in parser.finish():
        if event.ts is None:
            event.ts = last_ts
        yield event
    report.lines = stats.lines
    report.unparsed = parser.unparsed
    if stats.cut_lines:
        report.problems.append(f"{path}: {stats.cut_lines} line(s) longer than 64 KiB were cut")
    report.problems.extend(stats.problems)


def iter_events(path: str, log_format: Optional[str] = None) -> Iterator[Event]:
    """Events of one file (for tests and tools)."""
    return iter_file_events(path, FileReport(path), log_format)


def _group_events(members: List[InputFile], reports: Dict[str, FileReport], log_format: Optional[str], on_bytes) -> Iterator[Event]:  # type: ignore[no-untyped-def]
    for f in members:
        yield from iter_file_events(f.path, reports[f.path], log_format, on_bytes)


def build_detectors(names: Optional[Sequence[str]], facts: AppFacts, settings: Optional[Dict[str, Settings]] = None) -> list:  # type: ignore[type-arg]
    chosen = list(names) if names else list(REGISTRY)
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise UsageError(f"unknown detector {unknown[0]!r}; choose from: {', '.join(REGISTRY) or '(none)'}")
    context = DetectorContext(facts=facts)
    settings = settings or {}
    return [REGISTRY[n](settings.get(n), context) for n in chosen]


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
) -> ScanResult:
    """Scan files and return merged incidents, per-file reports and problems."""
    started = _time.perf_counter()
    if log_format is not None and log_format not in BY_NAME:
        raise UsageError(f"unknown log format {log_format!r}; choose from: {', '.join(BY_NAME)}")
    instances = build_detectors(detectors, facts, settings)
    errors: List[str] = []

    def problem(message: str) -> None:
        errors.append(message)
        if on_error is not None:
            on_error(message)

    files, problems = expand(list(paths))
    for p in problems:
        problem(p)
    reports = {f.path: FileReport(f.path) for f in files}
    groups = group_files(files)
    streams = [_group_events(members, reports, log_format, on_bytes) for members in groups.values()]
    pipeline = Pipeline(instances, on_error=problem)
    findings: List[Finding] = []
    merged: Iterable[Event] = heapq.merge(*streams, key=_event_time) if len(streams) > 1 else (streams[0] if streams else ())
    reported = set()
    for event in merged:
        if since is not None and event.ts is not None and event.ts < since:
            continue
        if until is not None and event.ts is not None and event.ts > until:
            continue
        findings.extend(pipeline.feed(event))
    findings.extend(pipeline.flush(None))
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
        events=pipeline.events,
        seconds=_time.perf_counter() - started,
    )


def _event_time(event: Event) -> float:
    return event.ts if event.ts is not None else 0.0
