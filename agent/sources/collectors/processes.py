"""Puma and Sidekiq processes on this host, found by command line (psutil).

Metrics, each labelled ``component`` ("puma" | "sidekiq") and ``pid``; Puma's also
``role`` ("master" | "worker", from ``puma: cluster worker N``):

    process.rss_bytes        resident memory
    process.cpu_percent      CPU since the previous sample (100 = one core)
    process.threads          OS threads
    db.connections           established TCP connections to a database port (5432, 6432, 3306)
    redis.connections        established TCP connections to a Redis port (6379)

and per component (label ``component`` only):

    process.count            processes found now
    process.restarts_total   processes that appeared after the first sample (a restart, a
                             respawned Puma worker, an OOM-killed Sidekiq coming back)
    process.exits_total      processes that went away

Process titles matched (the defaults of ``collectors.psutil``)::

    puma 6.4.2 (tcp://0.0.0.0:3000) [app]        puma: cluster worker 0: 4242 [app]
    sidekiq 7.2.0 app [0 of 5 busy]              bundle exec puma -C config/puma.rb

Connections of other users' processes are only visible to root or that user: missing
permission leaves those metrics out rather than failing the sample.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil

from agent.clock import Clock
from agent.events import Metric
from agent.sources.collectors.sample import metric

SOURCE = "poll:psutil"
_ATTRS = ["pid", "cmdline", "create_time"]


class ProcessCollector:
    name = "psutil"

    def __init__(
        self,
        puma_match: str,
        sidekiq_match: str,
        db_ports: Sequence[int],
        redis_ports: Sequence[int],
        clock: Clock,
        process_iter: Callable[..., Iterable[Any]] = psutil.process_iter,
        own_pid: Optional[int] = None,
    ) -> None:
        self.patterns = [("puma", re.compile(puma_match)), ("sidekiq", re.compile(sidekiq_match))]
        self.db_ports = frozenset(db_ports)
        self.redis_ports = frozenset(redis_ports)
        self.clock = clock
        self.process_iter = process_iter
        self.own_pid = own_pid if own_pid is not None else os.getpid()
        self._procs: Dict[Tuple[int, float], Any] = {}  # kept so cpu_percent measures since the last sample
        self._seen: Dict[str, Set[Tuple[int, float]]] = {}
        self._sampled_once = False
        self.restarts: Dict[str, int] = {"puma": 0, "sidekiq": 0}
        self.exits: Dict[str, int] = {"puma": 0, "sidekiq": 0}

    def find(self) -> List[Tuple[str, Any]]:
        """(component, process) for every process whose command line matches."""
        found = []
        for proc in self.process_iter(_ATTRS):
            info = getattr(proc, "info", None) or {}
            pid = info.get("pid", getattr(proc, "pid", None))
            cmdline = " ".join(info.get("cmdline") or [])
            if pid == self.own_pid or not cmdline or "railwatch" in cmdline:
                continue
            for component, pattern in self.patterns:
                if pattern.search(cmdline):
                    found.append((component, proc))
                    break
        return found

    def collect(self) -> List[Metric]:
        now = self.clock.now()
        out: List[Metric] = []
        current: Dict[str, Set[Tuple[int, float]]] = {"puma": set(), "sidekiq": set()}
        procs: Dict[Tuple[int, float], Any] = {}
        for component, proc in self.find():
            info = getattr(proc, "info", None) or {}
            key = (proc.pid, info.get("create_time") or 0.0)
            proc = self._procs.get(key, proc)  # the same object: cpu_percent is measured from its last call
            procs[key] = proc
            current[component].add(key)
            out.extend(self._sample(component, proc, info, now))
        self._procs = procs
        for component, keys in current.items():
            before = self._seen.get(component, set())
            if self._sampled_once:
                self.restarts[component] += len(keys - before)
                self.exits[component] += len(before - keys)
            self._seen[component] = keys
            labels = {"component": component}
            out.append(metric(SOURCE, "process.count", len(keys), now, labels))
            out.append(metric(SOURCE, "process.restarts_total", self.restarts[component], now, dict(labels)))
            out.append(metric(SOURCE, "process.exits_total", self.exits[component], now, dict(labels)))
        self._sampled_once = True
        return out

    def _sample(self, component: str, proc: Any, info: Dict[str, Any], now: float) -> List[Metric]:
        labels = {"component": component, "pid": str(proc.pid)}
        if component == "puma":
            labels["role"] = "worker" if "cluster worker" in " ".join(info.get("cmdline") or []) else "master"
        out: List[Metric] = []
        try:
            with proc.oneshot():
                out.append(metric(SOURCE, "process.rss_bytes", proc.memory_info().rss, now, dict(labels)))
                out.append(metric(SOURCE, "process.cpu_percent", proc.cpu_percent(interval=None), now, dict(labels)))
                out.append(metric(SOURCE, "process.threads", proc.num_threads(), now, dict(labels)))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return []
        except psutil.AccessDenied:
            pass
        db, redis = self._connections(proc)
        if db is not None:
            out.append(metric(SOURCE, "db.connections", db, now, dict(labels)))
            out.append(metric(SOURCE, "redis.connections", redis, now, dict(labels)))
        return out

    def _connections(self, proc: Any) -> Tuple[Optional[int], int]:
        get = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6 names it connections
        try:
            conns = get(kind="tcp")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            return None, 0
        db = redis = 0
        for c in conns:
            if not c.raddr or c.status != psutil.CONN_ESTABLISHED:
                continue
            port = c.raddr.port if hasattr(c.raddr, "port") else c.raddr[1]
            db += port in self.db_ports
            redis += port in self.redis_ports
        return db, redis
