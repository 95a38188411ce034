"""Run ``railwatch run`` as a real subprocess next to the reference stack, and watch what it writes.

Used by test_e2e_agent.py and test_e2e_fleet.py (loaded through _load.py: the test suite runs
with --import-mode=importlib, so this directory is not on sys.path). Standard library + requests.

    agent = RailwatchAgent(state_dir, logs=[...], collectors={...}, metrics_port=free_port())
    agent.start()                  # python -m agent run --config <state_dir>/railwatch.toml
    agent.incidents()              # {incident id: incident.json} from the directory sink
    agent.stop()                   # SIGTERM to the PID it started, KILL after a grace period

``LineClock`` records, for each line of a log, the wall-clock time a poller first saw it: the
"written at" reference for latency figures (a line's own timestamp is when the app formatted it,
which Rails does before the write; the poller's view is what any tailer could have had).
``IncidentClock`` does the same for each incident.json, keeping the opening update it first read.
``n_plus_one_request`` / ``append_requests`` replay the captured app's N+1 request (fixtures of
tests/fixtures/logs/e2e) with fresh times and request ids, for tests that need no Rails stack.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import requests

from agent.cli_daemon import to_toml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def missing_prerequisites() -> List[str]:
    """What the reference stack plus a fully equipped agent need and this machine lacks."""
    missing = [exe for exe in ("ruby", "puma", "sidekiq", "psql") if shutil.which(exe) is None]
    if not _reachable(5432):
        missing.append("PostgreSQL on 127.0.0.1:5432")
    if not _reachable(6379):
        missing.append("Redis on 127.0.0.1:6379")
    # the agent's optional collectors (pip install -e '.[test]')
    missing += ["python package %s" % m for m in ("redis", "psycopg") if importlib.util.find_spec(m) is None]
    return missing


def require_prerequisites(extra: Optional[List[str]] = None) -> None:
    """pytest.skip with a one-line reason when something is missing; pytest.fail under CI=true."""
    import pytest

    missing = missing_prerequisites() + list(extra or [])
    if not missing:
        return
    msg = "reference stack unavailable (%s); run tests/e2e/install-deps.sh" % ", ".join(missing)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " (CI is set: the e2e tests must run)")
    pytest.skip(msg)


def free_port_pair() -> int:
    """A port P with P and P+1 free on loopback (Puma and its control app)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports")


def count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("%s not met within %.0f s" % (what, timeout))
        time.sleep(interval)


# --------------------------------------------------------------------------- the agent process
class RailwatchAgent:
    """One ``railwatch run`` subprocess with its own state dir, config and metrics port."""

    def __init__(self, state_dir: str, logs: List[str], metrics_port: int,
                 collectors: Optional[Dict[str, Dict[str, Any]]] = None, sinks: Optional[Dict[str, Dict[str, Any]]] = None,
                 incidents: Optional[Dict[str, Any]] = None, app_root: str = "", hostname: str = "",
                 extra: Optional[Dict[str, Any]] = None):
        self.state_dir = os.path.abspath(state_dir)
        self.logs = [os.path.abspath(p) for p in logs]
        self.metrics_port = metrics_port
        self.collectors = collectors or {}
        self.sinks = sinks or {}
        self.incident_settings = incidents or {}
        self.app_root = app_root
        self.hostname = hostname
        self.extra = extra or {}
        self.config_path = os.path.join(self.state_dir, "railwatch.toml")
        self.log_path = os.path.join(self.state_dir, "railwatch.log")
        self.incidents_dir = os.path.join(self.state_dir, "incidents")
        self.proc = None  # type: Optional[subprocess.Popen]
        self._out = None  # type: Any

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.metrics_port

    def config_tables(self) -> Dict[str, Any]:
        tables = {}  # type: Dict[str, Any]
        app = {}  # type: Dict[str, Any]
        if self.app_root:
            app["root"] = self.app_root
        if self.hostname:
            app["host"] = self.hostname  # two "hosts" on one machine
        if app:
            tables["app"] = app
        # start = "beginning": the logs are created by the stack just before; nothing may be missed
        tables["sources"] = [{"path": p, "start": "beginning"} for p in self.logs]
        tables["state"] = {"dir": self.state_dir}
        tables["limits"] = {"checkpoint_interval_s": 1.0}
        if self.collectors:
            tables["collectors"] = dict(self.collectors)
        if self.sinks:
            tables["sinks"] = dict(self.sinks)
        if self.incident_settings:
            tables["incidents"] = self.incident_settings
        tables.update(self.extra)
        return tables

    def write_config(self) -> str:
        os.makedirs(self.state_dir, exist_ok=True)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(to_toml(self.config_tables()))  # the writer `railwatch config show` uses
        return self.config_path

    def argv(self) -> List[str]:
        tail = ["run", "--config", self.config_path, "--metrics-listen", "127.0.0.1:%d" % self.metrics_port,
                "--log-level", "info"]
        return [sys.executable, "-m", "agent"] + tail

    def start(self, timeout: float = 30.0) -> "RailwatchAgent":
        if self.proc is not None:
            raise RuntimeError("already started")
        self.write_config()
        env = dict(os.environ)
        self._out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(self._healthy, timeout, 0.1, "railwatch /healthz on %s" % self.base_url)
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            return requests.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError("railwatch exited with %s:\n%s" % (self.proc.returncode, self.output()[-3000:]))

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM to the PID this object started (KILL after ``timeout``); its exit status."""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
            code = proc.returncode
        if self._out is not None:
            self._out.close()
            self._out = None
        return code

    def output(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ------------------------------------------------------------------ what it produced
    def incidents_of(self, detector: str) -> List[Dict[str, Any]]:
        """The incidents (the "incident" part of each incident.json) one detector opened."""
        return [doc["incident"] for doc in self.incidents().values() if doc["incident"]["detector"] == detector]

    def incidents(self) -> Dict[str, Dict[str, Any]]:
        """incident.json documents of the directory sink, by incident id (half-written files are
        impossible: the sink renames them into place)."""
        out = {}
        try:
            names = sorted(os.listdir(self.incidents_dir))
        except OSError:
            return {}
        for name in names:
            path = os.path.join(self.incidents_dir, name, "incident.json")
            try:
                with open(path, encoding="utf-8") as f:
                    out[name] = json.load(f)
            except (OSError, ValueError):
                continue
        return out

    def caught_up(self, paths: List[str]) -> bool:
        """The agent has read every complete line now in ``paths`` (its /metrics say so)."""
        text = self.metrics_text()
        return all(metric_value(text, "railwatch_lines_read_total", source=os.path.abspath(p)) >= count_lines(p)
                   for p in paths)

    def metrics_text(self) -> str:
        r = requests.get(self.base_url + "/metrics", timeout=5)
        r.raise_for_status()
        return r.text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
        return metric_value(self.metrics_text(), name, **labels)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# --------------------------------------------------------------------------- watchers
class LineClock(threading.Thread):
    """Polls log files every ``interval`` s and remembers when each line (1-based) first appeared."""

    def __init__(self, paths: List[str], interval: float = 0.02):
        super().__init__(name="line-clock", daemon=True)
        self.paths = [os.path.abspath(p) for p in paths]
        self.interval = interval
        self.seen = {p: [] for p in self.paths}  # type: Dict[str, List[float]]  # index = line - 1
        self._state = {p: (0, b"") for p in self.paths}  # offset, partial last line
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.interval)

    def poll(self) -> None:
        now = time.time()
        for p in self.paths:
            offset, partial = self._state[p]
            try:
                with open(p, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            if not data:
                continue
            chunk = partial + data
            complete = chunk.count(b"\n")
            with self._lock:
                self.seen[p].extend([now] * complete)
            self._state[p] = (offset + len(data), chunk[chunk.rfind(b"\n") + 1:])

    def written_at(self, path: str, line: int) -> Optional[float]:
        with self._lock:
            times = self.seen.get(os.path.abspath(path), [])
            return times[line - 1] if 0 < line <= len(times) else None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self.poll()


class IncidentClock(threading.Thread):
    """Polls agents' incident directories and remembers when each incident.json first appeared,
    and what it said then (the opening update: later updates rewrite the file)."""

    def __init__(self, dirs: List[str], interval: float = 0.02):
        super().__init__(name="incident-clock", daemon=True)
        self.dirs = dirs
        self.interval = interval
        self.appeared = {}  # type: Dict[Tuple[str, str], float]
        self.first_doc = {}  # type: Dict[Tuple[str, str], Dict[str, Any]]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.interval)

    def poll(self) -> None:
        now = time.time()
        for d in self.dirs:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                key = (d, name)
                if key in self.appeared:
                    continue
                try:
                    with open(os.path.join(d, name, "incident.json"), encoding="utf-8") as f:
                        doc = json.load(f)
                except (OSError, ValueError):
                    continue
                self.appeared[key] = now
                self.first_doc[key] = doc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# --------------------------------------------------------------------------- replayed app lines
FIXTURES = os.path.join(REPO, "tests", "fixtures", "logs", "e2e")
_ISO_IN_PREFIX = re.compile(r"\[\d{4}-\d\d-\d\dT[\d:.]+ #")
_STARTED_RID = re.compile(r"\[([0-9a-f-]{36})\] Started")


def n_plus_one_request(setup: str = "info") -> str:
    """The lines of one GET /posts (N+1) request of the captured reference app, Started to the
    line before the next request's Started (Bullet's warning included in the info set-up)."""
    with open(os.path.join(FIXTURES, setup, "production.log"), encoding="utf-8") as f:
        lines = f.read().splitlines(True)
    start = next(i for i, line in enumerate(lines) if 'Started GET "/posts" ' in line)
    end = next(i for i in range(start + 1, len(lines)) if "] Started " in lines[i])
    return "".join(lines[start:end])


def fresh_request(block: str) -> str:
    """``block`` as if logged now by a new request: current UTC times, a new request id."""
    import datetime
    import uuid

    rid = _STARTED_RID.search(block)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    text = block.replace(rid.group(1), str(uuid.uuid4())) if rid else block
    return _ISO_IN_PREFIX.sub("[%s #" % now, text)


def append_requests(path: str, block: str, n: int, interval: float = 0.3,
                    stop: Optional[Callable[[], bool]] = None) -> float:
    """Append ``n`` fresh copies of ``block`` to ``path``, one every ``interval`` s (or until
    ``stop()`` is true); returns the wall time of the first write."""
    first = 0.0
    with open(path, "a", encoding="utf-8") as f:
        for i in range(n):
            f.write(fresh_request(block))
            f.flush()
            first = first or time.time()
            if stop is not None and stop():
                break
            if i < n - 1:
                time.sleep(interval)
    return first
