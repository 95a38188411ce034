"""``railwatch demo``: the live agent on real logs of the three failures, no Rails app needed.

The shipped logs (``agent/demo_data/``, real output of the reference app while the e2e
driver reproduced an N+1, a connection-pool exhaustion and a Sidekiq retry storm) are
written line by line, paced by their own timestamps (``speed`` times faster), into
``production.log`` and ``sidekiq.log`` in a temporary directory. The real ``Daemon``
follows them, as ``railwatch run`` would, with its state (incident store, bundles) in
``state_dir``; each incident is announced as it opens. When the replay is over the
daemon stops cleanly (final flush), and the incidents and their bundles are listed.
"""
from __future__ import annotations

import gzip
import heapq
import logging
import os
import re
import tarfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, TextIO, Tuple

from agent.config import apply_overrides, parse

LOGS = ("production.log", "sidekiq.log")
# "I, [2026-11-26T23:39:30.108782 #18574]" (Rails Logger) or "2026-11-26T23:39:52.981Z pid=…" (Sidekiq)
_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)")
MAX_PAUSE_S = 1.0  # a long quiet stretch in the log is not worth waiting for


def demo_lines(name: str) -> List[str]:
    """One shipped log's lines (with their newlines)."""
    from importlib.resources import files

    data = (files("agent") / "demo_data" / f"{name}.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8").splitlines(keepends=True)


def timeline(logs: Dict[str, List[str]]) -> List[Tuple[float, str, str]]:
    """(log time, log name, record) for every record of every log, merged by time.

    A record is a line with a timestamp plus the lines without one that follow it (a
    backtrace), so a multi-line record is written in one go, as the app's logger does.
    """
    from agent.timeparse import parse_iso

    per_log: List[List[Tuple[float, str, str]]] = []
    for name, lines in logs.items():
        records: List[Tuple[float, str, str]] = []
        ts, record = None, ""
        for line in lines:
            m = _TS.search(line[:60])
            t = parse_iso(m.group(1)) if m else None
            if t is not None and record:
                records.append((ts if ts is not None else t, name, record))
                record = ""
            if t is not None:
                ts = t
            record += line
        if record:
            records.append((ts or 0.0, name, record))
        per_log.append(records)
    # merged by time, never reordered within a log (threads stamp lines slightly out of order)
    return list(heapq.merge(*per_log, key=lambda r: r[0]))


def replay(records: List[Tuple[float, str, str]], log_dir: str, speed: float,
           sleep: Callable[[float], None] = time.sleep, stop: Optional[threading.Event] = None) -> int:
    """Append each record to ``log_dir/<name>``, pausing for the log's own gaps / ``speed``."""
    handles: Dict[str, TextIO] = {name: open(os.path.join(log_dir, name), "a", encoding="utf-8") for name in LOGS}
    written = 0
    try:
        previous = records[0][0] if records else 0.0
        for ts, name, record in records:
            if stop is not None and stop.is_set():
                break
            gap = (ts - previous) / speed if speed > 0 else 0.0
            if gap > 0.005:
                for fh in handles.values():
                    fh.flush()
                sleep(min(gap, MAX_PAUSE_S))
            previous = max(previous, ts)
            handles[name].write(record)
            written += 1
    finally:
        for fh in handles.values():
            fh.close()
    return written


class _IncidentAnnouncer(logging.Handler):
    """Prints the daemon's ``incident <id> <kind>: <title>`` records as they happen."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.say = say
        self.opened: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "incident %s %s: %s" and isinstance(record.args, tuple) and len(record.args) == 3:
            incident_id, kind, title = record.args
            if kind == "open":
                self.opened.append(str(incident_id))
            self.say(f"  ▶ incident {kind}: {title}  [{incident_id}]")


def run_demo(state_dir: str, speed: float = 8.0, say: Callable[[str], None] = print, verbose: bool = False) -> List[object]:
    """Replay the shipped logs into a live daemon; the incidents it opened (from its store)."""
    from agent.daemon import Daemon
    from agent.logsetup import setup_logging
    from agent.incidents.store import IncidentStore

    log_dir = os.path.join(state_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    for name in LOGS:
        open(os.path.join(log_dir, name), "w").close()
    logs = {name: demo_lines(name) for name in LOGS}
    records = timeline(logs)
    data = apply_overrides(
        {"collectors": {"psutil": {"enabled": False}}, "tail": {"poll_interval_s": 0.1}},
        logs=tuple(os.path.join(log_dir, n) for n in LOGS), state_dir=state_dir, metrics_listen="off", start="beginning",
    )
    config = parse(data)
    setup_logging("info" if verbose else "error")
    announcer = _IncidentAnnouncer(say)
    daemon_log = logging.getLogger("railwatch.daemon")
    daemon_log.addHandler(announcer)
    if not verbose:  # the daemon's own logger stays quiet; the announcer still hears INFO records
        daemon_log.setLevel(logging.INFO)
        for handler in logging.getLogger("railwatch").handlers:
            handler.setLevel(logging.ERROR)
    span = records[-1][0] - records[0][0] if records else 0.0
    say(f"railwatch demo: replaying {sum(len(v) for v in logs.values()):,} real log lines "
        f"({span:.0f} s of a Rails app's life, {speed:g}x faster) into {log_dir}/")
    say("  the app: Rails 6.1 + Puma + Sidekiq 6.4, while an N+1, a connection-pool exhaustion and a Sidekiq "
        "retry storm were reproduced\n")
    daemon = Daemon(config, environ={})
    stop = threading.Event()

    def writer() -> None:
        try:
            replay(records, log_dir, speed, stop=stop)
        finally:
            # let the daemon read what was written, then stop it as SIGTERM would (final flush)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and not _caught_up(daemon, log_dir):
                time.sleep(0.1)
            daemon.stopping = True
            tailer = getattr(daemon, "tailer", None)
            if tailer is not None:
                tailer.waker.event.set()

    thread = threading.Thread(target=writer, name="demo-writer", daemon=True)
    thread.start()
    try:
        status = daemon.run()
    finally:
        stop.set()
        thread.join(15.0)
        daemon_log.removeHandler(announcer)
    if status != 0:
        raise RuntimeError(f"the daemon could not start (status {status})")
    with IncidentStore(state_dir) as store:
        return list(store.list_incidents(None, limit=100))


def _caught_up(daemon: object, log_dir: str) -> bool:
    tailer = getattr(daemon, "tailer", None)
    if tailer is None:
        return False
    stats = tailer.stats()
    size = sum(os.path.getsize(os.path.join(log_dir, n)) for n in LOGS)
    return bool(stats) and all(s.lag_bytes == 0 for s in stats) and size > 0


def describe(incidents: List[object], state_dir: str) -> Iterator[str]:
    """The closing summary: each incident, its triage in two lines, its bundle and what is in it."""
    from agent.timeparse import to_iso

    yield ""
    yield f"{len(incidents)} incident(s) opened, each with a diagnostic bundle:"
    for inc in sorted(incidents, key=lambda i: i.opened_at):  # type: ignore[attr-defined]
        triage = inc.finding.get("triage") or {}  # type: ignore[attr-defined]
        yield ""
        yield f"[{inc.severity.upper()}] {inc.title}"  # type: ignore[attr-defined]
        yield f"  id       {inc.id}   detector {inc.detector}"  # type: ignore[attr-defined]
        yield f"  window   {to_iso(inc.first_seen)} → {to_iso(inc.last_seen)} ({inc.count} occurrence(s))"  # type: ignore[attr-defined]
        if triage.get("summary"):
            yield f"  summary  {_cut(triage['summary'], 300)}"
        if triage.get("containment"):
            yield f"  do now   {_cut(triage['containment'][0], 300)}"
        bundle = inc.bundle_path  # type: ignore[attr-defined]
        if bundle and os.path.exists(bundle):
            with tarfile.open(bundle) as tar:
                names = sorted({m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name})
            yield f"  bundle   {bundle} ({os.path.getsize(bundle):,} bytes: {', '.join(names[:8])}{'…' if len(names) > 8 else ''})"
    yield ""
    yield "Look around:"
    yield f"  railwatch incidents list --state-dir {state_dir}"
    if incidents:
        yield f"  railwatch incidents show --state-dir {state_dir} {incidents[0].id}"  # type: ignore[attr-defined]
    yield f"  tar tzf {state_dir}/incidents/<id>/bundle.tar.gz"
    yield f"  rm -rf {state_dir}     # when done"


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["demo_lines", "describe", "replay", "run_demo", "timeline"]
