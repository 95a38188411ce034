#!/usr/bin/env python3
"""Capture the e2e log fixtures: run driver.py for each logging set-up, copy the logs to
tests/fixtures/logs/e2e/<setup>/, check that each failure left its marks, and write
PROVENANCE.md.

    python tests/e2e/capture_fixtures.py                 # all four set-ups (~5 min)
    python tests/e2e/capture_fixtures.py --setups debug  # one set-up
    python tests/e2e/capture_fixtures.py --check-only    # just re-check the stored fixtures

Standard library only (driver.py needs requests). Python 3.9 compatible.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "logs", "e2e")
SETUPS = ("info", "debug", "lograge", "stdout8")
FILES = ("production.log", "sidekiq.log", "sidekiq.stdout.log", "puma.log")
PACKAGES = ("ruby3.1", "ruby-rails", "ruby-railties", "ruby-activerecord", "puma", "ruby-pg", "ruby-sidekiq",
            "ruby-redis", "ruby-connection-pool", "ruby-bullet", "ruby-lograge", "ruby-uniform-notifier",
            "postgresql-15", "redis-server")
MAX_BYTES = 300 * 1024

ANSI = re.compile(r"\x1b\[[0-9;]*m")
REQ_ID = re.compile(r"\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]")


def _read(path: str) -> str:
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def check_fixture(setup: str, d: str) -> List[str]:
    """Return a list of problems (empty when the captured logs show every expected signal)."""
    problems = []  # type: List[str]

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append("%s: %s" % (setup, what))

    for name in ("production.log", "sidekiq.log", "phases.jsonl"):
        if not os.path.exists(os.path.join(d, name)):
            problems.append("%s: missing %s" % (setup, name))
    if problems:
        return problems
    prod = _read(os.path.join(d, "production.log"))
    sk = _read(os.path.join(d, "sidekiq.log"))
    phases = [json.loads(l) for l in _read(os.path.join(d, "phases.jsonl")).splitlines() if l.strip()]

    # phases
    names = [p["phase"] for p in phases]
    need(names == ["healthy", "n_plus_one", "pool_exhaustion", "sidekiq_failures"], "phases are %s" % names)
    for p in phases:
        need(p.get("setup") == setup, "phase %s has setup %s" % (p["phase"], p.get("setup")))
    sf = [p for p in phases if p["phase"] == "sidekiq_failures"]
    need(bool(sf) and sf[0].get("complete") is True, "sidekiq_failures phase did not complete")
    hp = [p for p in phases if p["phase"] == "healthy"]
    need(bool(hp) and set(hp[0].get("status_counts", {})) == {"200"}, "healthy phase had non-200 responses")

    # pool exhaustion
    need("ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 2.000 seconds"
         in prod, "no ConnectionTimeoutError exception report")
    if setup == "lograge":
        need(re.search(r"status=500 error='ActiveRecord::ConnectionTimeoutError: could not obtain", prod) is not None,
             "no lograge status=500 error='ActiveRecord::ConnectionTimeoutError…' line")
    else:
        need(re.search(r"Completed 500 Internal Server Error in 20\d\dms", prod) is not None,
             "no 'Completed 500 Internal Server Error in ~2000ms' line")
    if setup == "stdout8":
        need(re.search(r"^\[[0-9a-f-]{36}\] Started GET ", prod, re.M) is not None, "no bare [request-id] lines")
        need(re.search(r"^[DIWEF], \[", prod, re.M) is None, "stdout8 has Logger::Formatter prefixes")
    else:
        need(re.search(r"^F, \[[^\]]+\] FATAL -- : \[[0-9a-f-]{36}\]", prod, re.M) is not None, "no FATAL header line")

    # N+1
    need("USE eager loading detected" in prod, "no Bullet 'USE eager loading detected' warning")
    if setup == "debug":
        per_request = {}  # type: Dict[str, int]
        for line in prod.splitlines():
            plain = ANSI.sub("", line)
            if 'Author Load (' in plain and 'WHERE "authors"."id" = $1' in plain:
                m = REQ_ID.search(plain)
                if m:
                    per_request[m.group(1)] = per_request.get(m.group(1), 0) + 1
        need(any(n >= 30 for n in per_request.values()),
             "no request with >= 30 'Author Load … WHERE \"authors\".\"id\" = $1' lines (max %s)"
             % max(per_request.values() or [0]))
        need("\x1b[1m\x1b[36m" in prod, "debug SQL lines are not ANSI-coloured")

    # Sidekiq
    need(re.search(r"class=AlwaysFailsJob jid=\w+ elapsed=[\d.]+ INFO: fail$", sk, re.M) is not None,
         "no AlwaysFailsJob 'INFO: fail' line")
    need(re.search(r"WARN: PaymentGatewayError: gateway returned 502", sk) is not None,
         "no 'WARN: PaymentGatewayError: …' error line")
    need(re.search(r'WARN: \{"context":"Job raised exception"', sk) is not None, "no 'Job raised exception' WARN")
    need(len(re.findall(r"INFO: Adding dead AlwaysFailsJob job \w+", sk)) >= 20, "fewer than 20 AlwaysFailsJob deaths")
    need(re.search(r"INFO: Adding dead ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper job", sk) is not None,
         "no ActiveJob (JobWrapper) death")
    need(re.search(r"class=LongRunningJob jid=\w+ elapsed=[89]\.\d+ INFO: done", sk) is not None,
         "no LongRunningJob 'done' with elapsed ~8 s")
    need(re.search(r"class=FlakyOnceJob jid=\w+ elapsed=[\d.]+ INFO: done", sk) is not None,
         "FlakyOnceJob never succeeded")
    need("Error performing ReportExportJob" in prod, "no ActiveJob 'Error performing ReportExportJob' line")

    for name in FILES + ("phases.jsonl",):
        p = os.path.join(d, name)
        if os.path.exists(p) and os.path.getsize(p) > MAX_BYTES:
            problems.append("%s: %s is %d bytes (> %d)" % (setup, name, os.path.getsize(p), MAX_BYTES))
    return problems


def package_versions() -> Dict[str, str]:
    out = {}
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        out[p] = r.stdout.strip() if r.returncode == 0 else "(not installed)"
    return out


def capture(setup: str, workroot: str, port: int, healthy_seconds: float) -> str:
    workdir = os.path.join(workroot, setup)
    cmd = [sys.executable, os.path.join(HERE, "driver.py"), "--setup", setup, "--scenario", "all",
           "--workdir", workdir, "--port", str(port), "--healthy-seconds", str(healthy_seconds)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    dest = os.path.join(FIXTURES, setup)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    for name in FILES:
        src = os.path.join(workdir, "log", name)
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copyfile(src, os.path.join(dest, name))
    shutil.copyfile(os.path.join(workdir, "phases.jsonl"), os.path.join(dest, "phases.jsonl"))
    return dest


def _phase_table(setup: str) -> str:
    path = os.path.join(FIXTURES, setup, "phases.jsonl")
    if not os.path.exists(path):
        return ""
    rows = []
    for line in _read(path).splitlines():
        p = json.loads(line)
        extra = ""
        if p["phase"] == "pool_exhaustion":
            extra = json.dumps(p.get("status_counts"))
        elif p["phase"] == "sidekiq_failures":
            extra = "dead +%s; %s" % (p.get("dead_added"), json.dumps(p.get("sidekiq")))
        elif p["phase"] == "healthy":
            extra = "%s requests %s, %s jobs" % (p.get("requests"), json.dumps(p.get("status_counts")),
                                                 p.get("jobs_enqueued"))
        elif p["phase"] == "n_plus_one":
            extra = "%s requests %s" % (p.get("requests"), json.dumps(p.get("status_counts")))
        rows.append("| %s | %s | %s | %s |" % (p["phase"], p["start"], p["end"], extra))
    sizes = ", ".join("%s %d B" % (n, os.path.getsize(os.path.join(FIXTURES, setup, n)))
                      for n in FILES if os.path.exists(os.path.join(FIXTURES, setup, n)))
    return ("### `%s/`\n\nFiles: %s.\n\n| phase | start (UTC) | end (UTC) | driver's counts |\n|---|---|---|---|\n%s\n"
            % (setup, sizes, "\n".join(rows)))


PROVENANCE_HEAD = """# e2e log fixtures: provenance

Real logs written by the reference Rails app in `tests/e2e/app/` (Rails 6.1, Puma, Sidekiq 6.4,
all from Debian bookworm's packages, no Bundler) while `tests/e2e/driver.py` reproduced each failure.
Nothing here was edited by hand: files are copied verbatim from the run's `log/` directory.
**Generated by `tests/e2e/capture_fixtures.py`; re-run it rather than editing this file.**

Captured: {date} on Debian {debian}, {cores} cores; PostgreSQL 15 on 127.0.0.1:5432, Redis on
127.0.0.1:6379 (Sidekiq on db 5, flushed at the start of each run).

Command:

```
bash tests/e2e/install-deps.sh
python3 tests/e2e/capture_fixtures.py --healthy-seconds {healthy}
# which runs, for each SETUP in info debug lograge stdout8:
python3 tests/e2e/driver.py --setup SETUP --scenario all --workdir {workroot}/SETUP --port {port} --healthy-seconds {healthy}
```

Package versions (`dpkg-query -W`):

| package | version |
|---|---|
{versions}

## Files in each `<setup>/` directory

- `production.log`: the Rails logger (both processes append to it: Puma's pid and Sidekiq's pid; the
  Sidekiq process's lines have no request id). Rails 6.1 bootstrap style: append-mode file, autoflush.
- `sidekiq.log`: Sidekiq 6.4's own logger (Pretty formatter, UTC `Z` timestamps with ms). Sidekiq's
  railtie also broadcasts `Rails.logger` here, so ActiveJob lines (and at debug, SQL) appear in both files.
- `sidekiq.stdout.log`: the Sidekiq process's stdout/stderr: just the `Booting Sidekiq 6.4.1 …` line
  (logged before the app configures the file logger).
- `puma.log`: Puma's stdout/stderr (single mode: boot banner and shutdown only; no requests).
- `phases.jsonl`: one JSON object per phase: `phase`, `start`, `end` (UTC, from the driver's clock, the
  same host clock as the logs), `setup`, plus what the driver counted (HTTP status counts, Sidekiq
  stats read from Redis: `processed`, `failed`, `retry`, `dead`, …).

## Logging set-ups (`RW_LOG_SETUP`)

- `info`: Rails 6.1 production default: `Logger::Formatter`, `log_tags = [:request_id]`, level info
  (no SQL). Bullet's N+1 warning is a WARN whose continuation lines carry no tag.
- `debug`: same at level debug: ANSI-coloured SQL lines (`colorize_logging` default) and, because
  `verbose_query_logs` is on in this set-up, a `  ↳ app.rb:NNN:in '…'` line after each query;
  Sidekiq's logger at DEBUG too (adds `enqueued retry: {job json}` lines).
- `lograge`: lograge 0.10 KeyValue, one line per request (`method= path= format= controller= action=
  status= [error='Class: message'] duration= view= db=`), prefixed by Logger::Formatter and the request
  id tag; the FATAL exception block is still logged.
- `stdout8`: mimics Rails 8 (`TaggedLogging` over a message-only formatter): bare
  `[request-id] message` lines, no timestamp, pid or severity. Written to `production.log` rather
  than stdout so every set-up has the same file layout.

Bullet (Debian's 6.1.0, shimmed to run on ActiveRecord 6.1) is enabled in every set-up with
`Bullet.rails_logger = true`.

## Phases (same for every set-up)

1. `healthy`: sequential `/posts_fixed` (2 queries, eager-loaded), `/posts_fixed?limit=10` and
   `/health` (no DB) about 4 req/s; an `OkJob` (ActiveJob, one query) every 8 requests; one
   `FlakyOnceJob` (plain Sidekiq worker) that fails once (`Timeout::Error: upstream inventory service
   timed out …`: `INFO: fail` + 3 WARN records) and succeeds on its retry 1-10 s later. A recovering
   flaky job is **healthy** behaviour. The phase ends once the queue and retry set are empty.
2. `n_plus_one`: 10 × `GET /posts` (1 posts query + 30 lazy `Author Load … WHERE "authors"."id" = $1
   LIMIT $2` queries each, logged only at debug; at info the only signs are the longer duration,
   the higher `ActiveRecord:` time and Bullet's `USE eager loading detected` WARN), with a
   `/posts_fixed` after every 4th for contrast.
3. `pool_exhaustion`: Puma has 8 threads and the pool 3 connections with `checkout_timeout: 2`.
   Two waves of 6 concurrent `/slow_hold?s=4` (each holds a connection in `SELECT pg_sleep(4)`)
   plus 6 innocent `/posts_fixed` requests. Requests that cannot check out a connection within 2 s
   end `Completed 500 Internal Server Error in ~2001ms (ActiveRecord: 0.0ms …)` followed by the FATAL
   `ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 2.000
   seconds (waited 2.00x seconds); all pooled connections were in use)` block; the 3 holders that got
   a connection end 200 after ~4 s with ActiveRecord time ≈ duration. Both `/slow_hold` and innocent
   `/posts_fixed` fail.
4. `sidekiq_failures`: one `LongRunningJob` (ActiveJob, sleeps 8 s: `elapsed=8.00x INFO: done`),
   20 `AlwaysFailsJob` (plain worker, `retry: 1`, `sidekiq_retry_in { 1 }` + Sidekiq's jitter of 0-9 s;
   `PaymentGatewayError: gateway returned 502 Bad Gateway for order …`) and 2 `ReportExportJob`
   (ActiveJob, `retry: 1`, default backoff 15-24 s; `NoMethodError` with Ruby 3.1's error_highlight
   lines). Each attempt logs `INFO: fail` then 3 WARN records on the same `tid=` (job JSON,
   `Class: message`, backtrace); exhausted jobs log `INFO: Adding dead AlwaysFailsJob job <jid>` /
   `Adding dead ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper job <jid>` (the ActiveJob
   wrapper class) just before their last `fail` line. The phase ends when all 22 are dead.

Between phases the driver waits 3 s with no traffic.

## Per set-up
"""


def _capture_date(setups: List[str]) -> str:
    """When the stored fixtures were captured: the earliest phase start in their phases.jsonl."""
    starts = []
    for s in setups:
        path = os.path.join(FIXTURES, s, "phases.jsonl")
        if os.path.exists(path):
            starts += [json.loads(l)["start"] for l in _read(path).splitlines() if l.strip()]
    return (min(starts)[:16].replace("T", " ") + " UTC") if starts else "?"


def write_provenance(setups: List[str], workroot: str, port: int, healthy: float) -> None:
    versions = package_versions()
    try:
        debian = _read("/etc/debian_version").strip()
    except OSError:
        debian = "?"
    values = {
        "date": _capture_date(setups),
        "debian": debian, "cores": str(os.cpu_count()), "healthy": "%g" % healthy, "workroot": workroot,
        "port": str(port), "versions": "\n".join("| %s | %s |" % kv for kv in versions.items()),
    }
    text = PROVENANCE_HEAD
    for k, v in values.items():  # not str.format: the text has literal braces
        text = text.replace("{" + k + "}", v)
    text += "\n".join(_phase_table(s) for s in SETUPS if os.path.isdir(os.path.join(FIXTURES, s)))
    with open(os.path.join(FIXTURES, "PROVENANCE.md"), "w") as f:
        f.write(text)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--workroot", default="/tmp/railwatch-e2e-capture")
    ap.add_argument("--port", type=int, default=3300)
    ap.add_argument("--healthy-seconds", type=float, default=15.0)
    ap.add_argument("--check-only", action="store_true", help="only check the stored fixtures")
    ap.add_argument("--provenance-only", action="store_true",
                    help="rewrite PROVENANCE.md from the stored fixtures, then check")
    args = ap.parse_args(argv)
    setups = [s for s in args.setups.split(",") if s]
    for s in setups:
        if s not in SETUPS:
            ap.error("unknown setup %r" % s)
    if not args.check_only:
        if not args.provenance_only:
            for s in setups:
                capture(s, args.workroot, args.port, args.healthy_seconds)
        write_provenance(setups, args.workroot, args.port, args.healthy_seconds)
    problems = []
    for s in setups:
        problems += check_fixture(s, os.path.join(FIXTURES, s))
    for p in problems:
        print("PROBLEM: " + p, file=sys.stderr)
    print("checked %d set-up(s): %s" % (len(setups), "OK" if not problems else "%d problem(s)" % len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
