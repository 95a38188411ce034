#!/usr/bin/env python3
"""Capture the accuracy scenarios from the reference app (tests/e2e/app).

Each recipe starts the stack in one operator set-up (log level, lograge, Puma threads and
workers, pool sizes, Sidekiq concurrency, a shared production.log, a Postgres with a low
max_connections), runs a few short driver phases, and copies the logs (and phases.jsonl)
to tests/fixtures/logs/accuracy/<scenario>/. The truth for each lives in
tests/accuracy/scenarios/<scenario>/truth.json, written by hand from what was injected.

    python tests/accuracy/capture.py storm_at_end_activejob slow_query_info
    python tests/accuracy/capture.py --list
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import driver  # noqa: E402  (tests/e2e/driver.py)

OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "logs", "accuracy")
LOG_FILES = ("production.log", "sidekiq.log", "puma.log", "postgresql.log")
PG_BIN = "/usr/lib/postgresql/15/bin"


KEEP_FRAMES = 12
# a backtrace frame, bare or behind Rails tags: "/usr/.../x.rb:68:in `run'", "[id] app.rb:1:in 'm'"
FRAME = re.compile(r"^(\[[^\]]*\] )*(\S+\.rb|<internal:[^>]+>):\d+:in [`']")


def trim_backtraces(path: str, keep: int = KEEP_FRAMES) -> int:
    """Keep the first ``keep`` frames of every backtrace (the app and gem frames the detectors
    read come first; the rest is Sidekiq/Puma plumbing) so captures stay small. Returns lines dropped."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = f.readlines()
    out, run, dropped = [], 0, 0
    for line in lines:
        run = run + 1 if FRAME.match(line) else 0
        if run > keep:
            dropped += 1
            continue
        out.append(line)
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.writelines(out)
    return dropped


class ThrowawayPostgres:
    """A private Postgres cluster (Debian's binaries) in a temp dir on its own port, run as the
    ``postgres`` user; never the machine's shared server. Stopped (pg_ctl stop) on exit."""

    def __init__(self, port: int, max_connections: int, settings: Optional[Dict[str, str]] = None):
        self.port, self.max_connections = port, max_connections
        self.settings = dict(settings or {})  # extra postgresql.conf lines (name -> value as written)
        self.dir = tempfile.mkdtemp(prefix="rw-accuracy-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "pg.log")  # the server's stderr log (pg_ctl -l)

    def _as_postgres(self, argv: List[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--"] + argv, check=True, capture_output=True, text=True)

    def __enter__(self) -> "ThrowawayPostgres":
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres([PG_BIN + "/initdb", "-D", self.data, "-A", "trust", "-U", "postgres"])
        if self.settings:
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write("\n" + "".join("%s = %s\n" % kv for kv in sorted(self.settings.items())))
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d -c superuser_reserved_connections=0" % (
            self.port, self.dir, self.max_connections)
        self._as_postgres([PG_BIN + "/pg_ctl", "-D", self.data, "-o", opts, "-l", self.log_path, "-w", "start"])
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._as_postgres([PG_BIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# Every statement logged with its duration, under a common prefix: what an operator sets to see
# each query (with marginalia/QueryLogs tags, the request that ran it) in the Postgres log.
STATEMENT_LOG_SETTINGS = {
    "log_min_duration_statement": "0",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "log_timezone": "'UTC'",
}
PG_LOG = "postgresql.log"  # the cluster's log, copied into a capture when the recipe asks for it
# a log line's own time under STATEMENT_LOG_SETTINGS' prefix: "2026-12-04 20:31:02.123 UTC [4711] …"
_PG_LINE_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC ")


def trim_pg_log_before(path: str, start_iso: str) -> int:
    """Drop the lines logged before ``start_iso`` (driver.utcnow format): initdb, database set-up and
    app boot, so the capture holds only the scenario's window. Cuts at a timestamped line, never
    inside a statement's continuation lines. Returns the lines dropped."""
    start = start_iso.replace("T", " ").rstrip("Z")
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        m = _PG_LINE_TS.match(line)
        if m and m[1] >= start[: len(m[1])]:
            break
    else:
        i = len(lines)
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.writelines(lines[i:])
    return i


def _pool_exhausted_by_max_connections(stack: driver.ReferenceStack) -> Dict[str, Any]:
    return driver.pool_exhaustion(stack, waves=2, holders=8, hold_seconds=3.0, innocents=4)


# name -> (stack kwargs, phases, extra) ; phases are callables(stack) -> phase record
Recipe = Dict[str, Any]
RECIPES: Dict[str, Recipe] = {
    "storm_at_end_activejob": {
        "stack": {"log_setup": "info"},
        "phases": [lambda s: driver.storm_at_end(s, "InvoiceSyncJob", jobs=12, seconds=45)],
    },
    "storm_at_end_native_c2": {
        "stack": {"log_setup": "lograge", "sidekiq_concurrency": 2, "sidekiq_pool": 2},
        "phases": [lambda s: driver.storm_at_end(s, "WebhookDeliveryWorker", jobs=12, seconds=40)],
    },
    "short_retry_native": {
        "stack": {"log_setup": "info", "sidekiq_concurrency": 10, "sidekiq_pool": 10},
        "phases": [lambda s: driver.healthy(s, 8), lambda s: driver.short_retry_storm(s, "ShortRetryWorker", jobs=12)],
    },
    "retry_on_activejob": {
        "stack": {"log_setup": "stdout8"},
        "phases": [lambda s: driver.healthy(s, 8), lambda s: driver.short_retry_storm(s, "RetryOnJob", jobs=12)],
    },
    "flaky_recovers_shared_log": {
        "stack": {"log_setup": "info", "sidekiq_log": "production.log"},
        "phases": [lambda s: driver.flaky_recovers(s, jobs=3, seconds=10)],
    },
    "shared_log_storm_and_n_plus_one": {
        "stack": {"log_setup": "info", "sidekiq_log": "production.log"},
        "phases": [lambda s: driver.healthy(s, 8), lambda s: driver.n_plus_one(s, 10),
                   lambda s: driver.short_retry_storm(s, "ShortRetryWorker", jobs=12)],
    },
    "stuck_job": {
        "stack": {"log_setup": "info", "sidekiq_concurrency": 3, "sidekiq_pool": 3},
        "phases": [lambda s: driver.stuck_job(s, seconds=40)],
    },
    "slow_query_info": {
        "stack": {"log_setup": "info"},
        "phases": [lambda s: driver.healthy(s, 10), lambda s: driver.slow_query_endpoint(s, 8)],
    },
    "slow_query_debug": {
        "stack": {"log_setup": "debug", "bullet": False},
        "phases": [lambda s: driver.healthy(s, 10), lambda s: driver.slow_query_endpoint(s, 8)],
    },
    "batch_loads_debug": {
        "stack": {"log_setup": "debug"},
        "phases": [lambda s: driver.batch_loads(s, 20)],
    },
    "not_found_flood_workers2": {
        "stack": {"log_setup": "info", "puma_threads": 4, "puma_workers": 2, "web_pool": 4},
        "phases": [lambda s: driver.not_found_flood(s, 150)],
    },
    "deploy_then_n_plus_one": {
        "stack": {"log_setup": "info"},
        "phases": [lambda s: driver.deploy_then_n_plus_one(s, before_seconds=15, requests_n=15)],
    },
    "deploy_then_n_plus_one_debug": {
        "stack": {"log_setup": "debug"},
        "phases": [lambda s: driver.deploy_then_n_plus_one(s, before_seconds=15, requests_n=20)],
    },
    "max_connections": {
        "stack": {"log_setup": "info", "puma_threads": 12, "web_pool": 12, "sidekiq_pool": 2,
                  "sidekiq_concurrency": 2},
        "postgres": {"max_connections": 6},
        "phases": [lambda s: driver.healthy(s, 6), _pool_exhausted_by_max_connections],
    },
    "n_plus_one_info_tagged_pg_log": {
        "stack": {"log_setup": "info", "bullet": False, "query_tags": True},
        "postgres": {"max_connections": 40, "settings": STATEMENT_LOG_SETTINGS, "keep_log": True},
        "phases": [lambda s: driver.healthy(s, 6), lambda s: driver.n_plus_one(s, 10), lambda s: driver.healthy(s, 4)],
    },
    "n_plus_one_lograge_workers2": {
        "stack": {"log_setup": "lograge", "puma_threads": 4, "puma_workers": 2, "web_pool": 4,
                  "sidekiq_concurrency": 10, "sidekiq_pool": 10},
        "phases": [lambda s: driver.healthy(s, 8), lambda s: driver.n_plus_one(s, 12)],
    },
}


def capture(name: str, port: int, pg_port: int) -> str:
    recipe = RECIPES[name]
    work = tempfile.mkdtemp(prefix="rw-accuracy-%s-" % name)
    kwargs = dict(recipe["stack"])
    pg: Optional[ThrowawayPostgres] = None
    pg_conf = recipe.get("postgres", {})
    if pg_conf:
        pg = ThrowawayPostgres(pg_port, pg_conf["max_connections"], pg_conf.get("settings")).__enter__()
        kwargs["db_port"] = pg_port
    try:
        stack = driver.ReferenceStack(work, port=port, redis_url="auto", **kwargs)
        with stack:
            phases = [fn(stack) for fn in recipe["phases"]]
            time.sleep(1.0)
        if pg is not None and pg_conf.get("keep_log"):
            shutil.copy(pg.log_path, os.path.join(work, "log", PG_LOG))
    finally:
        if pg is not None:
            pg.__exit__()
    dest = os.path.join(OUT_DIR, name)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    if pg_conf.get("keep_log"):
        trim_pg_log_before(os.path.join(work, "log", PG_LOG), phases[0]["start"])
    for f in LOG_FILES:
        src = os.path.join(work, "log", f)
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copy(src, os.path.join(dest, f))
            trim_backtraces(os.path.join(dest, f))
    import json

    with open(os.path.join(dest, "phases.jsonl"), "w") as f:
        for rec in phases:
            rec["setup"] = {k: v for k, v in sorted(kwargs.items())}
            f.write(json.dumps(rec) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return dest


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*")
    p.add_argument("--list", action="store_true")
    p.add_argument("--port", type=int, default=3400)
    p.add_argument("--pg-port", type=int, default=54329)
    p.add_argument("--trim-only", action="store_true", help="only trim the stored captures' backtraces")
    args = p.parse_args(argv)
    if args.trim_only:
        for name in args.names:
            for f in LOG_FILES:
                path = os.path.join(OUT_DIR, name, f)
                if os.path.exists(path):
                    print("%s/%s: %d frame lines dropped" % (name, f, trim_backtraces(path)))
        return 0
    if args.list or not args.names:
        print("\n".join(RECIPES))
        return 0
    for name in args.names:
        t0 = time.monotonic()
        dest = capture(name, args.port, args.pg_port)
        sizes = {f: os.path.getsize(os.path.join(dest, f)) for f in sorted(os.listdir(dest))}
        print("%s: %.0f s, %s" % (name, time.monotonic() - t0, sizes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
