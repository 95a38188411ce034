"""Every scan benchmark of issue 8 in one command, with its baselines measured in the same run.

    python tests/bench/run.py                    # 300 MB per log, memory at 0.5 and 2 GB
    python tests/bench/run.py --quick            # 20 MB per log, memory at 50 and 200 MB (a minute)
    python tests/bench/run.py --huge             # adds the 5 GB memory run (disk: ~8 GB in the temp dir)
    python tests/bench/run.py --markdown out.md  # also write the tables as Markdown
    python tests/bench/run.py --skip throughput,memory,jobs   # the daemon only (daemon.py, ~4 minutes)

Logs are generated (deterministic, see genlogs.py) into a temporary directory that is
removed afterwards unless ``--dir`` is given. Each figure runs in a fresh process
(measure.py); ``--repeat N`` keeps the best of N. Baselines: a bare Python
``for line in file`` loop and ``grep -c`` over the same file, measured right before.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import genlogs  # noqa: E402

# (generator kind, file name, grep pattern, target lines/s, target description)
LOGS = [
    ("rails-info", "production.log", "Completed", 600_000, ">= 600,000 lines/s (issue 18)"),
    ("rails-debug", "debug.log", "ms)", 250_000, ">= 250,000 lines/s"),
    ("sidekiq", "sidekiq.log", "INFO", 500_000, ">= 500,000 lines/s (issue 18)"),
    ("sidekiq7", "sidekiq7.log", "INFO", 500_000, ">= 500,000 lines/s (issue 18)"),
    ("rails-corpus", "corpus.log", "Completed", 600_000, ">= 600,000 lines/s (as info level)"),
]
TITLES = {
    "rails-info": "Rails production log, info level",
    "rails-debug": "Rails debug log, ~85 % SQL + ↳ lines",
    "sidekiq": "Sidekiq 4/5 log (corpus layout)",
    "sidekiq7": "Sidekiq 6/7 log (pid= tid= layout)",
    "rails-corpus": "Rails 5-7 production logs of the corpus, repeated (real lines)",
}
RSS_TARGET_MB = 100


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(mode: str, paths: List[str], jobs: int = 1, repeat: int = 1, split_min_bytes: Optional[int] = None) -> Dict[str, object]:
    """Best of ``repeat`` runs of measure.py in a fresh interpreter. While it runs, the RSS
    of its worker processes (``--jobs``) is sampled with psutil: ``workers_rss_mb``."""
    import psutil

    best: Optional[Dict[str, object]] = None
    cmd = ([sys.executable, os.path.join(HERE, "measure.py"), mode] + (["--jobs", str(jobs)] if jobs > 1 else [])
           + (["--split-min-bytes", str(split_min_bytes)] if split_min_bytes is not None else []) + paths)
    for _ in range(repeat):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        workers_peak = 0
        watched = psutil.Process(proc.pid)
        while jobs > 1 and proc.poll() is None:  # one process: its own VmHWM is exact, no sampling
            try:
                for child in watched.children():
                    workers_peak = max(workers_peak, child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.2)  # sparse: the sampler must not take CPU from the workers it measures
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"benchmark: {' '.join(cmd)} failed:\n{stderr[-3000:]}")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["workers_rss_mb"] = workers_peak / 2**20
        if best is None or result["seconds"] < best["seconds"]:  # type: ignore[operator]
            best = result
    assert best is not None
    return best


def grep_seconds(path: str, pattern: str, repeat: int) -> float:
    best = float("inf")
    env = dict(os.environ, LC_ALL="C")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(["grep", "-c", "-F", pattern, path], capture_output=True, env=env)
        best = min(best, time.perf_counter() - started)
    return best


def generate(kind: str, size_mb: float, directory: str, name: str) -> str:
    """Generate once per (kind, size) in ``directory``; a finished file is reused."""
    path = os.path.join(directory, f"{kind}-{size_mb:g}MB", name)
    done = path + ".done"
    if os.path.exists(done):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    started = time.perf_counter()
    log(f"generating {kind} {size_mb:g} MB …")
    genlogs.GENERATORS[kind](path, size_mb)
    open(done, "w").close()
    log(f"  {path}: {os.path.getsize(path) / 1e6:.0f} MB in {time.perf_counter() - started:.0f}s")
    return path


def drop_file(path: str) -> None:
    for p in (path, path + ".done"):
        if os.path.exists(p):
            os.remove(p)


def fmt_rate(lines: float, seconds: float) -> str:
    return f"{lines / seconds:,.0f} lines/s" if seconds > 0 else "n/a"


# ----- the benchmarks -----------------------------------------------------------------------


def throughput(paths: Dict[str, str], repeat: int) -> List[Tuple[str, str, str, str, str, str]]:
    rows = []
    for kind, name, pattern, target, target_text in LOGS:
        path = paths[kind]
        size = os.path.getsize(path)
        log(f"throughput: {kind} ({size / 1e6:.0f} MB)")
        g = grep_seconds(path, pattern, repeat)
        loop = measure("loop", [path], repeat=repeat)
        read = measure("read", [path], repeat=repeat)
        parse = measure("parse", [path], repeat=repeat)
        full = measure("scan", [path], repeat=repeat)
        lines = float(loop["lines"])  # type: ignore[arg-type]
        t_loop, t_scan = float(loop["seconds"]), float(full["seconds"])  # type: ignore[arg-type]
        rate = lines / t_scan
        bare = f"bare loop {fmt_rate(lines, t_loop)}"
        title = f"{TITLES[kind]}, {size / 1e6:.0f} MB, {lines:,.0f} lines"
        rows.append((f"**{title}**", "", "", "", "", ""))
        rows.append(("grep -c (I/O reference)", fmt_rate(lines, g), f"{size / g / 1e6:,.0f} MB/s", "", "", ""))
        rows.append(("bare `for line in file`", fmt_rate(lines, t_loop), f"{size / t_loop / 1e6:,.0f} MB/s", "1.0x", "", ""))
        rows.append(("railwatch reader only", fmt_rate(lines, float(read["seconds"])), bare,  # type: ignore[arg-type]
                     f"{float(read['seconds']) / t_loop:.1f}x", "", ""))  # type: ignore[arg-type]
        rows.append((f"parse only ({parse.get('format')}, {parse.get('events'):,} events)", fmt_rate(lines, float(parse["seconds"])),  # type: ignore[arg-type]
                     bare, f"{float(parse['seconds']) / t_loop:.1f}x", "", ""))  # type: ignore[arg-type]
        met = rate >= target
        busy = [f"{name} {float(r['cpu_share']):.0%}" for name, r in (("scan", full), ("parse", parse)) if float(r["cpu_share"]) < 0.9]  # type: ignore[arg-type]
        if busy:
            log(f"  warning: less than 90 % of a core ({', '.join(busy)}): the machine was busy, figures are low")
        rows.append((f"**scan, all detectors** ({full.get('incidents')} incidents)", f"**{fmt_rate(lines, t_scan)}**",
                     f"{bare}; grep {fmt_rate(lines, g)}", f"{t_scan / t_loop:.1f}x loop, {t_scan / g:.0f}x grep",
                     target_text, ("met" if met else f"missed: {rate / target:.0%} of target") + (f" (got {float(full['cpu_share']):.0%} of a core)" if busy else "")))  # type: ignore[arg-type]
    return rows


def memory(sizes_mb: List[float], directory: str, keep_big: bool) -> List[Tuple[str, ...]]:
    rows: List[Tuple[str, ...]] = []
    idle = measure("idle", [])
    rows.append(("python + railwatch imported (idle)", "", "", f"{float(idle['rss_mb']):.0f} MB", ""))  # type: ignore[arg-type]
    for size in sizes_mb:
        path = generate("rails-info", size, directory, "production.log")
        log(f"memory: scanning {size:g} MB")
        full = measure("scan", [path])
        rss = float(full["rss_mb"])  # type: ignore[arg-type]
        rows.append((f"Rails info log {os.path.getsize(path) / 1e9:.2f} GB", f"{float(full['lines']):,.0f}",  # type: ignore[arg-type]
                     f"{float(full['seconds']):.0f} s", f"{rss:.0f} MB",  # type: ignore[arg-type]
                     "met" if rss < RSS_TARGET_MB else f"missed ({rss:.0f} MB >= {RSS_TARGET_MB} MB)"))
        if not keep_big and size > 1000:
            drop_file(path)
    return rows


def jobs_speedup(paths: Dict[str, str], directory: str, repeat: int) -> List[Tuple[str, ...]]:
    """Two hosts' production logs (equal work), then all four logs (unequal work)."""
    rows: List[Tuple[str, ...]] = []
    twin_dir = os.path.join(directory, "twin-hosts")
    hosts = []
    for host in ("web1", "web2"):
        target = os.path.join(twin_dir, host, "production.log")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            try:
                os.link(paths["rails-info"], target)  # a second log with the same content: equal work per job
            except OSError:
                shutil.copyfile(paths["rails-info"], target)
        hosts.append(target)
    cases = [
        ("2 equal logs (web1, web2 production.log)", hosts, False),
        ("4 different logs (info, debug, sidekiq x2; the Sidekiq logs parsed in the main process)", [paths[k] for k in ("rails-info", "rails-debug", "sidekiq", "sidekiq7")], False),
        ("one app: Rails info + Sidekiq 6/7 logs", [paths[k] for k in ("rails-info", "sidekiq7")], False),
        ("1 Rails info log, split into byte ranges", [paths["rails-info"]], True),
        ("1 Rails corpus log, split into byte ranges", [paths["rails-corpus"]], True),
    ]
    for label, group, split in cases:
        log(f"jobs: {label}")
        one = measure("scan", group, jobs=1, repeat=repeat)
        # a --quick log is under scan_split.SPLIT_MIN_BYTES: split it anyway, to measure the mechanism
        two = measure("scan", group, jobs=2, repeat=repeat, split_min_bytes=0 if split else None)
        t1, t2 = float(one["seconds"]), float(two["seconds"])  # type: ignore[arg-type]
        lines = float(one["lines"])  # type: ignore[arg-type]
        rows.append((label, f"{t1:.1f} s ({fmt_rate(lines, t1)})", f"{t2:.1f} s ({fmt_rate(lines, t2)})", f"{t1 / t2:.2f}x",
                     f"{float(one['cpu_share']):.2f} / {float(two['cpu_share']):.2f}",  # type: ignore[arg-type]
                     f"{float(two['workers_rss_mb']):.0f} MB (parent {float(two['rss_mb']):.0f} MB)", f"{one.get('incidents')} / {two.get('incidents')}"))
    return rows


def startup_rows(repeat: int) -> List[Tuple[str, ...]]:
    """``railwatch scan --help`` in a fresh interpreter, beside ``python -c pass`` (issue 18: <= 0.1 s)."""
    def best(cmd: List[str]) -> float:
        times = []
        for _ in range(max(repeat, 5)):
            started = time.perf_counter()
            subprocess.run(cmd, capture_output=True, cwd=REPO, check=True)
            times.append(time.perf_counter() - started)
        return min(times)

    bare = best([sys.executable, "-c", "pass"])
    scan_help = best([sys.executable, "-m", "agent", "scan", "--help"])
    return [
        ("`python -c pass`", f"{bare:.3f} s", "", "", "", ""),
        ("`python -m agent scan --help`", f"**{scan_help:.3f} s**", f"python -c pass {bare:.3f} s", f"+{scan_help - bare:.3f} s",
         "<= 0.1 s", "met" if scan_help <= 0.1 else "missed"),
    ]


def daemon_rows() -> List[Tuple[str, ...]]:
    """The daemon half of issue 8 (``railwatch run``): idle and busy CPU/RSS, detection latency.
    See daemon.py; targets: < 2 % of one core, < 60 MB busy, < 40 MB idle, p50 < 1 s, p95 < 2 s."""
    import daemon

    return list(daemon.rows())


# ----- output -------------------------------------------------------------------------------


def table(header: Tuple[str, ...], rows: List[Tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "")
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    mem = ""
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average at start {os.getloadavg()[0]:.2f}"
    return (f"{cores} cores (`nproc`), {model or platform.processor()}{mem}; Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}{load}")


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description="railwatch scan benchmarks (issue 8)")
    ap.add_argument("--size-mb", type=float, default=None, help="size of each generated log (default 300; 20 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small logs: a smoke run of every benchmark in about a minute")
    ap.add_argument("--huge", action="store_true", help="add the 5 GB memory run")
    ap.add_argument("--memory-mb", default=None, help="comma-separated log sizes for the memory run (default 500,2000)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N for each timing (default 1)")
    ap.add_argument("--dir", default=None, help="generate here and keep the logs (reused by the next run)")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--skip", default="", help="comma-separated: throughput, memory, jobs, startup, daemon")
    args = ap.parse_args(argv)
    size = args.size_mb or (20.0 if args.quick else 300.0)
    mem_sizes = [float(x) for x in (args.memory_mb or ("50,200" if args.quick else "500,2000")).split(",")]
    if args.huge:
        mem_sizes.append(5000.0)
    skip = set(filter(None, args.skip.split(",")))
    directory = args.dir or tempfile.mkdtemp(prefix="railwatch-bench-")
    os.makedirs(directory, exist_ok=True)
    shown = list(argv if argv is not None else sys.argv[1:])
    for flag in ("--markdown", "--dir"):  # where the output and the data went is not part of the recipe
        if flag in shown:
            at = shown.index(flag)
            del shown[at : at + 2]
    command = " ".join(["python tests/bench/run.py"] + shown)
    started = time.perf_counter()
    try:
        # the daemon benchmark writes its own lines: generate the large logs only when needed
        needs_logs = not {"throughput", "jobs"} <= skip
        paths = {kind: generate(kind, size, directory, name) for kind, name, _, _, _ in LOGS} if needs_logs else {}
        out = [f"Machine: {machine()}.", "", f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')}).", ""]
        if "throughput" not in skip:
            out += ["### Scan throughput (one core)", "",
                    table(("figure", "value", "baseline in the same run", "ratio", "target", "verdict"), throughput(paths, args.repeat)), ""]
        if "memory" not in skip:
            out += ["### Peak RSS scanning one large log (all detectors)", "",
                    table(("input", "lines", "scan time", "peak RSS", f"target < {RSS_TARGET_MB} MB, flat"), memory(mem_sizes, directory, bool(args.dir))), ""]
        if "jobs" not in skip:
            out += ["### `--jobs 2`: several logs (parsed a log per process, detected once) and one big log (byte ranges)", "",
                    table(("logs", "--jobs 1", "--jobs 2", "speed-up", "cores used (1 / 2 jobs)", "peak RSS per worker", "incidents (1 / 2 jobs)"), jobs_speedup(paths, directory, args.repeat)), ""]
        if "startup" not in skip:
            out += ["### CLI start-up", "",
                    table(("figure", "value", "baseline in the same run", "difference", "target", "verdict"), startup_rows(args.repeat)), ""]
        if "daemon" not in skip:
            out += ["### Daemon (`railwatch run`)", "",
                    table(("figure", "value", "baseline in the same run", "ratio", "target", "verdict"), daemon_rows()), ""]
        text = "\n".join(out)
        print(text)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as fh:
                fh.write(text)
        log(f"done in {time.perf_counter() - started:.0f}s")
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
