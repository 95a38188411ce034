"""Puma's control app ``/stats`` (``activate_control_app`` / ``--control-url``), via requests.

Metrics (rails-signals.md B.6; keys a Puma version lacks are left out):

    puma.backlog, puma.running, puma.pool_capacity, puma.max_threads,
    puma.busy_threads (6.6+), puma.requests_count (5.0+), puma.backlog_max (7.0+)

Single mode: no labels. Cluster mode: each of those per worker, labelled ``worker``
(its index) and ``pid``, from ``worker_status[].last_status``; plus, unlabelled,
``puma.workers``, ``puma.booted_workers`` and ``puma.old_workers`` (old = still
running the previous code during a phased restart).

``pool_capacity == 0`` with ``backlog > 0`` is thread-pool saturation: the
pool_exhaustion detector pairs the two by identical labels.
"""
from __future__ import annotations

from typing import Any, Dict, List

from agent.clock import Clock
from agent.events import Metric
from agent.sources.collectors.sample import metric

SOURCE = "poll:puma"
WORKER_KEYS = ("backlog", "running", "pool_capacity", "max_threads", "busy_threads", "requests_count", "backlog_max")
CLUSTER_KEYS = ("workers", "booted_workers", "old_workers")


class PumaCollector:
    name = "puma"

    def __init__(self, url: str, token: str, session: Any, clock: Clock, timeout_s: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/stats"
        self.token = token
        self.session = session
        self.clock = clock
        self.timeout_s = timeout_s

    def collect(self) -> List[Metric]:
        params = {"token": self.token} if self.token else None
        response = self.session.get(self.url, params=params, timeout=self.timeout_s)
        if response.status_code != 200:
            # the URL carries the token: never put it in the message
            raise RuntimeError(f"Puma control app answered HTTP {response.status_code}")
        return self.parse(response.json(), self.clock.now())

    @staticmethod
    def parse(stats: Dict[str, Any], now: float) -> List[Metric]:
        out: List[Metric] = []
        workers = stats.get("worker_status")
        if not isinstance(workers, list):
            return _numbers(stats, WORKER_KEYS, now, {})
        out.extend(_numbers(stats, CLUSTER_KEYS, now, {}))
        for worker in workers:
            if not isinstance(worker, dict):
                continue
            labels = {"worker": str(worker.get("index", "")), "pid": str(worker.get("pid", ""))}
            out.extend(_numbers(worker.get("last_status") or {}, WORKER_KEYS, now, labels))
        return out


def _numbers(data: Dict[str, Any], keys: Any, now: float, labels: Dict[str, str]) -> List[Metric]:
    out = []
    for key in keys:
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(metric(SOURCE, f"puma.{key}", value, now, dict(labels)))
    return out
