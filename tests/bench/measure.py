"""One measurement in a fresh process, printed as one JSON line (run.py starts it).

    python tests/bench/measure.py loop PATH          bare `for line in file` (text mode, UTF-8)
    python tests/bench/measure.py read PATH          railwatch's reader only (agent.sources.files)
    python tests/bench/measure.py parse PATH         reader + parser, no detector
    python tests/bench/measure.py scan [--jobs N] [--split-min-bytes B] PATH...   agent.scan.scan() with every detector
    python tests/bench/measure.py idle               the interpreter with railwatch imported

A fresh process per figure: each starts from the same state, and its peak RSS
(VmHWM) is its own; run.py samples the RSS of ``--jobs`` workers with psutil. Times
exclude interpreter start-up and imports.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space made by exec; ru_maxrss
    on Linux also keeps the high-water mark of the parent that forked us, so it is the
    fallback only (macOS)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def main(argv: list) -> None:  # type: ignore[type-arg]
    mode, args = argv[0], argv[1:]
    jobs = 1
    if args[:1] == ["--jobs"]:
        jobs, args = int(args[1]), args[2:]
    if args[:1] == ["--split-min-bytes"]:  # one file is split from this size on (agent.scan_split)
        import agent.scan_split

        agent.scan_split.SPLIT_MIN_BYTES, args = int(args[1]), args[2:]
    from agent.scan import scan
    from agent.sources.replay import FileReport, iter_file_event_batches
    from agent.sources.files import ReadStats, read_batches

    out = {"mode": mode, "jobs": jobs}
    cpu_before = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
    started = time.perf_counter()
    if mode == "loop":
        n = 0
        with open(args[0], encoding="utf-8", errors="replace") as fh:
            for _line in fh:
                n += 1
        out.update(lines=n)
    elif mode == "read":
        stats = ReadStats()
        n = 0
        for batch in read_batches(args[0], stats):
            for _line in batch:
                n += 1
        out.update(lines=n)
    elif mode == "parse":
        report = FileReport(args[0])
        events = 0
        for batch in iter_file_event_batches(args[0], report):
            events += len(batch)
        out.update(lines=report.lines, events=events, format=report.format, unparsed=report.unparsed)
    elif mode == "scan":
        result = scan(args, jobs=jobs)
        out.update(
            lines=sum(f.lines for f in result.files), events=result.events, incidents=len(result.incidents),
            formats=[f.format for f in result.files], errors=result.errors[:5],
            detectors=result.detectors,
        )
    elif mode != "idle":
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - started
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime")) - cpu_before
    # cpu_share: cores actually used on average; below jobs x 0.9 the machine was busy with something else
    out.update(seconds=seconds, cpu_seconds=cpu, cpu_share=cpu / seconds if seconds > 0 else 0.0, rss_mb=_peak_rss_mb())
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
