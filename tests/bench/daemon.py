"""The daemon half of issue 8: ``railwatch run`` idle, at a steady 2,000 lines/s, and its detection latency.

    python tests/bench/daemon.py                 # about 3 minutes; prints the table rows
    python tests/bench/run.py --skip throughput,memory,jobs   # the same, inside run.py's output

Each figure starts ``python -m agent run --config …`` as a subprocess (tests/e2e/railwatch_proc.py's
RailwatchAgent: temp state dir, directory sink, /healthz on a free loopback port, psutil collector on,
the other collectors off) and samples it by PID with psutil:

* idle: three empty log files; RSS after 10 s, CPU over the next 20 s.
* steady: this process appends real-shaped lines (corpus Rails request blocks, Sidekiq 6/7 job lines
  in rails-signals D.1's layout) with current times to three files, 2,000 lines/s in total for 60 s,
  paced on time.monotonic; CPU (cpu_times deltas) and RSS every second.
* latency: a fresh agent per run; the captured reference app's pool-exhaustion requests
  (tests/fixtures/logs/e2e/info/production.log, 4 x ActiveRecord::ConnectionTimeoutError) with
  fresh times and request ids, written in one write; time from that write to incident.json in the
  directory sink (polled every 20 ms).
"""
from __future__ import annotations

import datetime
import importlib.util
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from typing import Dict, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import genlogs  # noqa: E402
import shapes  # noqa: E402

Row = Tuple[str, str, str, str, str, str]
IDLE_RSS_MB, BUSY_RSS_MB, BUSY_CPU_PCT = 40.0, 60.0, 2.0
P50_S, P95_S = 1.0, 2.0
RATE, STEADY_S = 2000, 60.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _proc_module():  # type: ignore[no-untyped-def]
    """tests/e2e/railwatch_proc.py (not a package: tests run with --import-mode=importlib)."""
    path = os.path.join(REPO, "tests", "e2e", "railwatch_proc.py")
    spec = importlib.util.spec_from_file_location("railwatch_proc_bench", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


RP = _proc_module()


def start_agent(state_dir: str, logs: List[str]):  # type: ignore[no-untyped-def]
    for p in logs:
        open(p, "a").close()
    agent = RP.RailwatchAgent(state_dir, logs=logs, metrics_port=RP.free_port(),
                              collectors={"psutil": {"enabled": True}, "puma": {"enabled": False},
                                          "sidekiq": {"enabled": False}, "postgres": {"enabled": False}})
    return agent.start()


class Sampler:
    """CPU seconds and RSS of one PID (and its children, if any) through psutil."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)

    def _all(self):  # type: ignore[no-untyped-def]
        try:
            return [self.proc] + self.proc.children(recursive=True)
        except Exception:
            return [self.proc]

    def cpu(self) -> float:
        total = 0.0
        for p in self._all():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self._all():
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        return total / 2**20


def verdict(ok: bool, value: float, target: float, unit: str) -> str:
    return "met" if ok else f"**missed**: {value:.1f}{unit} vs {target:g}{unit} ({value / target:.1f}x)"


# ----- idle ---------------------------------------------------------------------------------


def idle(work: str, found: Dict[str, float]) -> List[Row]:
    state = os.path.join(work, "idle")
    logs = [os.path.join(work, "idle-logs", n) for n in ("production.log", "sidekiq.log", "web2.log")]
    os.makedirs(os.path.dirname(logs[0]), exist_ok=True)
    log("daemon: idle (30 s)")
    agent = start_agent(state, logs)
    try:
        s = Sampler(agent.proc.pid)
        time.sleep(10)
        rss = s.rss_mb()
        c0, t0 = s.cpu(), time.monotonic()
        time.sleep(20)
        cpu_pct = 100 * (s.cpu() - c0) / (time.monotonic() - t0)
        rss = max(rss, s.rss_mb())
    finally:
        agent.stop()
    found.update(cpu=cpu_pct, rss=rss)
    return [
        ("**Idle: `railwatch run` on 3 empty files, psutil collector on**", "", "", "", "", ""),
        ("RSS after 10 s (max of 10 s / 30 s)", f"{rss:.1f} MB", "", "", f"< {IDLE_RSS_MB:g} MB",
         verdict(rss < IDLE_RSS_MB, rss, IDLE_RSS_MB, " MB")),
        ("CPU over 20 s", f"{cpu_pct:.2f} % of one core", "", "", "", ""),
    ]


# ----- steady traffic -----------------------------------------------------------------------


def _iso_now_us() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def rails_lines(rng: random.Random, pid: int) -> Iterator[str]:
    """Healthy requests from the corpus' Rails production logs (no error blocks, no e2e N+1
    requests), one request after another, stamped now with a fresh request id."""
    corpus = shapes.corpus_dir()
    normal, _ = shapes.request_blocks([os.path.join(corpus, "rails_log_parser", n) for n in ("example.log", "example2.log")])
    letter = genlogs.LEVEL_LETTER
    while True:
        block = rng.choice(normal)
        rid = str(uuid.uuid4())
        for r in block.records:
            msg = r.msg
            if msg.startswith("Started ") and " at 20" in msg:
                msg = msg[: msg.rfind(" at 20")] + " at %s +0000" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if not r.level:
                yield f"[{rid}] {msg}"
            else:
                yield f"{letter[r.level]}, [{_iso_now_us()} #{pid}] {r.level:>5} -- : [{rid}] {msg}"
            for tagged, text in zip(r.extra_tagged, r.extra):
                yield f"[{rid}] {text}" if tagged else text


def sidekiq_lines(rng: random.Random, pid: int) -> Iterator[str]:
    """Sidekiq 6.0-7.3 job lines (rails-signals D.1), corpus job classes, every job succeeds."""
    sk = shapes.sidekiq_shapes(os.path.join(shapes.corpus_dir(), "sidekiq_log_analyzer", "sidekiq.log.gz"))
    workers = sk.workers or ["HardWorker"]
    tids = [genlogs._tid(rng) for _ in range(10)]
    while True:
        klass = workers[min(int(rng.expovariate(0.6)), len(workers) - 1)]
        jid = f"{rng.getrandbits(96):024x}"
        tid = rng.choice(tids)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        yield f"{now} pid={pid} tid={tid} class={klass} jid={jid} INFO: start"
        elapsed = rng.lognormvariate(-2.5, 1.3)
        yield f"{now} pid={pid} tid={tid} class={klass} jid={jid} elapsed={elapsed:.3f} INFO: done"


def steady(work: str, idle_found: Dict[str, float]) -> List[Row]:
    state = os.path.join(work, "steady")
    logs = [os.path.join(work, "steady-logs", n) for n in ("production.log", "sidekiq.log", "web2-production.log")]
    os.makedirs(os.path.dirname(logs[0]), exist_ok=True)
    rng = random.Random(8)
    gens = [rails_lines(rng, 4242), sidekiq_lines(rng, 5151), rails_lines(rng, 4343)]
    log(f"daemon: steady {RATE} lines/s for {STEADY_S:.0f} s")
    agent = start_agent(state, logs)
    cpu_samples: List[float] = []
    rss_samples: List[float] = []
    written = 0
    try:
        s = Sampler(agent.proc.pid)
        files = [open(p, "a", encoding="utf-8") for p in logs]
        try:
            tick = 0.05  # 20 writes a second, each 1/20 of the rate spread over the three files
            per_tick = RATE * tick
            start = time.monotonic()
            next_sample = start + 1.0
            c_prev, t_prev = s.cpu(), start
            due = 0.0
            for step in range(int(STEADY_S / tick)):  # bounded: 1,200 ticks
                due += per_tick
                n = int(due) - written
                chunks: List[List[str]] = [[], [], []]
                for i in range(n):
                    k = (written + i) % 3
                    chunks[k].append(next(gens[k]))
                for f, c in zip(files, chunks):
                    if c:
                        f.write("\n".join(c) + "\n")
                        f.flush()
                written += n
                now = time.monotonic()
                if now >= next_sample:
                    c = s.cpu()
                    cpu_samples.append(100 * (c - c_prev) / (now - t_prev))
                    rss_samples.append(s.rss_mb())
                    c_prev, t_prev, next_sample = c, now, next_sample + 1.0
                wake = start + (step + 1) * tick
                delay = wake - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            elapsed = time.monotonic() - start
        finally:
            for f in files:
                f.close()
        agent.check_alive()
        RP.wait_until(lambda: agent.caught_up(logs), 30, 0.5, "daemon caught up")
        incidents = agent.incidents()
        lines_read = agent.metric("railwatch_lines_read_total")
    finally:
        agent.stop()
    mean_cpu = statistics.mean(cpu_samples) if cpu_samples else float("nan")
    p95_cpu = sorted(cpu_samples)[int(0.95 * (len(cpu_samples) - 1))] if cpu_samples else float("nan")
    max_rss = max(rss_samples) if rss_samples else float("nan")
    titles = sorted({str(d.get("title", "?"))[:60] for d in incidents.values()})
    return [
        (f"**Steady: {written:,} lines in {elapsed:.0f} s ({written / elapsed:,.0f} lines/s) over 3 files "
         f"(2 Rails info, 1 Sidekiq 7), psutil collector every 10 s**", "", "", "", "", ""),
        ("CPU, mean of 1 s samples", f"**{mean_cpu:.2f} % of one core**", f"idle {idle_found.get('cpu', 0):.2f} %; p95 of 1 s samples {p95_cpu:.2f} %", "",
         f"< {BUSY_CPU_PCT:g} %", verdict(mean_cpu < BUSY_CPU_PCT, mean_cpu, BUSY_CPU_PCT, " %")),
        ("RSS, max of 1 s samples", f"**{max_rss:.1f} MB**", f"idle {idle_found.get('rss', 0):.1f} MB", f"+{max_rss - idle_found.get('rss', 0):.1f} MB", f"< {BUSY_RSS_MB:g} MB",
         verdict(max_rss < BUSY_RSS_MB, max_rss, BUSY_RSS_MB, " MB")),
        ("lines read by the daemon / incidents opened", f"{lines_read:,.0f} / {len(incidents)}",
         "; ".join(titles) if titles else "healthy traffic: none expected", "", "0 incidents",
         "met" if not incidents else f"{len(incidents)} incident(s) on healthy lines"),
    ]


# ----- detection latency --------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ISO_PREFIX = re.compile(r"\[\d{4}-\d\d-\d\dT[\d:.]+ #")
_STARTED_AT = re.compile(r" at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000")


def pool_block() -> str:
    """The reference app's ConnectionTimeoutError requests: from the Started line of the first
    failing request to the last line of the last error report (other requests' lines between)."""
    path = os.path.join(REPO, "tests", "fixtures", "logs", "e2e", "info", "production.log")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(True)
    failing = [i for i, l in enumerate(lines) if "ConnectionTimeoutError (" in l]
    rids = [_UUID.search(lines[i]).group(0) for i in failing[:4]]  # type: ignore[union-attr]
    first = min(i for i, l in enumerate(lines) if "Started " in l and any(r in l for r in rids))
    last = failing[3]
    while last + 1 < len(lines) and lines[last + 1].startswith("[" + rids[-1] + "]"):
        last += 1
    return "".join(lines[first:last + 1])


def fresh(block: str) -> str:
    ids: Dict[str, str] = {}
    text = _UUID.sub(lambda m: ids.setdefault(m.group(0), str(uuid.uuid4())), block)
    text = _ISO_PREFIX.sub("[%s #" % _iso_now_us(), text)
    return _STARTED_AT.sub(" at %s +0000" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), text)


def latency(work: str, runs: int) -> List[Row]:
    block = pool_block()
    log(f"daemon: detection latency, {runs} runs (a fresh agent each)")
    results: List[float] = []
    missed = 0
    for n in range(runs):  # bounded
        state = os.path.join(work, f"latency-{n}")
        logs = [os.path.join(state, "logs", x) for x in ("production.log", "sidekiq.log", "web2.log")]
        os.makedirs(os.path.dirname(logs[0]), exist_ok=True)
        agent = start_agent(state, logs)
        try:
            time.sleep(0.5)
            text = fresh(block)
            with open(logs[0], "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                written = time.monotonic()
            seen: Optional[float] = None
            deadline = written + 10.0
            while time.monotonic() < deadline:  # bounded: 10 s at 20 ms
                try:
                    names = os.listdir(agent.incidents_dir)
                except OSError:
                    names = []
                if any(os.path.exists(os.path.join(agent.incidents_dir, d, "incident.json")) for d in names):
                    seen = time.monotonic()
                    break
                time.sleep(0.02)
            if seen is None:
                missed += 1
            else:
                results.append(seen - written)
        finally:
            agent.stop()
            shutil.rmtree(state, ignore_errors=True)
    if not results:
        return [("**Detection latency**", f"no incident within 10 s in {runs} runs", "", "", "", "**missed**")]
    results.sort()
    p50 = statistics.median(results)
    p95 = results[min(len(results) - 1, int(round(0.95 * (len(results) - 1))))]
    lines = block.count("\n")
    return [
        (f"**Detection latency: {len(results)} runs, {lines} real lines (4 ConnectionTimeoutError requests) in one write, "
         f"write to incident.json (polled every 20 ms)**", "", "", "", "", ""),
        ("median", f"**{p50 * 1000:.0f} ms**", f"min {results[0] * 1000:.0f} ms", "", f"< {P50_S:g} s",
         verdict(p50 < P50_S, p50, P50_S, " s")),
        ("95th percentile", f"**{p95 * 1000:.0f} ms**", f"max {results[-1] * 1000:.0f} ms", "", f"< {P95_S:g} s",
         verdict(p95 < P95_S, p95, P95_S, " s")),
    ] + ([("runs without an incident within 10 s", str(missed), "", "", "0", "**missed**")] if missed else [])


def rows(runs: int = 20) -> List[Row]:
    work = tempfile.mkdtemp(prefix="railwatch-daemon-bench-")
    try:
        found: Dict[str, float] = {}
        return idle(work, found) + steady(work, found) + latency(work, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    header = ("figure", "value", "baseline in the same run", "ratio", "target", "verdict")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows(int(sys.argv[1]) if len(sys.argv) > 1 else 20)]
    print("\n".join(out))
