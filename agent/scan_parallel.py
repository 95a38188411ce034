"""``railwatch scan --jobs N``: different logs scanned in worker processes.

Each log (a group of rotated files) is one task: a worker builds its own parser,
detectors and pipeline, scans the group exactly as a one-log ``scan`` would, and
returns its findings, file reports and problems; the parent merges the findings by
fingerprint (``agent.aggregate``). Processes, not threads: parsing is pure Python and
holds the GIL.

What is lost: detectors only see the events of one log at a time, so correlation
*across* logs (Rails 500s next to Postgres "too many clients", Sidekiq failures next
to a Puma restart) is not made; findings that need one log only are the same.
Hence ``--jobs`` defaults to 1. Files of one log never split across workers: their
order (oldest rotation first) matters to the parsers and detectors.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from agent.aggregate import merge_findings
from agent.events import Finding
from agent.pipeline import Pipeline
from agent.sources.files import InputFile, file_size
from agent.sources.replay import FileReport, run_groups
from detectors import build_detectors
from detectors.base import AppFacts, Settings

PROGRESS_POLL_S = 0.25

_progress = None  # a shared byte counter in each worker (set by the pool initializer)
_parent = 0  # the scanning process; a worker whose parent died stops instead of scanning on


@dataclass
class ParallelOutcome:
    reports: Dict[str, FileReport]
    findings: List[Finding] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)  # detector failures, in log order
    events: int = 0


@dataclass
class _Task:
    members: List[InputFile]
    detectors: List[str]
    facts: AppFacts
    settings: Optional[Dict[str, Settings]]
    log_format: Optional[str]
    since: Optional[float]
    until: Optional[float]


def _init_worker(counter, parent: int) -> None:  # type: ignore[no-untyped-def]
    global _progress, _parent
    _progress = counter
    _parent = parent


def _count_bytes(n: int) -> None:
    """Called for every chunk read: counts progress, and ends an orphaned worker (the
    parent was killed by SIGTERM or OOM: nobody will read this worker's result)."""
    if _parent and os.getppid() != _parent:
        os._exit(1)
    if _progress is not None:
        with _progress.get_lock():
            _progress.value += n


def _scan_group(task: _Task):  # type: ignore[no-untyped-def]
    """Worker side: one log through its own pipeline."""
    errors: List[str] = []
    reports = {f.path: FileReport(f.path) for f in task.members}
    pipeline = Pipeline(build_detectors(task.detectors, task.facts, task.settings), on_error=errors.append)
    findings = run_groups([task.members], reports, pipeline, task.log_format, task.since, task.until, _count_bytes)
    return reports, merge_findings(findings), errors, pipeline.events


def _context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds with everything imported; it is only safe
    # while this process has a single thread (the daemon's threads, a test runner's)
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def scan_in_processes(
    groups: Sequence[List[InputFile]],
    jobs: int,
    detectors: List[str],
    facts: AppFacts,
    settings: Optional[Dict[str, Settings]],
    log_format: Optional[str],
    since: Optional[float],
    until: Optional[float],
    on_bytes: Optional[Callable[[int], None]] = None,
) -> ParallelOutcome:
    """Scan each group in a pool of ``jobs`` processes; biggest logs first, so the
    longest task does not start last."""
    order = sorted(range(len(groups)), key=lambda i: -sum(file_size(f.path) for f in groups[i]))
    ctx = _context()
    counter = ctx.Value("q", 0)
    results: Dict[int, tuple] = {}  # type: ignore[type-arg]
    workers = min(jobs, len(groups), _cores())
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(counter, os.getpid()))
    try:
        futures = {
            pool.submit(_scan_group, _Task(list(groups[i]), detectors, facts, settings, log_format, since, until)): i
            for i in order
        }
        pending = set(futures)
        seen = 0
        while pending:
            done, pending = cf.wait(pending, timeout=PROGRESS_POLL_S)
            for fut in done:
                results[futures[fut]] = fut.result()
            if on_bytes is not None and counter.value > seen:
                on_bytes(counter.value - seen)
                seen = counter.value
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    outcome = ParallelOutcome(reports={})
    for i in range(len(groups)):
        reports, findings, errors, events = results[i]
        outcome.reports.update(reports)
        outcome.findings.extend(findings)
        outcome.errors.extend(errors)
        outcome.events += events
    return outcome
