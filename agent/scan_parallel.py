"""``railwatch scan --jobs N`` on several logs, or on one that cannot be split: the logs
parsed in worker processes, the detectors run once, here.

Each log (a group of rotated files, oldest first: their order matters to the parsers) is
parsed by one worker, which spills its events to a temporary file (``agent.event_spill``).
This process merges the logs' events by event time exactly as ``run_groups`` does in one
process and feeds them to its one pipeline, so the findings are the ones ``--jobs 1``
gives, correlation across logs included: a Rails 500 beside Postgres' "too many
clients", the N+1 detector matching a tagged Postgres log to the Rails log's requests.
(An earlier design ran a pipeline per log in each worker; it lost that correlation, and
with it, for example, turned a known endpoint's N+1 into a "new endpoint" one.)

What runs in parallel is parsing, about half of a Rails scan's work; the detectors and
the decoding of the workers' events stay in this process, which bounds the speed-up.
A Sidekiq log is read here, not in a worker (``PARSED_HERE``): it has about one event
per line, and shipping events is not free (42 MB Sidekiq 7 log, 337 k events: parsing
0.77 s; a worker encoding them 1.44 s, this process decoding them 0.58 s), so a worker
would spend three times what this process saves. Processes, not threads: parsing is pure
Python and holds the GIL.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from agent import event_spill
from agent.event_spill import SpillWriter, follow
from agent.events import Event, Finding
from agent.pipeline import Pipeline
from agent.scan_split import parser_for
from agent.sources.files import InputFile, file_size
from agent.sources.replay import FileReport, _group_batches, feed_merged, run_groups

#: formats read in this process even with --jobs (see the module doc)
PARSED_HERE = frozenset(("sidekiq",))

_progress = None  # a shared byte counter in each worker (set by the pool initializer)


def _init_worker(counter, read_upto, parent: int) -> None:  # type: ignore[no-untyped-def]
    global _progress
    _progress = counter
    event_spill.init_worker(read_upto, parent)  # the parent's pid: event_spill.reader_gone


def _count_bytes(n: int) -> None:
    """Called for every chunk read: counts progress, and ends an orphaned worker (the
    parent was killed by SIGTERM or OOM: nobody will read this worker's result)."""
    if event_spill.reader_gone():
        os._exit(1)
    if _progress is not None:
        with _progress.get_lock():
            _progress.value += n


def _parse_groups(tasks: List[Tuple[List[InputFile], str, int]], log_format: Optional[str]) -> Dict[str, FileReport]:
    """Worker side: each log's events into its own spill (``(members, spill, slot)``), a chunk of
    each in turn. A log whose reader is far behind (``event_spill.MAX_AHEAD_BYTES``) waits while
    the others go on: the merge may be waiting for one of them."""
    reports = {f.path: FileReport(f.path) for members, _, _ in tasks for f in members}
    active = [(SpillWriter(spill, slot), _group_batches(members, reports, log_format, _count_bytes)) for members, spill, slot in tasks]
    try:
        while active:
            moved = False
            for writer, batches in list(active):
                if writer.blocked():
                    continue
                moved = True
                batch = next(batches, None)
                if batch is None:
                    writer.close()
                    active.remove((writer, batches))
                elif batch:
                    writer.write([(0, e) for e in batch])
            if not moved:
                if event_spill.reader_gone():
                    os._exit(1)
                time.sleep(event_spill.WAIT_POLL_S)
    finally:
        for writer, _ in active:
            writer.fh.close()
    return reports


def _parsed_here(members: List[InputFile], log_format: Optional[str]) -> bool:
    parser_type, _ = parser_for(members[0].path, log_format)  # a log's first file names its format
    return parser_type is not None and parser_type.name in PARSED_HERE


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


def _bundles(shipped: List[int], groups: Sequence[List[InputFile]], workers: int) -> List[List[int]]:
    """The shipped logs dealt to ``workers`` bundles of about equal bytes, biggest first. Every
    log starts at once (the merge needs the first events of all of them), so a worker takes
    several when there are more logs than workers."""
    bundles: List[List[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(shipped, key=lambda i: -sum(file_size(f.path) for f in groups[i])):
        lightest = load.index(min(load))
        bundles[lightest].append(i)
        load[lightest] += sum(file_size(f.path) for f in groups[i])
    return [b for b in bundles if b]


def run_groups_in_processes(
    groups: Sequence[List[InputFile]],
    jobs: int,
    reports: Dict[str, FileReport],
    pipeline: Pipeline,
    log_format: Optional[str] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    on_bytes: Optional[Callable[[int], None]] = None,
) -> List[Finding]:
    """``run_groups`` with each log parsed in one of up to ``jobs`` worker processes, except
    those read here (``PARSED_HERE``); fills ``reports`` and flushes the pipeline at the end."""
    shipped = [i for i, members in enumerate(groups) if not _parsed_here(members, log_format)]
    if not shipped:
        return run_groups(groups, reports, pipeline, log_format, since, until, on_bytes)
    ctx = _context()
    counter = ctx.Value("q", 0)
    read_upto = ctx.Array("q", len(groups))
    bundles = _bundles(shipped, groups, max(1, min(jobs, len(shipped), _cores())))
    reported = [0]

    def progress() -> None:
        if on_bytes is not None and counter.value > reported[0]:
            on_bytes(counter.value - reported[0])
            reported[0] = counter.value

    with tempfile.TemporaryDirectory(prefix="railwatch-scan-") as tmp:
        spills = {i: os.path.join(tmp, f"log{i}.spill") for i in shipped}
        for spill in spills.values():
            open(spill, "wb").close()  # there before its worker starts: this process may look first
        pool = cf.ProcessPoolExecutor(max_workers=len(bundles), mp_context=ctx, initializer=_init_worker,
                                      initargs=(counter, read_upto, os.getpid()))
        try:
            futures = [pool.submit(_parse_groups, [(list(groups[i]), spills[i], i) for i in bundle], log_format) for bundle in bundles]
            worker_of = {i: futures[n] for n, bundle in enumerate(bundles) for i in bundle}
            streams: List[Iterator[Event]] = [
                (e for _, e in follow(spills[i], worker_of[i].done, read_upto, i)) if i in worker_of
                else itertools.chain.from_iterable(_group_batches(groups[i], reports, log_format, on_bytes))
                for i in range(len(groups))
            ]
            findings = feed_merged(streams, pipeline, since, until, progress)  # one timeline, as run_groups merges it
            for future in futures:
                reports.update(future.result())
            progress()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    findings.extend(pipeline.flush(None))
    return findings
