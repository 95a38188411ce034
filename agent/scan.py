"""``railwatch scan``: the driver that replays files through the pipeline once.

The engine pieces live below it: format choice in ``agent.parsers.choose``, the file
reader and the merge of several logs by event time in ``agent.sources.replay``, the
detectors from ``detectors.build_detectors``. ``railwatch run`` (``agent.daemon``)
drives the same pieces over tailed files.

``jobs > 1`` parses in worker processes and runs the detectors once, here, over the
same events in the same order, so the findings are the ones one job gives: one big plain
file is read in byte ranges (``agent.scan_split``), anything else a log per worker
(``agent.scan_parallel``). The default is one job: a scan run on a production server
during an incident should not take every core unasked.
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from agent.aggregate import merge_findings
from agent.events import Finding
from agent.parsers import BY_NAME
from agent.pipeline import Pipeline
from agent.series import SeriesCollector
from agent.sources.files import STDIN, expand, group_files
from agent.sources.replay import FileReport, run_groups
from detectors import UnknownDetector, build_detectors
from detectors.base import AppFacts, Settings


@dataclass
class ScanResult:
    files: List[FileReport]
    incidents: List[Finding]
    errors: List[str]  # one-line messages: bad paths, damaged files, unknown formats
    detectors: List[str]
    events: int = 0
    seconds: float = 0.0
    facts: AppFacts = AppFacts()  # what --app told (reports mark guessed facts)
    series: Optional[SeriesCollector] = None  # per-bucket signals for timelines


def _splittable(path: str, log_format: Optional[str]) -> bool:
    from agent.scan_split import splittable

    return splittable(path, log_format)


class UsageError(ValueError):
    """Bad arguments (unknown format, --jobs < 1): exit status 2."""


class WorkerDied(RuntimeError):
    """A ``--jobs`` worker process ended abruptly (killed, out of memory) or could not write its
    events (a full TMPDIR): the scan is incomplete."""


def _in_processes(files, groups, jobs, reports, pipeline, log_format, since, until, on_bytes) -> List[Finding]:  # type: ignore[no-untyped-def]
    """The findings of ``--jobs`` > 1: one big plain file in byte ranges, anything else a log per worker."""
    from concurrent.futures.process import BrokenProcessPool

    from agent.scan_parallel import _context, run_groups_in_processes
    from agent.scan_split import run_split
    from agent.sources.replay import _within

    try:
        if len(files) == 1 and _splittable(files[0].path, log_format):
            window = since is not None or until is not None
            path = files[0].path
            return run_split(
                path, jobs, reports[path], pipeline, log_format, (lambda e: _within(e, since, until)) if window else (lambda e: True),
                _context(), on_bytes,
            )
        return run_groups_in_processes(groups, jobs, reports, pipeline, log_format, since, until, on_bytes)
    except BrokenProcessPool:
        raise WorkerDied("a --jobs worker process ended abruptly (killed, or out of memory?): the scan is incomplete; "
                         "run it again, or with --jobs 1") from None
    except OSError as exc:  # the workers' spills: a full or unwritable temporary directory
        import tempfile

        raise WorkerDied(f"--jobs could not hand events over through {tempfile.gettempdir()} ({exc.strerror or exc}): "
                         "the scan is incomplete; set TMPDIR to a disk with room, or use --jobs 1") from None


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

    ``jobs`` > 1 parses in up to that many processes (see the module doc); the findings
    do not change.
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
    reports = {f.path: FileReport(f.path) for f in files}
    series = SeriesCollector()  # fed like a detector; never reports findings
    pipeline = Pipeline(list(instances) + [series], on_error=problem)  # type: ignore[list-item]
    in_processes = jobs > 1 and files and not any(f.path == STDIN for f in files)
    if in_processes:
        findings = _in_processes(files, groups, jobs, reports, pipeline, log_format, since, until, on_bytes)
    else:
        findings = run_groups(groups, reports, pipeline, log_format, since, until, on_bytes)
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
        events=pipeline.events,
        seconds=_time.perf_counter() - started,
        facts=facts,
        series=series,
    )

