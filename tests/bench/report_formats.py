"""Benchmark: `scan --format html` (series collected, charts drawn) against `--format json`.

    python tests/bench/report_formats.py [SIZE_MB] [KIND]     # default 150 MB, rails-info; RW_BENCH_RUNS=1 for one run each

Each format runs in its own process, alternated, best of N; peak RSS from the child's
rusage. The target (issue 16): html within 10 % of json, under 100 MB RSS.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUNS = int(os.environ.get("RW_BENCH_RUNS", "3"))  # best of RUNS; 1 for a quick look at 1 GB


def _run(fmt: str, log: str, out: str) -> tuple:
    cmd = [sys.executable, "-c", "import resource,sys;from agent.cli import main;sys.argv=sys.argv[1:]\n"
           "try:\n main()\nfinally:\n sys.stderr.write('RSS %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
           "railwatch", "scan", "--format", fmt, "-o", out, "--fail-on", "never", log]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT)
    seconds = time.perf_counter() - started
    rss_kb = int(proc.stderr.rsplit("RSS ", 1)[1].split()[0])
    return seconds, rss_kb / 1024


def main() -> None:
    size = float(sys.argv[1]) if len(sys.argv) > 1 else 150.0
    kind = sys.argv[2] if len(sys.argv) > 2 else "rails-info"
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "production.log")
        subprocess.run([sys.executable, os.path.join(HERE, "genlogs.py"), kind, str(size), log, "--seed", "1"], check=True)
        best = {"json": (1e9, 0.0), "html": (1e9, 0.0)}
        for _ in range(RUNS):
            for fmt in ("json", "html"):
                seconds, rss = _run(fmt, log, os.path.join(tmp, "report." + fmt))
                best[fmt] = (min(best[fmt][0], seconds), max(best[fmt][1], rss))
        for fmt, (seconds, rss) in best.items():
            print(f"{fmt:5} {seconds:6.1f} s  peak RSS {rss:5.1f} MB  ({size:.0f} MB {kind}, best of {RUNS})")
        print(f"html / json = {best['html'][0] / best['json'][0]:.3f}")


if __name__ == "__main__":
    main()
