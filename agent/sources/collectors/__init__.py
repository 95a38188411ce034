"""Metric collectors: samples of the app's processes and services, as ``Metric`` events.

Each collector has a ``name`` and ``collect() -> list[Metric]`` and takes its client
(psutil's process iterator, a ``requests.Session``, a Redis client, a Postgres connect
callable) in its constructor, so tests can hand it a real service or a replay. A
``CollectorRunner`` thread calls one collector every ``interval_s`` and puts the samples
on the daemon's bounded queue; when the queue is full, samples are dropped and counted
(a sample is only worth something fresh).

    processes  (psutil)   process.*, db.connections, redis.connections   see .processes
    puma       (requests) puma.*                                        see .puma
    sidekiq    (redis)    sidekiq.*                                     see .sidekiq
    postgres   (psycopg)  pg.*                                          see .postgres
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, List, Tuple

from agent.clock import Clock

if TYPE_CHECKING:
    from agent.events import Metric

log = logging.getLogger("railwatch.collectors")


class CollectorRunner(threading.Thread):
    """Runs one collector on its interval until ``stop()``; never lets an error escape."""

    def __init__(self, collector: Any, interval_s: float, out: "queue.Queue[Metric]", clock: Clock) -> None:
        super().__init__(name=f"collector-{collector.name}", daemon=True)
        self.collector = collector
        self.interval_s = interval_s
        self.out = out
        self.clock = clock
        self.samples = 0
        self.errors = 0
        self.dropped = 0
        self.last_error = ""
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = self.clock.monotonic()
            self.run_once()
            self._stop_event.wait(max(self.interval_s - (self.clock.monotonic() - started), 0.05))
        close = getattr(self.collector, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a broken client must not stop shutdown
                pass

    def run_once(self) -> None:
        try:
            samples = self.collector.collect()
        except Exception as exc:  # noqa: BLE001 - a service being down is what we monitor, not a crash
            self.errors += 1
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            if message != self.last_error:  # say it once per distinct failure, not every interval
                log.warning("collector %s failed: %s", self.collector.name, message)
            self.last_error = message
            return
        if self.last_error:
            log.info("collector %s recovered", self.collector.name)
            self.last_error = ""
        for sample in samples:
            try:
                self.out.put_nowait(sample)
                self.samples += 1
            except queue.Full:
                self.dropped += 1

    def stop(self) -> None:
        self._stop_event.set()


def build_collectors(config: Any, clock: Clock, session: Any = None) -> List[Tuple[Any, float]]:
    """Collectors enabled in ``config`` (a CollectorsConfig), each with its interval.

    A collector whose optional package is missing is skipped with a warning.
    """
    out: List[Tuple[Any, float]] = []
    if config.psutil.enabled:
        from agent.sources.collectors.processes import ProcessCollector

        c = config.psutil
        out.append((ProcessCollector(c.puma_match, c.sidekiq_match, c.db_ports, c.redis_ports, clock), c.interval_s))
    if config.puma.enabled:
        import requests

        from agent.sources.collectors.puma import PumaCollector

        c = config.puma
        out.append((PumaCollector(c.url, c.token, session or requests.Session(), clock, c.timeout_s), c.interval_s))
    if config.sidekiq.enabled:
        try:
            import redis
        except ImportError:
            log.warning("collectors.sidekiq needs the redis package (pip install 'railwatch[redis]'); skipped")
        else:
            from agent.sources.collectors.sidekiq import SidekiqCollector

            c = config.sidekiq
            client = redis.Redis.from_url(c.redis_url, socket_timeout=c.timeout_s, socket_connect_timeout=c.timeout_s, decode_responses=True)
            out.append((SidekiqCollector(client, clock, c.namespace, c.max_queues), c.interval_s))
    if config.postgres.enabled:
        try:
            import psycopg
        except ImportError:
            log.warning("collectors.postgres needs the psycopg package (pip install 'railwatch[postgres]'); skipped")
        else:
            from agent.sources.collectors.postgres import PostgresCollector

            c = config.postgres

            def connect(dsn: str = c.dsn, timeout: float = c.timeout_s) -> Any:
                return psycopg.connect(dsn, connect_timeout=max(int(timeout), 1), autocommit=True, application_name="railwatch",
                                       options=f"-c statement_timeout={int(timeout * 1000)}")

            out.append((PostgresCollector(connect, clock, c.statements, c.top_statements), c.interval_s))
    return out
