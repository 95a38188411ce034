"""Sidekiq's own state, read from its Redis (rails-signals.md D.5-D.6), via the redis client.

Metrics:

    sidekiq.queue_size{queue}         LLEN queue:<name>
    sidekiq.queue_latency_s{queue}    now - enqueued_at of the oldest job (LINDEX queue:<name> -1);
                                      enqueued_at is float seconds up to 7.x and integer
                                      milliseconds from 8.0: a float or a value < 1e11 is seconds
    sidekiq.enqueued                  all queues together
    sidekiq.retry_size                ZCARD retry
    sidekiq.dead_size                 ZCARD dead
    sidekiq.scheduled_size            ZCARD schedule
    sidekiq.processed_total           stat:processed (lifetime counter)
    sidekiq.failed_total              stat:failed (counts every failed execution, retries included)
    sidekiq.processes                 live processes (members of ``processes`` whose heartbeat hash exists)
    sidekiq.busy                      jobs running now, over all processes
    sidekiq.concurrency               threads over all processes (``info.concurrency``)

At most ``max_queues`` queues are read (sorted by name), so a runaway queue set cannot
grow the sample. ``namespace`` is the redis-namespace prefix of Sidekiq <= 6 apps.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional

from agent.clock import Clock
from agent.events import Metric
from agent.sources.collectors.sample import metric

SOURCE = "poll:sidekiq"
MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138; epoch milliseconds passed it in 1973


def enqueued_seconds(value: Any) -> Optional[float]:
    """Sidekiq's enqueued_at in epoch seconds, whatever the version's unit."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) or value < MS_THRESHOLD:
        return float(value)
    return value / 1000.0


class SidekiqCollector:
    name = "sidekiq"

    def __init__(self, client: Any, clock: Clock, namespace: str = "", max_queues: int = 100) -> None:
        self.client = client  # a redis.Redis with decode_responses=True
        self.clock = clock
        self.prefix = f"{namespace}:" if namespace else ""
        self.max_queues = max_queues

    def collect(self) -> List[Metric]:
        k = self.prefix
        r = self.client
        queues = sorted(_text(q) for q in r.smembers(k + "queues"))[: self.max_queues]
        identities = sorted(_text(p) for p in r.smembers(k + "processes"))[:1000]
        pipe = r.pipeline(transaction=False)
        for q in queues:
            pipe.llen(f"{k}queue:{q}")
            pipe.lindex(f"{k}queue:{q}", -1)
        for key in ("retry", "dead", "schedule"):
            pipe.zcard(k + key)
        pipe.get(k + "stat:processed")
        pipe.get(k + "stat:failed")
        for ident in identities:
            pipe.hmget(k + ident, "busy", "info")
        replies = pipe.execute()
        now = self.clock.now()
        out: List[Metric] = []
        total = 0
        for i, q in enumerate(queues):
            size, oldest = int(replies[2 * i] or 0), replies[2 * i + 1]
            total += size
            out.append(metric(SOURCE, "sidekiq.queue_size", size, now, {"queue": q}))
            out.append(metric(SOURCE, "sidekiq.queue_latency_s", self._latency(oldest, now), now, {"queue": q}))
        rest = replies[2 * len(queues):]
        out.append(metric(SOURCE, "sidekiq.enqueued", total, now))
        for name, value in zip(("retry_size", "dead_size", "scheduled_size"), rest[:3]):
            out.append(metric(SOURCE, f"sidekiq.{name}", int(value or 0), now))
        out.append(metric(SOURCE, "sidekiq.processed_total", _int(rest[3]), now))
        out.append(metric(SOURCE, "sidekiq.failed_total", _int(rest[4]), now))
        alive = busy = concurrency = 0
        for busy_raw, info_raw in rest[5:]:
            if busy_raw is None and info_raw is None:
                continue  # its heartbeat expired: the process is gone (or was SIGKILLed)
            alive += 1
            busy += _int(busy_raw)
            concurrency += _int(_json(info_raw).get("concurrency"))
        out.append(metric(SOURCE, "sidekiq.processes", alive, now))
        out.append(metric(SOURCE, "sidekiq.busy", busy, now))
        out.append(metric(SOURCE, "sidekiq.concurrency", concurrency, now))
        return out

    @staticmethod
    def _latency(job: Any, now: float) -> float:
        if job is None:
            return 0.0
        enqueued = enqueued_seconds(_json(job).get("enqueued_at"))
        return max(now - enqueued, 0.0) if enqueued is not None else 0.0

    def close(self) -> None:
        self.client.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _json(value: Any) -> dict:  # type: ignore[type-arg]
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
