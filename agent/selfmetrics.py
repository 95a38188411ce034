"""The agent's own health: Prometheus metrics and ``/healthz`` on one loopback listener.

Nothing is registered at import time: ``SelfMetrics(registry)`` creates every metric on
the ``CollectorRegistry`` it is given (tests pass a fresh one). Metrics:

    railwatch_lines_read_total{source}          log lines read (a path)
    railwatch_lines_unparsed_total{source}      lines no parser could use
    railwatch_lines_truncated_total{source}     lines longer than limits.max_line, cut
    railwatch_events_total{kind}                events into the detectors (request, sql, metric…)
    railwatch_findings_total{detector,severity} findings out of the detectors
    railwatch_incident_updates_total{detector,kind}  open, escalate, resolve, recur, reopen
    railwatch_open_incidents                    incidents open now
    railwatch_sink_deliveries_total{sink}       updates a sink accepted
    railwatch_sink_failures_total{sink,kind}    kind: retry (will try again) | permanent (gave up)
    railwatch_outbox_depth                      updates not yet delivered
    railwatch_outbox_oldest_age_seconds         age of the oldest of them
    railwatch_tail_lag_bytes{source}            written but not yet read
    railwatch_tail_lag_seconds{source}          how long the source has been behind (0 = caught up)
    railwatch_tailed_files{source}              open files (current + rotated ones being finished)
    railwatch_checkpoint_age_seconds            since tail offsets were last saved
    railwatch_collector_samples_total{collector}, railwatch_collector_errors_total{collector},
    railwatch_collector_dropped_total{collector}  samples dropped on a full queue
    railwatch_detector_errors_total             detectors disabled after raising
    railwatch_detectors_disabled                detectors disabled now
    railwatch_build_info{version,python}        1; the agent's version and Python
    process_*, python_info                      the client library's process and platform collectors

The exposition is the client library's own: OpenMetrics when the scraper asks for it
(Prometheus does), gzip when it accepts it, and no ``*_created`` series (they would double
every counter for a value nobody graphs).

``/healthz`` answers ``{"status": "ok" | "degraded" | "failing", "reasons": [...]}`` as
decided by the daemon's callable, plus what ``details()`` adds (sources with lag, detectors,
open incidents, outbox, sinks with their last error: what ``railwatch status`` shows). HTTP 200 for ok and degraded, 503 only for failing: a
liveness probe (systemd watchdog, Kubernetes) restarts on 503, and restarting does not fix
a full disk or a sink that is down, so those are degraded (read the reasons, alert on them).
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple

import gzip
import platform

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted

# before any metric exists: no *_created series (prometheus_client >= 0.17)
prometheus_client.disable_created_metrics()

log = logging.getLogger("railwatch.metrics")

Health = Callable[[], Tuple[str, List[str]]]  # (ok | degraded | failing, reasons)


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: Tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def gauge(name: str, doc: str, labels: Tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        self.lines_read = counter("railwatch_lines_read", "Log lines read.", ("source",))
        self.lines_unparsed = counter("railwatch_lines_unparsed", "Log lines no parser could use.", ("source",))
        self.lines_truncated = counter("railwatch_lines_truncated", "Log lines cut at limits.max_line.", ("source",))
        self.events = counter("railwatch_events", "Events handed to the detectors.", ("kind",))
        self.findings = counter("railwatch_findings", "Findings reported by the detectors.", ("detector", "severity"))
        self.incident_updates = counter("railwatch_incident_updates", "Incident changes queued for the sinks.", ("detector", "kind"))
        self.open_incidents = gauge("railwatch_open_incidents", "Incidents open now.")
        self.sink_deliveries = counter("railwatch_sink_deliveries", "Updates a sink accepted.", ("sink",))
        self.sink_failures = counter("railwatch_sink_failures", "Failed deliveries (retry: will try again; permanent: gave up).", ("sink", "kind"))
        self.outbox_depth = gauge("railwatch_outbox_depth", "Incident updates not yet delivered.")
        self.outbox_oldest = gauge("railwatch_outbox_oldest_age_seconds", "Age of the oldest undelivered update.")
        self.tail_lag_bytes = gauge("railwatch_tail_lag_bytes", "Bytes written to a log and not yet read.", ("source",))
        self.tail_lag_seconds = gauge("railwatch_tail_lag_seconds", "How long a log has been behind (0 when caught up).", ("source",))
        self.tailed_files = gauge("railwatch_tailed_files", "Open files of a log (current and rotated ones being finished).", ("source",))
        self.checkpoint_age = gauge("railwatch_checkpoint_age_seconds", "Seconds since tail offsets were last saved.")
        self.collector_samples = counter("railwatch_collector_samples", "Metric samples collected.", ("collector",))
        self.collector_errors = counter("railwatch_collector_errors", "Failed collection attempts.", ("collector",))
        self.collector_dropped = counter("railwatch_collector_dropped", "Samples dropped on a full queue.", ("collector",))
        self.detector_errors = counter("railwatch_detector_errors", "Detectors disabled after raising.")
        self.detectors_disabled = gauge("railwatch_detectors_disabled", "Detectors disabled now (after raising).")
        self.build_info = gauge("railwatch_build_info", "railwatch's version and Python; always 1.", ("version", "python"))
        self.build_info.labels(agent_version(), platform.python_version()).set(1)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._last: Dict[Tuple[int, Tuple[str, ...]], float] = {}
        self._sources: Dict[str, None] = {}

    def advance(self, counter: Counter, labels: Tuple[str, ...], total: float) -> None:
        """Move a counter to a cumulative ``total`` (counts kept elsewhere, e.g. by the tailer)."""
        key = (id(counter), labels)
        delta = total - self._last.get(key, 0.0)
        if delta > 0:
            (counter.labels(*labels) if labels else counter).inc(delta)
        self._last[key] = max(total, self._last.get(key, 0.0))

    def sources(self, stats: List) -> None:  # type: ignore[type-arg]
        """Per-source series from the tailer's ``SourceStats``; series of dropped sources go away."""
        seen = set()
        for s in stats:
            seen.add(s.path)
            self.advance(self.lines_read, (s.path,), s.lines)
            self.advance(self.lines_unparsed, (s.path,), s.unparsed)
            self.advance(self.lines_truncated, (s.path,), s.cut_lines)
            self.tail_lag_bytes.labels(s.path).set(s.lag_bytes)
            self.tail_lag_seconds.labels(s.path).set(s.lag_seconds)
            self.tailed_files.labels(s.path).set(s.files)
        for path in [p for p in self._sources if p not in seen]:
            for gauge in (self.tail_lag_bytes, self.tail_lag_seconds, self.tailed_files):
                try:
                    gauge.remove(path)
                except KeyError:
                    pass
        self._sources = dict.fromkeys(seen)


class MetricsServer:
    """``/metrics`` and ``/healthz`` on one HTTP listener, served from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str = "127.0.0.1", port: int = 19394,
                 details: Optional[Callable[[], Dict[str, object]]] = None,
                 post: Optional[Callable[[str, bytes], Tuple[int, Dict[str, object]]]] = None) -> None:
        self.registry = registry
        self.post = post  # POST handler (path, body) -> (status, JSON doc): the daemon's /deploy
        self.health = health
        self.details = details
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.host, self.port = host, port

    def start(self) -> Tuple[str, int]:
        """Bind and serve; raises OSError when the address is taken."""
        registry, health, details, post = self.registry, self.health, self.details, self.post

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(registry)
                    gzipped = gzip_accepted(self.headers.get("Accept-Encoding", ""))
                    self._send(200, gzip.compress(body) if gzipped else body, content_type, gzipped)
                elif path == "/healthz":
                    try:
                        status, reasons = health()
                    except Exception as exc:  # noqa: BLE001 - a broken check is itself unhealthy
                        status, reasons = "failing", [f"health check failed: {type(exc).__name__}"]
                    doc: Dict[str, object] = {"status": status, "reasons": reasons}
                    if details is not None:
                        try:
                            doc.update(details())
                        except Exception as exc:  # noqa: BLE001 - the verdict still answers
                            doc["details_error"] = type(exc).__name__
                    body = json.dumps(doc).encode()
                    self._send(503 if status == "failing" else 200, body, "application/json")
                else:
                    self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                try:
                    length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                except ValueError:
                    length = 0
                body = self.rfile.read(length) if length > 0 else b""
                if post is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                status, doc = post(self.path.split("?", 1)[0], body)
                self._send(status, json.dumps(doc).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str, gzipped: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("http %s", fmt % args)

        server_type = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        try:
            server = server_type((self.host, self.port), Handler)
        except OSError as exc:
            raise ListenError(self.host, self.port, exc) from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        self.host, self.port = server.server_address[0], server.server_address[1]
        return self.host, self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def agent_version() -> str:
    from agent import __version__

    return __version__


class ListenError(OSError):
    """The metrics address cannot be bound; says which address and what setting moves it."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        what = "is in use" if cause.errno == errno.EADDRINUSE else f"cannot be bound ({cause.strerror or cause})"
        super().__init__(cause.errno, f"{shown} {what}; set [metrics] listen or --metrics-listen (\"off\" disables it)")

    def __str__(self) -> str:
        return str(self.strerror)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
