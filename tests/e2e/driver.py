#!/usr/bin/env python3
"""Scenario driver for the railwatch e2e reference Rails app (tests/e2e/app).

Starts Puma and Sidekiq (from Debian's packages) against the local PostgreSQL and
Redis, drives traffic that reproduces each failure the detectors look for, and
records the phase boundaries so that the captured logs can be used as fixtures.

Standard library + requests only; Python 3.9 compatible.

    python tests/e2e/driver.py --setup info --scenario all --workdir /tmp/rw-info

Library use::

    from driver import ReferenceStack, healthy, n_plus_one
    with ReferenceStack("/tmp/x", "debug", 3300) as stack:
        healthy(stack, 10)
        n_plus_one(stack)
"""

import argparse
import atexit
import concurrent.futures
import datetime as _dt
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlparse

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(HERE, "app")
LOG_SETUPS = ("info", "debug", "lograge", "stdout8")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
DEFAULT_DB_NAME = "railwatch_e2e"
AUTO_REDIS_DBS = range(6, 16)  # redis_url="auto" claims the first free one of these


def _claim_redis_db(url: str) -> Any:
    """Take an exclusive, non-blocking flock for this Redis host/port/db so that two stacks on
    the same machine never share (and FLUSHDB) the same Sidekiq database. Returns the open lock
    file (kept open while the stack runs) or None when another stack holds it."""
    u = urlparse(url)
    name = "railwatch-e2e-redis-%s-%s-db%s.lock" % (u.hostname or "127.0.0.1", u.port or 6379,
                                                     (u.path or "/0").lstrip("/") or "0")
    f = open(os.path.join("/tmp", name), "a")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds and a Z suffix."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- Redis
class MiniRedis:
    """A tiny RESP client (stdlib only) for the few commands the driver needs."""

    def __init__(self, url: str = DEFAULT_REDIS_URL, timeout: float = 5.0):
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.db = int((u.path or "/0").lstrip("/") or 0)
        self.timeout = timeout

    def command(self, *args: Any) -> Any:
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as s, \
                s.makefile("rb") as f:
            if self.db:
                s.sendall(self._encode("SELECT", self.db))
                self._read(f)
            s.sendall(self._encode(*args))
            return self._read(f)

    @staticmethod
    def _encode(*args: Any) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _read(self, f: Any) -> Any:
        line = f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise RuntimeError("unexpected redis reply %r" % line)


def _port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (SO_REUSEADDR, as Puma binds, so that
    TIME_WAIT leftovers of a previous run do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- stack
class ReferenceStack:
    """Puma + Sidekiq running the reference app, logs under ``workdir/log``.

    Only the processes this object starts are ever signalled (by PID).
    """

    def __init__(
        self,
        workdir: str,
        log_setup: str = "info",
        port: int = 3300,
        redis_url: str = DEFAULT_REDIS_URL,
        db_name: str = DEFAULT_DB_NAME,
        app_dir: str = APP_DIR,
        bullet: bool = True,
        long_job_seconds: float = 8.0,
        verbose: bool = True,
        puma_threads: Optional[int] = None,
        puma_workers: Optional[int] = None,
        web_pool: int = 3,
        sidekiq_concurrency: Optional[int] = None,
        sidekiq_pool: int = 5,
        db_port: int = 5432,
        sidekiq_log: str = "sidekiq.log",
        query_tags: bool = False,
    ):
        if log_setup not in LOG_SETUPS:
            raise ValueError("log_setup must be one of %s" % (LOG_SETUPS,))
        self.workdir = os.path.abspath(workdir)
        self.log_dir = os.path.join(self.workdir, "log")
        self.log_setup = log_setup
        self.port = int(port)
        self.control_port = self.port + 1
        self.redis_url = redis_url  # "auto": a free db among AUTO_REDIS_DBS, claimed at start()
        self._redis_lock = None  # type: Any
        self.db_name = db_name
        self.app_dir = os.path.abspath(app_dir)
        self.bullet = bullet
        self.long_job_seconds = long_job_seconds
        self.verbose = verbose
        # Operator settings the accuracy scenarios vary (None/defaults: the four e2e set-ups).
        self.puma_threads = puma_threads
        self.puma_workers = puma_workers
        self.web_pool = web_pool
        self.sidekiq_concurrency = sidekiq_concurrency
        self.sidekiq_pool = sidekiq_pool
        self.db_port = int(db_port)
        self.sidekiq_log = sidekiq_log
        self.query_tags = query_tags  # marginalia tags on every SQL statement (RW_QUERY_TAGS)
        self.base_url = "http://127.0.0.1:%d" % self.port
        self.redis = MiniRedis(DEFAULT_REDIS_URL if redis_url == "auto" else redis_url)
        self.session = requests.Session()
        self._procs = {}  # type: Dict[str, subprocess.Popen]
        self._files = []  # type: List[Any]
        self._atexit_registered = False

    # ---------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        if self.verbose:
            sys.stderr.write("[driver %s] %s\n" % (utcnow(), msg))
            sys.stderr.flush()

    def path(self, name: str) -> str:
        return os.path.join(self.log_dir, name)

    def env(self, db_pool: int) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RAILS_ENV": "production",
                "RACK_ENV": "production",
                "TZ": "UTC",
                "RW_LOG_SETUP": self.log_setup,
                "RW_LOG_DIR": self.log_dir,
                "RW_REDIS_URL": self.redis_url,
                "RW_DB_NAME": self.db_name,
                "RW_DB_POOL": str(db_pool),
                "RW_BULLET": "1" if self.bullet else "0",
                "RW_LONG_JOB_SECONDS": str(self.long_job_seconds),
                "PORT": str(self.port),
                "PUMA_CONTROL_PORT": str(self.control_port),
                "RW_DB_PORT": str(self.db_port),
                "RW_SIDEKIQ_LOG": self.sidekiq_log,
                "RW_QUERY_TAGS": "1" if self.query_tags else "0",
            }
        )
        # Never let a developer's Bundler setup leak into the Debian-only app.
        for k in ("BUNDLE_GEMFILE", "RUBYOPT", "RUBYLIB", "GEM_HOME", "GEM_PATH"):
            env.pop(k, None)
        return env

    def ensure_database(self) -> None:
        base = ["psql", "-h", "127.0.0.1", "-p", str(self.db_port), "-U", "postgres", "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-Atc"]
        out = subprocess.run(
            base + ["SELECT 1 FROM pg_database WHERE datname = '%s'" % self.db_name],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        if out != "1":
            self.log("creating database %s" % self.db_name)
            subprocess.run(base + ['CREATE DATABASE "%s"' % self.db_name], check=True, capture_output=True, text=True)

    def _claim_redis(self) -> None:
        if self._redis_lock is not None:
            return
        if self.redis_url == "auto":
            for db in AUTO_REDIS_DBS:
                url = "redis://127.0.0.1:6379/%d" % db
                lock = _claim_redis_db(url)
                if lock is not None:
                    self.redis_url, self._redis_lock = url, lock
                    self.redis = MiniRedis(url)
                    break
            else:
                raise RuntimeError("no free Redis db among %s for Sidekiq" % list(AUTO_REDIS_DBS))
        else:
            self._redis_lock = _claim_redis_db(self.redis_url)
            if self._redis_lock is None:
                raise RuntimeError("another ReferenceStack on this machine is using %s; pass another "
                                   "--redis-url (or 'auto')" % self.redis_url)
        self.log("sidekiq redis: %s" % self.redis_url)

    def flush_redis(self) -> None:
        self.redis.command("FLUSHDB")

    def _spawn(self, name: str, argv: List[str], db_pool: int, logfile: str) -> subprocess.Popen:
        out = open(self.path(logfile), "ab")
        self._files.append(out)
        proc = subprocess.Popen(
            argv, cwd=self.app_dir, env=self.env(db_pool), stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._procs[name] = proc
        self.log("started %s pid=%d: %s" % (name, proc.pid, " ".join(argv)))
        return proc

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s; see %s" % (name, proc.returncode, self.log_dir))

    def wait_for_health(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("puma")
            try:
                if requests.get(self.url("/health"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError("puma did not answer /health within %ss" % timeout)

    def wait_for_sidekiq(self, timeout: float = 60.0) -> None:
        """Ready once the Sidekiq process has sent its first heartbeat (``processes`` set)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("sidekiq")
            try:
                if int(self.redis.command("SCARD", "processes") or 0) > 0:
                    return
            except (OSError, RuntimeError):
                pass
            time.sleep(0.3)
        raise TimeoutError("sidekiq did not register its heartbeat within %ss" % timeout)

    # ---------------------------------------------------------------- lifecycle
    def start(self, fresh_logs: bool = True) -> "ReferenceStack":
        if self._procs:
            raise RuntimeError("already started")
        for exe in ("puma", "sidekiq", "psql"):
            if shutil.which(exe) is None:
                raise RuntimeError("%s not found: run tests/e2e/install-deps.sh" % exe)
        if fresh_logs and os.path.isdir(self.log_dir):
            shutil.rmtree(self.log_dir)
        os.makedirs(self.log_dir, exist_ok=True)
        for port in (self.port, self.control_port):
            if not _port_free(port):
                raise RuntimeError("127.0.0.1:%d is in use (another stack?); pass another --port" % port)
        self.ensure_database()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._claim_redis()
            self.flush_redis()
            # Puma first: its boot creates the schema and seeds, so Sidekiq does not race it.
            self.start_puma()
            # Sidekiq's pool matches its concurrency (5) so only web requests exhaust theirs.
            argv = ["sidekiq", "-e", "production", "-r", os.path.join(self.app_dir, "app.rb"), "-C", "config/sidekiq.yml"]
            if self.sidekiq_concurrency:
                argv += ["-c", str(self.sidekiq_concurrency)]
            self._spawn("sidekiq", argv, db_pool=self.sidekiq_pool, logfile="sidekiq.stdout.log")
            self.wait_for_sidekiq()
        except BaseException:
            self.stop()
            raise
        self.log("stack up at %s (setup=%s, logs in %s)" % (self.base_url, self.log_setup, self.log_dir))
        return self

    def _puma_config(self) -> str:
        """config/puma.rb, or a copy in the workdir with the threads/workers this stack varies."""
        if self.puma_threads is None and self.puma_workers is None:
            return "config/puma.rb"
        with open(os.path.join(self.app_dir, "config", "puma.rb")) as f:
            text = f.read()
        threads = self.puma_threads or 8
        text = text.replace("threads 8, 8", "threads %d, %d" % (threads, threads))
        text = text.replace("workers 0", "workers %d" % (self.puma_workers or 0))
        path = os.path.join(self.workdir, "puma.rb")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_puma(self) -> None:
        self._spawn("puma", ["puma", "-C", self._puma_config(), "config.ru"], db_pool=self.web_pool,
                    logfile="puma.log")
        self.wait_for_health()

    def restart_puma(self, timeout: float = 20.0) -> None:
        """Stop Puma (TERM, by PID) and start it again: what a deploy does to the web process."""
        proc = self._procs.pop("puma")
        self.log("restarting puma pid=%d" % proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for port in (self.port, self.control_port):
            deadline = time.monotonic() + 10
            while not _port_free(port) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.start_puma()

    def stop(self, timeout: float = 20.0) -> None:
        # Sidekiq first (it may still be finishing a job), then Puma.
        for name in ("sidekiq", "puma"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                self.log("stopping %s pid=%d (TERM)" % (name, proc.pid))
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.log("%s pid=%d did not exit, KILL" % (name, proc.pid))
                    proc.kill()
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
        for f in self._files:
            try:
                f.close()
            except Exception:
                pass
        self._files = []
        self.session.close()
        if self._redis_lock is not None:
            self._redis_lock.close()  # releases the flock
            self._redis_lock = None

    def __enter__(self) -> "ReferenceStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- traffic
    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, timeout: float = 30.0, **kw: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=timeout, **kw)

    def drive(self, path: str, seconds: Optional[float] = None, stop: Any = None, pause: float = 0.15) -> None:
        """GET ``path`` one request after another, ``pause`` s apart, for ``seconds`` or until ``stop``
        (a threading.Event) is set: steady traffic on one endpoint."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not (stop is not None and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
            self.get(path)
            time.sleep(pause)

    def enqueue(self, job: str, n: int = 1, arg: Optional[str] = None) -> List[str]:
        params = {"job": job, "n": n}  # type: Dict[str, Any]
        if arg is not None:
            params["arg"] = arg
        r = self.get("/enqueue", params=params)
        r.raise_for_status()
        return r.json()["ids"]

    def sidekiq_stats(self) -> Dict[str, int]:
        r = self.redis
        return {
            "processed": int(r.command("GET", "stat:processed") or 0),
            "failed": int(r.command("GET", "stat:failed") or 0),
            "enqueued": int(r.command("LLEN", "queue:default") or 0),
            "retry": int(r.command("ZCARD", "retry") or 0),
            "dead": int(r.command("ZCARD", "dead") or 0),
            "scheduled": int(r.command("ZCARD", "schedule") or 0),
        }

    def puma_stats(self) -> Optional[Dict[str, Any]]:
        try:
            r = requests.get("http://127.0.0.1:%d/stats" % self.control_port,
                             params={"token": "railwatch-e2e"}, timeout=2)
            return r.json()
        except (requests.RequestException, ValueError):
            return None


# --------------------------------------------------------------------------- scenarios
def _phase(name: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    start = utcnow()
    details = fn() or {}
    rec = {"phase": name, "start": start, "end": utcnow()}
    rec.update(details)
    return rec


def _count(statuses: List[Any]) -> Dict[str, int]:
    out = {}  # type: Dict[str, int]
    for s in statuses:
        out[str(s)] = out.get(str(s), 0) + 1
    return dict(sorted(out.items()))


def _wait_queue_drained(stack: ReferenceStack, timeout: float) -> Dict[str, int]:
    deadline = time.monotonic() + timeout
    stats = stack.sidekiq_stats()
    while time.monotonic() < deadline:
        stats = stack.sidekiq_stats()
        if stats["enqueued"] == 0 and stats["retry"] == 0 and stats["scheduled"] == 0:
            break
        time.sleep(0.5)
    return stats


def healthy(stack: ReferenceStack, seconds: float = 20.0) -> Dict[str, Any]:
    """Mixed OK traffic: /posts_fixed, /health, OkJob, and one FlakyOnceJob that fails once
    then succeeds on its retry (a recovering flaky job is healthy)."""

    def run() -> Dict[str, Any]:
        statuses = []  # type: List[int]
        flaky = stack.enqueue("FlakyOnceJob", 1)
        jobs = 1
        paths = ["/posts_fixed", "/health", "/posts_fixed?limit=10", "/health"]
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            statuses.append(stack.get(paths[i % len(paths)]).status_code)
            if i % 8 == 0:
                stack.enqueue("OkJob", 1)
                jobs += 1
            i += 1
            time.sleep(0.25)
        stats = _wait_queue_drained(stack, 20)
        return {"requests": len(statuses), "status_counts": _count(statuses), "jobs_enqueued": jobs,
                "flaky_jid": flaky[0], "sidekiq": stats}

    return _phase("healthy", run)


def n_plus_one(stack: ReferenceStack, requests_n: int = 10) -> Dict[str, Any]:
    """GET /posts (1 + 30 queries each: posts then one Author load per post), with a few
    /posts_fixed (2 queries) in between for contrast."""

    def run() -> Dict[str, Any]:
        statuses = []  # type: List[int]
        for i in range(requests_n):
            statuses.append(stack.get("/posts").status_code)
            if i % 4 == 3:
                statuses.append(stack.get("/posts_fixed").status_code)
            time.sleep(0.2)
        return {"requests": len(statuses), "status_counts": _count(statuses),
                "n_plus_one_requests": requests_n, "queries_per_request": 31}

    return _phase("n_plus_one", run)


def pool_exhaustion(stack: ReferenceStack, waves: int = 2, holders: int = 6, hold_seconds: float = 4.0,
                    innocents: int = 6) -> Dict[str, Any]:
    """Concurrent /slow_hold requests (each holds a DB connection in pg_sleep) against a pool
    of 3 with checkout_timeout 2 s, plus innocent /posts_fixed requests: those that cannot get a
    connection fail with ActiveRecord::ConnectionTimeoutError (500 after ~2 s)."""

    def run() -> Dict[str, Any]:
        results = []  # type: List[Any]
        lock = threading.Lock()

        def hit(path: str) -> None:
            t0 = time.monotonic()
            try:
                code = stack.session.get(stack.url(path), timeout=60).status_code  # type: Any
            except requests.RequestException as e:
                code = type(e).__name__
            with lock:
                results.append((path.split("?")[0], code, round(time.monotonic() - t0, 2)))

        puma = None
        with concurrent.futures.ThreadPoolExecutor(max_workers=holders + innocents) as ex:
            for _ in range(waves):
                futs = [ex.submit(hit, "/slow_hold?s=%g" % hold_seconds) for _ in range(holders)]
                time.sleep(0.3)
                for k in range(innocents):
                    futs.append(ex.submit(hit, "/posts_fixed" if k % 2 == 0 else "/posts_fixed?limit=5"))
                    time.sleep(0.15)
                time.sleep(1.0)
                puma = stack.puma_stats() or puma
                concurrent.futures.wait(futs)
                time.sleep(1.0)
        by_path = {}  # type: Dict[str, List[Any]]
        for path, code, _ in results:
            by_path.setdefault(path, []).append(code)
        return {"requests": len(results),
                "status_counts": {p: _count(c) for p, c in sorted(by_path.items())},
                "pool": {"size": 3, "checkout_timeout_s": 2, "puma_threads": 8},
                "puma_stats_sample": puma}

    return _phase("pool_exhaustion", run)


def sidekiq_failures(stack: ReferenceStack, always_fails: int = 20, report_exports: int = 2,
                     timeout: float = 60.0) -> Dict[str, Any]:
    """A burst of AlwaysFailsJob (plain Sidekiq worker, retry: 1, retry after ~1-10 s) and
    ReportExportJob (ActiveJob, NoMethodError, retry: 1 with Sidekiq's default ~15-25 s backoff)
    until they reach the dead set, plus one LongRunningJob (ActiveJob, sleeps)."""

    def run() -> Dict[str, Any]:
        before = stack.sidekiq_stats()
        long_ids = stack.enqueue("LongRunningJob", 1)
        t_long = time.monotonic()
        stack.enqueue("AlwaysFailsJob", always_fails)
        stack.enqueue("ReportExportJob", report_exports)
        target_dead = before["dead"] + always_fails + report_exports
        deadline = time.monotonic() + timeout
        stats = stack.sidekiq_stats()
        while time.monotonic() < deadline:
            stats = stack.sidekiq_stats()
            long_done = time.monotonic() - t_long > stack.long_job_seconds + 2
            if stats["dead"] >= target_dead and stats["retry"] == 0 and stats["enqueued"] == 0 and long_done:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        stats = stack.sidekiq_stats()
        return {"always_fails_enqueued": always_fails, "report_export_enqueued": report_exports,
                "long_running_job_id": long_ids[0], "long_running_seconds": stack.long_job_seconds,
                "dead_added": stats["dead"] - before["dead"], "sidekiq": stats,
                "complete": stats["dead"] >= target_dead}

    return _phase("sidekiq_failures", run)


# --------------------------------------------------------------------------- accuracy phases
# Set-ups the four e2e scenarios do not cover, captured as labelled scenarios for
# tests/accuracy (recipes and truth there). Each is short: tens of seconds of traffic.
def _background_traffic(stack: ReferenceStack, seconds: float, paths: List[str],
                        ok_job_every: int = 0, pause: float = 0.25) -> List[int]:
    """Sequential requests over ``paths`` for ``seconds`` (an OkJob every ``ok_job_every``)."""
    statuses = []  # type: List[int]
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        statuses.append(stack.get(paths[i % len(paths)]).status_code)
        if ok_job_every and i % ok_job_every == 0:
            stack.enqueue("OkJob", 1)
        i += 1
        time.sleep(pause)
    return statuses


def storm_at_end(stack: ReferenceStack, job: str = "InvoiceSyncJob", jobs: int = 12,
                 seconds: float = 45.0) -> Dict[str, Any]:
    """``jobs`` of a class that fails on every attempt with Sidekiq's default retries (25),
    healthy traffic around it, and the phase ends while their retries are still pending."""

    def run() -> Dict[str, Any]:
        ids = stack.enqueue(job, jobs)
        statuses = _background_traffic(stack, seconds, ["/posts_fixed", "/health"], ok_job_every=6)
        return {"job": job, "jobs": len(ids), "requests": len(statuses), "status_counts": _count(statuses),
                "sidekiq": stack.sidekiq_stats()}

    return _phase("storm_at_end:" + job, run)


def short_retry_storm(stack: ReferenceStack, job: str = "ShortRetryWorker", jobs: int = 12,
                      timeout: float = 45.0) -> Dict[str, Any]:
    """``jobs`` of an always-failing class with a short retry budget, until all are dead."""

    def run() -> Dict[str, Any]:
        before = stack.sidekiq_stats()
        stack.enqueue(job, jobs)
        deadline = time.monotonic() + timeout
        stats = before
        while time.monotonic() < deadline:
            stack.get("/posts_fixed")
            stats = stack.sidekiq_stats()
            if stats["dead"] - before["dead"] >= jobs and stats["retry"] == 0 and stats["scheduled"] == 0:
                break
            time.sleep(0.5)
        return {"job": job, "jobs": jobs, "dead_added": stats["dead"] - before["dead"], "sidekiq": stats}

    return _phase("short_retry_storm:" + job, run)


def flaky_recovers(stack: ReferenceStack, jobs: int = 3, seconds: float = 10.0) -> Dict[str, Any]:
    """Native and ActiveJob jobs that fail once, then succeed on their retry."""

    def run() -> Dict[str, Any]:
        stack.enqueue("FlakyOnceJob", jobs)
        stack.enqueue("FlakyOnceActiveJob", jobs)
        statuses = _background_traffic(stack, seconds, ["/posts_fixed", "/health"], ok_job_every=4)
        stats = _wait_queue_drained(stack, 60)
        return {"flaky_jobs": 2 * jobs, "requests": len(statuses), "sidekiq": stats}

    return _phase("flaky_recovers", run)


def stuck_job(stack: ReferenceStack, seconds: float = 40.0) -> Dict[str, Any]:
    """One LongRunningJob sleeping ``seconds`` while its peers (OkJob) take milliseconds."""

    def run() -> Dict[str, Any]:
        r = stack.get("/enqueue", params={"job": "LongRunningJob", "n": 1, "secs": seconds})
        r.raise_for_status()
        statuses = _background_traffic(stack, seconds - 5, ["/posts_fixed", "/health"], ok_job_every=2, pause=0.5)
        return {"long_running_job_id": r.json()["ids"][0], "sleeps_s": seconds, "requests": len(statuses),
                "sidekiq": stack.sidekiq_stats()}

    return _phase("stuck_job", run)


def slow_query_endpoint(stack: ReferenceStack, requests_n: int = 8) -> Dict[str, Any]:
    """A new endpoint running one 1.5 s query per request, among ordinary traffic."""

    def run() -> Dict[str, Any]:
        statuses = []  # type: List[int]
        for _ in range(requests_n):
            statuses.append(stack.get("/reports/slow?s=1.5").status_code)
            statuses.append(stack.get("/posts_fixed").status_code)
            statuses.append(stack.get("/health").status_code)
        return {"requests": len(statuses), "status_counts": _count(statuses), "slow_requests": requests_n}

    return _phase("slow_query_endpoint", run)


def batch_loads(stack: ReferenceStack, requests_n: int = 20) -> Dict[str, Any]:
    """/posts_batch: preload (IN (...)) of two associations and query-cache repeats."""

    def run() -> Dict[str, Any]:
        statuses = []  # type: List[int]
        for i in range(requests_n):
            statuses.append(stack.get("/posts_batch").status_code)
            if i % 3 == 0:
                statuses.append(stack.get("/posts_fixed?limit=10").status_code)
            time.sleep(0.2)
        return {"requests": len(statuses), "status_counts": _count(statuses)}

    return _phase("batch_loads", run)


def not_found_flood(stack: ReferenceStack, requests_n: int = 150) -> Dict[str, Any]:
    """A scanner's 404 flood (RoutingError) and a load balancer's health checks."""

    def run() -> Dict[str, Any]:
        probes = ["/wp-login.php", "/.env", "/admin/config.php", "/phpmyadmin/", "/xmlrpc.php", "/.git/config"]
        statuses = []  # type: List[int]
        for i in range(requests_n):
            statuses.append(stack.get(probes[i % len(probes)] + ("?i=%d" % i)).status_code)
            statuses.append(stack.get("/health").status_code)
        return {"requests": len(statuses), "status_counts": _count(statuses)}

    return _phase("not_found_flood", run)


def deploy_then_n_plus_one(stack: ReferenceStack, before_seconds: float = 15.0, requests_n: int = 15,
                           revision: str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432") -> Dict[str, Any]:
    """Healthy traffic, a deploy (new REVISION written, Puma restarted), then an N+1 endpoint
    (/posts) that was never requested before the deploy."""

    def run() -> Dict[str, Any]:
        statuses = _background_traffic(stack, before_seconds, ["/posts_fixed", "/health"], ok_job_every=8)
        with open(os.path.join(stack.workdir, "REVISION"), "w") as f:
            f.write(revision + "\n")
        deploy_at = utcnow()
        stack.restart_puma()
        for _ in range(requests_n):
            statuses.append(stack.get("/posts").status_code)
            statuses.append(stack.get("/posts_fixed").status_code)
            time.sleep(0.2)
        return {"deploy_at": deploy_at, "revision": revision, "requests": len(statuses),
                "status_counts": _count(statuses), "n_plus_one_requests": requests_n}

    return _phase("deploy_then_n_plus_one", run)


ACCURACY_PHASES = {
    "storm_at_end": storm_at_end,
    "short_retry_storm": short_retry_storm,
    "flaky_recovers": flaky_recovers,
    "stuck_job": stuck_job,
    "slow_query_endpoint": slow_query_endpoint,
    "batch_loads": batch_loads,
    "not_found_flood": not_found_flood,
    "deploy_then_n_plus_one": deploy_then_n_plus_one,
}


SCENARIOS = {
    "healthy": healthy,
    "n_plus_one": n_plus_one,
    "pool_exhaustion": pool_exhaustion,
    "sidekiq_failures": sidekiq_failures,
}


def run_scenarios(stack: ReferenceStack, names: List[str], healthy_seconds: float = 20.0,
                  gap: float = 3.0, out: Any = sys.stdout) -> List[Dict[str, Any]]:
    phases = []
    path = os.path.join(stack.workdir, "phases.jsonl")
    with open(path, "w") as f:
        for i, name in enumerate(names):
            if i:
                time.sleep(gap)
            stack.log("phase %s" % name)
            rec = healthy(stack, healthy_seconds) if name == "healthy" else SCENARIOS[name](stack)
            rec["setup"] = stack.log_setup
            line = json.dumps(rec, sort_keys=False)
            f.write(line + "\n")
            f.flush()
            out.write(line + "\n")
            out.flush()
            phases.append(rec)
    return phases


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", choices=LOG_SETUPS, default="info", help="RW_LOG_SETUP for the app")
    p.add_argument("--scenario", default="all",
                   help="all, or a comma-separated list of: %s" % ", ".join(SCENARIOS))
    p.add_argument("--workdir", required=True, help="logs go to WORKDIR/log, phases to WORKDIR/phases.jsonl")
    p.add_argument("--port", type=int, default=3300, help="Puma port (control app on PORT+1)")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                   help="dedicated Redis db for Sidekiq, FLUSHDB at start (default %(default)s); 'auto' picks "
                        "a free one of db 6-15")
    p.add_argument("--db-name", default=DEFAULT_DB_NAME)
    p.add_argument("--healthy-seconds", type=float, default=20.0)
    p.add_argument("--gap", type=float, default=3.0, help="quiet seconds between phases")
    p.add_argument("--no-bullet", action="store_true", help="disable Bullet in the app")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    names = list(SCENARIOS) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",") if s.strip()]
    for n in names:
        if n not in SCENARIOS:
            p.error("unknown scenario %r" % n)

    os.makedirs(args.workdir, exist_ok=True)
    stack = ReferenceStack(args.workdir, args.setup, args.port, redis_url=args.redis_url, db_name=args.db_name,
                           bullet=not args.no_bullet, verbose=not args.quiet)

    def on_signal(signum: int, _frame: Any) -> None:
        stack.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    with stack:
        run_scenarios(stack, names, healthy_seconds=args.healthy_seconds, gap=args.gap)
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
