"""``railwatch run``: live logs and samples in, incidents out, until told to stop.

    Tailer.poll ──events──▶ Pipeline.feed_batch ──findings──▶ IncidentManager ──▶ store + outbox
    collector threads ──bounded queue──┘   flush(until) every limits.flush_interval_s      │
                                                                DeliveryThread ──▶ sinks ◀──┘

One thread owns the pipeline: it reads at most ``limits.read_budget_bytes`` per turn, so a
burst makes the tail fall behind (``railwatch_tail_lag_*``) instead of growing memory;
collector samples wait on a bounded queue and are dropped (and counted) when it is full.
Detectors are flushed on a wall-clock tick with ``until`` = the newest event time plus the
wall time since it arrived, minus the pipeline's reorder slack, so findings come out within
a second of the line and windows still close when the log goes quiet. Delivery runs in
its own thread, so a slow sink never holds up the tail.

Checkpoints (tail offsets and the running counts, in one store transaction) are written
every ``limits.checkpoint_interval_s``, after the lines' events were fed and the detectors
flushed: a SIGKILL re-reads at most that interval, quietly (see agent.sources.checkpoint).
SIGTERM / SIGINT: read what is there, flush, checkpoint, deliver for a few seconds, exit 0.
SIGHUP: reload the configuration; tail positions are kept, a bad file is refused and logged.

Store faults (disk full, corruption, the file deleted) never end the loop: the turn that
hits one logs it once, keeps the findings it could not store in memory, stops reading
and checkpointing, and retries with backoff (1 s doubling to 60 s); /healthz is degraded
meanwhile. So a checkpoint never moves past lines whose findings were not stored. A
corrupt store is moved aside (agent.incidents.store) and a deleted one is written back
from the open connection. Open detector episodes live in memory: after a SIGKILL the
errors they counted since the last checkpoint are re-read, but those counted before it
and not yet reported as a finding are lost (bounded by the detectors' episode windows).
"""
from __future__ import annotations

import json
import os
import logging
import queue
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from prometheus_client import CollectorRegistry

from agent.clock import Clock
from agent.config import Config
from agent.events import Event, Finding
from agent.fsutil import write_json_atomically
from agent.incidents.delivery import Deliverer
from agent.incidents.delivery_thread import CountingSink, DeliveryThread
from agent.incidents.lifecycle import IncidentManager
from agent.incidents.store import IncidentStore, StoreError
from agent.pipeline import REORDER_SLACK_S, Pipeline
from agent.privileges import root_warning
from agent.sdnotify import Notifier
from agent.selfmetrics import MetricsServer, SelfMetrics, agent_version
from agent.sources.collectors import CollectorRunner, build_collectors
from agent.sources.tail import Tailer, TailSpec

log = logging.getLogger("railwatch.daemon")

COUNTERS_KEY = "daemon:counters"
TICK_S = 1.0  # self-metrics, incident resolution, health bookkeeping
PRUNE_S = 3600.0  # retention: incident directories and records pruned this often (agent.incidents.prune)
DRAIN_S = 5.0  # delivery attempts on the way out
STORE_RETRY_S = (1.0, 60.0)  # first and longest wait before using a failing store again
#: turns woken by file events come at most this often: a busy app writes each log many times
#: a second (a logger flush per request), and a turn's fixed cost (a stat per log, the store
#: check, a wake-up of this thread) was most of the daemon's CPU at 2,000 lines/s. Adds at most
#: this much to detection latency (the held-record release, 0.5 s, already dominates it).
MIN_TURN_GAP_S = 0.1


class Daemon:
    def __init__(
        self, config: Config, clock: Optional[Clock] = None, environ: Optional[Dict[str, str]] = None,
        reload: Optional[Callable[[], Config]] = None, registry: Optional[CollectorRegistry] = None,
        counters_path: Optional[str] = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.environ = dict(environ or {})
        self._load_config = reload
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self.counters_path = counters_path
        self.stopping = False
        self.reload_wanted = False
        self.events_by_kind: Dict[str, int] = {}
        self.lines_before = 0  # read by earlier runs, from the last checkpoint
        self._pending: List[Event] = []
        self._samples: "queue.Queue[Event]" = queue.Queue(maxsize=config.limits.metric_queue)
        self._runners: List[CollectorRunner] = []
        self._stats: List[Any] = []
        self._detector_key: Any = None
        self.server: Optional[MetricsServer] = None
        self.delivery: Optional[DeliveryThread] = None
        self.notifier = Notifier(self.environ)  # systemd Type=notify; a no-op elsewhere
        self._unstored: List[Finding] = []  # findings the store has not taken yet (oldest first)
        self.store_problem: Optional[StoreError] = None
        self._store_wait = STORE_RETRY_S[0]
        self._store_retry_at = 0.0
        self._held = 0

    # ----------------------------------------------------------------- start
    def start(self) -> None:
        """Open the store, build everything, bind the metrics listener; raises on a setup error."""
        root_warning(log)
        c = self.config
        self.store = IncidentStore(c.state.dir, self.clock, recover=True)
        saved = self.store.get_checkpoint(COUNTERS_KEY) or {}
        self.lines_before = int(saved.get("lines", 0))
        self.events_by_kind = {str(k): int(v) for k, v in (saved.get("events") or {}).items()}
        self.pipeline = self._build_pipeline(None)
        self._build_incidents()
        self.tailer = Tailer(
            self._specs(c), self.store, self.clock, self._pending.append, max_line=c.limits.max_line,
            stall_after_s=c.limits.stall_after_s, use_watchdog=c.tail.watch,
        )
        self._start_collectors()
        self._start_server()
        now = self.clock.monotonic()
        self._hw, self._hw_at = self.pipeline.high_water, now
        self._last_turn = self._last_checkpoint = self._next_tick = now
        self._next_flush = now + c.limits.flush_interval_s
        log.info("following %d log(s) from %s; incidents to %s", len(self.tailer.logs), ", ".join(sorted(self.tailer.logs)) or "-",
                 ", ".join(self.sinks) or "-")

    def _specs(self, c: Config) -> List[TailSpec]:
        return [TailSpec(s.path, s.format or None, s.start or c.tail.start) for s in c.sources]

    def _build_pipeline(self, old: Optional[Pipeline]) -> Pipeline:
        from agent.appfacts import load_app_facts
        from detectors import build_detectors
        from detectors.base import AppFacts

        c = self.config
        facts = load_app_facts(c.app.root, self.environ) if c.app.root else AppFacts()
        key = (tuple(c.enabled_detectors), tuple(sorted(c.detectors.items())), facts)
        if old is not None and key == self._detector_key:
            return old  # unchanged: keep the detectors' windows
        self._detector_key = key
        for note in facts.notes:
            log.info("app: %s", note)
        pipeline = Pipeline(build_detectors(c.enabled_detectors, facts, dict(c.detectors)), on_error=self._detector_failed)
        if old is not None:
            pipeline.high_water = old.high_water
        return pipeline

    def _detector_failed(self, message: str) -> None:
        self.metrics.detector_errors.inc()
        log.error("%s", message)

    def _build_incidents(self) -> None:
        from agent.sinks import build_sinks

        c = self.config
        # each HTTP sink opens its own requests.Session: a daemon with only the directory sink
        # never imports requests (about 10 MB of its idle RSS)
        raw = build_sinks(c.sinks, c.state.dir, clock=self.clock)
        self.sinks = {name: CountingSink(sink, self.metrics, self.clock) for name, sink in raw.items()}
        from agent.appfacts import load_app_facts
        from agent.bundle import BundleBuilder
        from agent.config import effective
        from detectors.base import AppFacts

        facts = load_app_facts(c.app.root, self.environ) if c.app.root else AppFacts()
        # every incident gets its diagnostic bundle; the builder scrubs the config it copies in
        host = c.app.host or None
        bundler = BundleBuilder(c.state.dir, self.clock, facts=facts, agent_config=effective(c),
                                updates=self.store.updates_for, host=host)
        from agent.bundle.remote import make_bundle_store

        self.bundle_store = make_bundle_store(c.bundle_store)
        # the upload is queued first, so the pages after it find the link when it lands quickly
        queued = ([self.bundle_store.name] if self.bundle_store else []) + list(self.sinks)
        self.manager = IncidentManager(self.store, self.clock, queued, settings=c.incidents, bundler=bundler, host=host)
        from agent.incidents.verify_driver import FixVerification

        self.verification = FixVerification(self.manager, c.state.dir, c.app.root or "")  # fix verification on deploys
        self.delivery = DeliveryThread(Deliverer(self.store, self.sinks, self.clock, bundle_store=self.bundle_store,
                                                 **c.delivery.deliverer_args()), self.store, self.metrics, self.clock)
        if self.bundle_store is not None:  # a refused credential shows in /healthz at once, not at the first incident
            threading.Thread(target=self.bundle_store.check, name="bundle-store-check", daemon=True).start()
        self.delivery.start()

    def _start_collectors(self) -> None:
        for collector, interval in build_collectors(self.config.collectors, self.clock):
            runner = CollectorRunner(collector, interval, self._samples, self.clock)  # type: ignore[arg-type]
            runner.start()
            self._runners.append(runner)

    def _stop_collectors(self) -> None:
        for runner in self._runners:
            runner.stop()
        for runner in self._runners:
            runner.join(5.0)
        self._runners = []

    def _start_server(self) -> None:
        address = self.config.metrics.address
        if address is None:
            return
        server = MetricsServer(self.registry, self.health, *address, details=self.health_details,
                               post=lambda path, body: self.verification.http_post(path, body))
        host, port = server.start()  # OSError (address in use) is a setup error
        self.server = server
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)

    # ----------------------------------------------------------------- running
    def run(self) -> int:
        """Start, loop until SIGTERM/SIGINT, shut down cleanly; the exit status."""
        try:
            self.start()
        except (StoreError, OSError, ValueError) as exc:
            log.error("cannot start: %s", exc)
            self._close()
            return 2
        self._install_signals()
        self.notifier.ready(f"following {len(self.tailer.logs)} log(s)")
        try:
            while not self.stopping:
                self.notifier.watchdog(self.clock.monotonic())
                if self.reload_wanted:
                    self.reload_wanted = False
                    self.reload()
                busy = self.turn()
                if not busy and not self.stopping and not self.reload_wanted:
                    wait = min(self.config.tail.poll_interval_s, max(self._next_flush - self.clock.monotonic(), 0.0))
                    self.tailer.wait(wait)
                    self._coalesce()
        finally:
            self.shutdown()
        return 0

    def _coalesce(self) -> None:
        """Let writes that follow a wake-up gather for the rest of ``MIN_TURN_GAP_S`` since the last turn."""
        rest = self._last_turn + MIN_TURN_GAP_S - self.clock.monotonic()
        if rest > 0 and not self.stopping:
            time.sleep(min(rest, MIN_TURN_GAP_S))

    def turn(self) -> bool:
        """One loop turn; True when there is more to read right away. A store fault is caught here."""
        now = self.clock.monotonic()
        if self.store_problem is not None:
            if now < self._store_retry_at:
                self._last_turn = now
                return False
            try:
                self._recover_store(self.store_problem)
            except (StoreError, OSError) as exc:
                self._store_failed(exc)
                return False
        try:
            self.store.verify_file()
            busy = self._turn()
        except StoreError as exc:
            self._store_failed(exc)
            return False
        if self.store_problem is not None:
            log.warning("incident store working again (%d held finding(s) stored)", self._held)
            self.store_problem, self._store_wait = None, STORE_RETRY_S[0]
        return busy

    def _store_failed(self, exc: Exception) -> None:
        """Log a store fault once (not per event or turn) and schedule the retry."""
        err = exc if isinstance(exc, StoreError) else StoreError(str(exc))
        now = self.clock.monotonic()
        self._last_turn = now
        first = self.store_problem is None or self.store_problem.kind != err.kind
        if first:
            what = {"full": "disk full", "corrupt": "store damaged", "missing": "store file gone"}.get(err.kind, "error")
            log.error("incident store failing (%s): %s; holding %d finding(s), not reading or saving positions; "
                      "retrying with backoff", what, err, len(self._unstored))
            self._held = len(self._unstored)
        else:
            log.debug("incident store still failing: %s", err)
        self.store_problem = err
        self._store_retry_at = now + self._store_wait
        self._store_wait = min(self._store_wait * 2, STORE_RETRY_S[1])

    def _recover_store(self, problem: StoreError) -> None:
        if problem.kind == "missing":
            log.error("%s", self.store.restore_file())
        elif problem.kind == "corrupt":
            self.store.reopen()  # moves the damaged file aside (recover=True)

    def _turn(self) -> bool:
        c = self.config
        if self._unstored:
            self._store_findings()  # what a failed turn held back goes first
        _, caught_up = self.tailer.poll(c.limits.read_budget_bytes)
        findings = self._feed_pending()
        samples = self._drain_samples()
        if samples:
            findings.extend(self._feed(samples))
        now = self.clock.monotonic()
        self._last_turn = now
        if now >= self._next_flush:
            self._next_flush = now + c.limits.flush_interval_s
            findings.extend(self._flush())
        self._observe(findings)
        if now - self._last_checkpoint >= c.limits.checkpoint_interval_s:
            self.checkpoint()
        if now >= self._next_tick:
            self._next_tick = now + TICK_S
            self._observe_updates(self.manager.tick())
            self._observe_updates(self.verification.tick(self._event_now()))
            self._refresh_metrics()
        if now >= getattr(self, "_next_prune", 0.0):
            self._next_prune = now + PRUNE_S
            self._prune()
        return not caught_up or not self._samples.empty()

    def _prune(self) -> None:
        """Keep disk bounded (hourly): old incident directories and records, a vacuum now and then."""
        from agent.incidents.prune import prune

        c = self.config
        try:
            report = prune(self.store, os.path.join(c.state.dir, "incidents"), c.retention, self.clock.now())
            if report.removed_dirs or report.removed_incidents:
                log.info("retention: %s", report.summary())
            if self.clock.monotonic() >= getattr(self, "_next_vacuum", 0.0):
                self._next_vacuum = self.clock.monotonic() + c.retention.vacuum_interval_s
                self.store.vacuum()
        except Exception:  # noqa: BLE001 - pruning is housekeeping; it must never stop the agent
            log.exception("pruning failed")

    def _feed_pending(self) -> List[Finding]:
        events, self._pending[:] = list(self._pending), []
        return self._feed(events) if events else []

    def _feed(self, events: List[Event]) -> List[Finding]:
        counts = self.events_by_kind
        for e in events:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        findings = self.pipeline.feed_batch(events)
        verification = getattr(self, "verification", None)
        if verification is not None:  # fix verification watches the same events
            verification.feed(events)
        if self.pipeline.high_water != self._hw:
            self._hw, self._hw_at = self.pipeline.high_water, self.clock.monotonic()
        return findings

    def _drain_samples(self, limit: int = 10_000) -> List[Event]:
        out: List[Event] = []
        while len(out) < limit:
            try:
                out.append(self._samples.get_nowait())
            except queue.Empty:
                break
        return out

    def _event_now(self) -> Optional[float]:
        """Event time now: the newest event's time plus the wall time since it arrived (None before any)."""
        if self._hw is None:
            return None
        return self._hw + (self.clock.monotonic() - self._hw_at) - REORDER_SLACK_S

    def _flush(self, final: bool = False) -> List[Finding]:
        if final:
            return self.pipeline.flush(None)
        if self._hw is None:
            return []  # nothing has happened yet: nothing can be complete
        until = self._hw + (self.clock.monotonic() - self._hw_at) - REORDER_SLACK_S
        return self.pipeline.flush(until)

    def _observe(self, findings: List[Finding]) -> None:
        for f in findings:
            self.metrics.findings.labels(f.detector, f.severity).inc()
        self._unstored.extend(findings)
        self._store_findings()

    def _store_findings(self) -> None:
        """Hand held findings to the lifecycle one at a time (each is one transaction); on a
        store error the rest stay held, so none is lost and none is applied twice."""
        while self._unstored:
            updates = self.manager.observe(self._unstored[:1])
            del self._unstored[0]
            self._observe_updates(updates)

    def _observe_updates(self, updates: List[Any]) -> None:
        for u in updates:
            self.metrics.incident_updates.labels(u.incident.detector, u.kind).inc()
            log.info("incident %s %s: %s", u.incident.id, u.kind, u.incident.title)
        if updates and self.delivery is not None:
            self.delivery.wake()

    def checkpoint(self) -> None:
        """Flush the detectors, then save every tail position with the running counts, atomically."""
        self._observe(self._flush())
        if self._unstored:  # never save positions past lines whose findings are not stored
            return
        values = self.tailer.positions()
        counters = {"lines": self.lines_before + self.tailer.lines_read(), "events": dict(self.events_by_kind)}
        values[COUNTERS_KEY] = counters
        self.store.set_checkpoints(values)
        self._last_checkpoint = self.clock.monotonic()
        if self.counters_path:
            write_json_atomically(self.counters_path, counters)

    def _refresh_metrics(self) -> None:
        self._stats = self.tailer.stats()
        m = self.metrics
        m.sources(self._stats)
        for kind, n in self.events_by_kind.items():
            m.advance(m.events, (kind,), n)
        for r in self._runners:
            name = r.collector.name
            m.advance(m.collector_samples, (name,), r.samples)
            m.advance(m.collector_errors, (name,), r.errors)
            m.advance(m.collector_dropped, (name,), r.dropped)
        m.checkpoint_age.set(self.clock.monotonic() - self._last_checkpoint)
        m.detectors_disabled.set(len(getattr(getattr(self, "pipeline", None), "disabled", None) or {}))

    def health(self) -> Tuple[str, List[str]]:
        """("ok" | "degraded" | "failing", reasons). Only a main loop that stopped turning is
        failing (restart me); everything else is degraded: the agent runs, something needs a look."""
        c = self.config
        idle = self.clock.monotonic() - self._last_turn
        if idle > max(30.0, 40 * c.tail.poll_interval_s):
            return "failing", [f"main loop has not turned for {idle:.0f} s"]
        reasons: List[str] = []
        if self.store_problem is not None:
            reasons.append(f"store: {self.store_problem}")
        for s in self._stats:
            if s.stalled:
                reasons.append(f"{s.path}: {s.lag_bytes} bytes unread for over {c.limits.stall_after_s:.0f} s")
        tailer = getattr(self, "tailer", None)
        if tailer is not None:
            for path in tailer.missing_sources():
                reasons.append(f"{path}: missing (waiting for it to appear)")
            for path, what in sorted(tailer.refused_sources().items()):
                reasons.append(f"{path}: {what}, not a regular file: not read")
            if tailer.descriptors_short():
                reasons.append("out of file descriptors: some logs are not followed (raise LimitNOFILE)")
        disabled = getattr(getattr(self, "pipeline", None), "disabled", None) or {}
        for name in sorted(disabled):
            reasons.append(f"detector {name} disabled: {disabled[name]}")
        now = self.clock.monotonic()
        for name, sink in sorted(getattr(self, "sinks", {}).items()):
            since = getattr(sink, "failing_since", None)
            if since is not None and now - since > c.limits.sink_failing_after_s:
                reasons.append(f"sink {name}: failing for {now - since:.0f} s ({sink.last_error})")
        bundle_store = getattr(self, "bundle_store", None)
        if bundle_store is not None and bundle_store.problem:
            reasons.append(f"bundle store: {bundle_store.problem}")
        age = self.delivery.oldest_age if self.delivery is not None else 0.0
        if age > c.limits.outbox_stuck_after_s:
            reasons.append(f"outbox: an incident update has waited {age:.0f} s for delivery")
        return ("degraded" if reasons else "ok"), reasons

    def health_details(self) -> Dict[str, Any]:
        """What `railwatch status` shows beside the verdict; only values the daemon already holds
        (no store query from the HTTP thread)."""
        now = self.clock.monotonic()
        tailer = getattr(self, "tailer", None)
        missing = tailer.missing_sources() if tailer is not None else []
        sources = [{"path": s.path, "lag_bytes": s.lag_bytes, "lag_seconds": round(s.lag_seconds, 1),
                    "stalled": bool(s.stalled), "lines": s.lines} for s in self._stats]
        sources += [{"path": p, "missing": True} for p in sorted(missing)]
        disabled = getattr(getattr(self, "pipeline", None), "disabled", None) or {}
        sinks = {}
        for name, sink in sorted(getattr(self, "sinks", {}).items()):
            since = getattr(sink, "failing_since", None)
            sinks[name] = {"kind": getattr(sink, "kind", ""),
                           "failing_for_s": None if since is None else round(now - since, 1),
                           "last_error": getattr(sink, "last_error", "") or None}
        sample = self.registry.get_sample_value
        return {
            "version": agent_version(),
            "sources": sources,
            "detectors": {"enabled": [n for n in self.config.enabled_detectors if n not in disabled],
                          "disabled": {n: str(disabled[n]) for n in sorted(disabled)}},
            "open_incidents": int(sample("railwatch_open_incidents") or 0),
            "outbox": {"depth": int(sample("railwatch_outbox_depth") or 0),
                       "oldest_age_s": round(self.delivery.oldest_age if self.delivery is not None else 0.0, 1)},
            "sinks": sinks,
            "state_dir": self.config.state.dir,
        }

    # ----------------------------------------------------------------- signals, reload, stop
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.tailer.waker.event.set()

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.reload_wanted = True
        self.tailer.waker.event.set()

    def reload(self) -> None:
        """Apply a re-read configuration; keeps the tail positions and, if unchanged, the detectors."""
        if self._load_config is None:
            log.warning("SIGHUP: no configuration file to reload")
            return
        self.notifier.reloading()
        try:
            new = self._load_config()
        except ValueError as exc:  # ConfigError: every problem, one per line
            log.error("SIGHUP: configuration refused, keeping the running one:\n%s", exc)
            self.notifier.ready()
            return
        old, self.config = self.config, new
        if new.state.dir != old.state.dir:
            log.warning("SIGHUP: state.dir changes need a restart; still using %s", old.state.dir)
        self.checkpoint()
        self.pipeline = self._build_pipeline(self.pipeline)
        self.tailer.set_specs(self._specs(new))
        self.tailer.stall_after_s, self.tailer.ctx.max_line = new.limits.stall_after_s, new.limits.max_line
        self._stop_collectors()
        self._start_collectors()
        if self.delivery is not None:
            self.delivery.stop()
        self._build_incidents()
        if new.metrics != old.metrics:
            if self.server is not None:
                self.server.stop()
                self.server = None
            try:
                self._start_server()
            except OSError as exc:
                log.error("SIGHUP: metrics listener %s: %s", new.metrics.listen, exc)
        log.info("configuration reloaded: following %d log(s)", len(self.tailer.logs))
        self.notifier.ready(f"following {len(self.tailer.logs)} log(s)")

    def shutdown(self) -> None:
        log.info("stopping: draining and saving positions")
        self.notifier.stopping()
        self._stop_collectors()
        try:
            self.tailer.poll(self.config.limits.read_budget_bytes)
            findings = self._feed_pending() + self._feed(self._drain_samples())
            findings.extend(self._flush(final=True))
            self._observe(findings)
            self.checkpoint()
        except StoreError as exc:
            log.error("stopping with the incident store failing: %s; %d finding(s) not stored, positions not saved "
                      "(those lines are read again at the next start)", exc, len(self._unstored))
        except Exception:  # noqa: BLE001 - whatever happened, still try to deliver and close
            log.exception("error while draining")
        if self.delivery is not None:
            self.delivery.stop()
            self.delivery.drain(DRAIN_S)
        self._close()
        log.info("stopped")

    def _close(self) -> None:
        self._stop_collectors()
        if self.delivery is not None and self.delivery.is_alive():
            self.delivery.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        tailer = getattr(self, "tailer", None)
        if tailer is not None:
            tailer.close()
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


def counters_file_value(path: str) -> Dict[str, Any]:
    """The debug counters a daemon wrote with ``counters_path`` (tests, benchmarks)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


__all__ = ["COUNTERS_KEY", "Daemon", "counters_file_value"]
