"""Real HTTP servers on 127.0.0.1 that stand in for PagerDuty, Slack, webhooks and Alertmanager.

Each server checks every request against the target's documented schema (see
shared/reference/agent-anchors.md §3) and answers as the target does: PagerDuty 202 /
400 "invalid event", Slack 200 "ok" / 400 "invalid_blocks", Alertmanager 200 / 400.
Schema violations are kept in ``target.violations`` so tests can assert there are none.

Loaded by tests/conftest.py for the sink and incident tests (not a test module).
"""
from __future__ import annotations

import email.parser
import email.policy
import io
import json
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Request:
    def __init__(self, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.path, self.headers, self.body = path, headers, body
        self.json: Any = None
        self.parts: Dict[str, bytes] = {}


# ---------------------------------------------------------------------- schemas


def check_pagerduty(req: Request) -> List[str]:
    """PagerDuty Events API v2 (developer-docs events-API-v2)."""
    errs: List[str] = []
    if len(req.body) > 512 * 1024:
        errs.append("payload larger than 512 KB")
    if not req.headers.get("content-type", "").startswith("application/json"):
        errs.append("Content-Type is not application/json")
    ev = req.json
    if not isinstance(ev, dict):
        return errs + ["body is not a JSON object"]
    allowed = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
    errs += [f"unknown field {k}" for k in ev if k not in allowed]
    if not isinstance(ev.get("routing_key"), str) or len(ev["routing_key"]) != 32:
        errs.append("routing_key must be a 32-character string")
    action = ev.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errs.append("event_action must be trigger, acknowledge or resolve")
    key = ev.get("dedup_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        errs.append("dedup_key must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not key:
        errs.append("dedup_key is required for acknowledge and resolve")
    if action == "trigger":
        p = ev.get("payload")
        if not isinstance(p, dict):
            return errs + ["payload is required for trigger"]
        if not isinstance(p.get("summary"), str) or not 0 < len(p["summary"]) <= 1024:
            errs.append("payload.summary must be 1..1024 characters")
        if not isinstance(p.get("source"), str) or not p["source"]:
            errs.append("payload.source is required")
        if p.get("severity") not in ("critical", "error", "warning", "info"):
            errs.append("payload.severity must be critical, error, warning or info")
        if "timestamp" in p and not (isinstance(p["timestamp"], str) and RFC3339.match(p["timestamp"])):
            errs.append("payload.timestamp must be ISO 8601")
        for k in ("component", "group", "class"):
            if k in p and not isinstance(p[k], str):
                errs.append(f"payload.{k} must be a string")
        if "custom_details" in p and not isinstance(p["custom_details"], dict):
            errs.append("payload.custom_details must be an object")
        errs += [f"payload: unknown field {k}" for k in p if k not in
                 ("summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details")]
    for link in ev.get("links", []) or []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errs.append("links[] need an href")
    for image in ev.get("images", []) or []:
        if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
            errs.append("images[].src must be https")
    return errs


def check_slack(req: Request) -> List[str]:
    """Slack incoming webhook with Block Kit (api.slack.com limits)."""
    msg = req.json
    if not isinstance(msg, dict):
        return ["body is not a JSON object"]
    errs: List[str] = []
    if not isinstance(msg.get("text"), str) or not msg["text"]:
        errs.append("text (the notification fallback) must be a non-empty string")
    blocks = msg.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return errs + ["blocks must be a list of at most 50"]
    for i, b in enumerate(blocks):
        kind = b.get("type")
        if kind == "header":
            t = b.get("text", {})
            if t.get("type") != "plain_text" or not 0 < len(t.get("text", "")) <= 150:
                errs.append(f"blocks[{i}]: header text must be plain_text of 1..150 characters")
        elif kind == "section":
            t = b.get("text", {})
            if t.get("type") not in ("mrkdwn", "plain_text") or not 0 < len(t.get("text", "")) <= 3000:
                errs.append(f"blocks[{i}]: section text must be 1..3000 characters")
        elif kind == "context":
            els = b.get("elements", [])
            if not isinstance(els, list) or not 0 < len(els) <= 10:
                errs.append(f"blocks[{i}]: context needs 1..10 elements")
            for e in els:
                if e.get("type") not in ("mrkdwn", "plain_text", "image") or (e.get("type") != "image" and not e.get("text")):
                    errs.append(f"blocks[{i}]: bad context element")
        elif kind not in ("divider", "actions", "image"):
            errs.append(f"blocks[{i}]: unknown block type {kind!r}")
    return errs


def check_alertmanager(req: Request) -> List[str]:
    """Alertmanager API v2 postableAlerts (api/v2/openapi.yaml)."""
    if req.path != "/api/v2/alerts":
        return [f"POST to {req.path}, not /api/v2/alerts"]
    alerts = req.json
    if not isinstance(alerts, list) or not alerts:
        return ["body must be a non-empty JSON array"]
    errs: List[str] = []
    for i, a in enumerate(alerts):
        labels = a.get("labels")
        if not isinstance(labels, dict) or "alertname" not in labels:
            errs.append(f"[{i}] labels with alertname are required")
            continue
        for k, v in labels.items():
            if not LABEL_NAME.match(k) or not isinstance(v, str):
                errs.append(f"[{i}] bad label {k!r}")
        for k, v in (a.get("annotations") or {}).items():
            if not isinstance(v, str):
                errs.append(f"[{i}] annotation {k} must be a string")
        for k in ("startsAt", "endsAt"):
            if k in a and not (isinstance(a[k], str) and RFC3339.match(a[k])):
                errs.append(f"[{i}] {k} must be RFC 3339")
        errs += [f"[{i}] unknown field {k}" for k in a if k not in ("labels", "annotations", "startsAt", "endsAt", "generatorURL")]
    return errs


def make_webhook_check(secret: Optional[str]) -> Callable[[Request], List[str]]:
    from agent.incidents.model import UPDATE_KINDS
    from agent.sinks.webhook import verify_signature

    def check(req: Request) -> List[str]:
        errs: List[str] = []
        if secret is not None and not verify_signature(secret, req.body, req.headers.get("x-railwatch-signature", "")):
            errs.append("bad or missing X-Railwatch-Signature")
        doc = req.json
        if not isinstance(doc, dict):
            return errs + ["payload is not a JSON object"]
        if doc.get("schema") != "railwatch.incident/v1" or doc.get("kind") not in UPDATE_KINDS:
            errs.append("schema/kind missing")
        inc = doc.get("incident") or {}
        for k in ("id", "fingerprint", "detector", "severity", "title", "status"):
            if not inc.get(k):
                errs.append(f"incident.{k} missing")
        if req.headers.get("x-railwatch-event") != doc.get("kind"):
            errs.append("X-Railwatch-Event does not match kind")
        if "bundle" in req.parts:
            try:
                with tarfile.open(fileobj=io.BytesIO(req.parts["bundle"]), mode="r:gz") as tar:
                    if not any(n.endswith("/manifest.json") for n in tar.getnames()):
                        errs.append("attached bundle has no manifest.json")
            except (tarfile.TarError, OSError, EOFError) as exc:
                errs.append(f"attached bundle is not a tar.gz: {exc}")
        return errs

    return check


# ---------------------------------------------------------------------- the server

ANSWERS = {
    "pagerduty": (202, lambda r: json.dumps({"status": "success", "message": "Event processed",
                                              "dedup_key": (r.json or {}).get("dedup_key", "")}).encode()),
    "slack": (200, lambda r: b"ok"),
    "webhook": (200, lambda r: b'{"ok":true}'),
    "alertmanager": (200, lambda r: b""),
}


class Target:
    """A real HTTP server on loopback that validates and records what it receives."""

    def __init__(self, kind: str, check: Callable[[Request], List[str]]) -> None:
        self.kind, self.check = kind, check
        self.received: List[Request] = []
        self.violations: List[str] = []
        self.forced: Optional[Tuple[int, Dict[str, str]]] = None  # answer this status instead (e.g. 503, 429)
        self.port = 0
        self._server: Optional[ThreadingHTTPServer] = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Target":
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, answer = target.handle(req)
                self.send_response(status)
                for k, v in (target.forced[1] if target.forced and status == target.forced[0] else {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, req: Request) -> Tuple[int, bytes]:
        ctype = req.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/form-data"):
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
                for part in msg.iter_parts():
                    req.parts[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True)
                req.json = json.loads(req.parts.get("payload", b"null"))
            else:
                req.json = json.loads(req.body or b"null")
        except ValueError as exc:
            req.json = None
            errs = [f"body is not JSON: {exc}"]
        else:
            errs = self.check(req)
        with self._lock:
            if self.forced is not None:
                return self.forced[0], b"unavailable"
            self.received.append(req)
            self.violations += errs
        if errs:
            return 400, json.dumps({"status": "invalid event", "errors": errs}).encode()
        status, answer = ANSWERS[self.kind]
        return status, answer(req)


def start_target(kind: str, secret: Optional[str] = None) -> Target:
    checks = {"pagerduty": check_pagerduty, "slack": check_slack, "alertmanager": check_alertmanager}
    check = checks[kind] if kind in checks else make_webhook_check(secret)
    return Target(kind, check).start()


def gunzip_tar(data: bytes) -> Dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]



def make_finding(detector: str = "pool_exhaustion", subject: Optional[Dict[str, str]] = None, severity: str = "warning",
                 first_seen: float = 1_764_151_200.0, count: int = 3, evidence: Optional[List[Any]] = None,
                 title: Optional[str] = None) -> Any:
    """A Finding as a detector would report it (fields as in agent/events.py)."""
    from agent.events import Evidence, Finding, Triage

    subject = subject if subject is not None else {"pool": "primary"}
    return Finding(
        detector=detector, severity=severity, title=title or f"{detector} on {', '.join(subject.values())}",
        subject=subject, first_seen=first_seen, last_seen=first_seen + 60, count=count,
        evidence=evidence if evidence is not None else [Evidence(
            path="log/production.log", line=42,
            text="ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 5.000 seconds "
                 "(waited 5.001 seconds); all pooled connections were in use)")],
        triage=Triage(summary="Requests waited 5 s for a database connection and failed.",
                      likely_cause="More Puma threads than database connections in the pool.",
                      containment=["Restart the web workers", "Lower RAILS_MAX_THREADS to the pool size"],
                      prevention=["Set pool >= Puma threads per process"]),
        details={"waited_s": 5.001},
    )


def make_update(state_dir: str, finding: Any = None, host: str = "web-1", clock: Any = None) -> Any:
    """The 'open' IncidentUpdate a real IncidentManager makes for ``finding``."""
    from agent.incidents import IncidentManager, IncidentStore
    from agent.testing import FakeClock

    clock = clock or FakeClock()
    store = IncidentStore(state_dir, clock)
    try:
        (update,) = IncidentManager(store, clock, [], host=host).observe([finding or make_finding()])
        return update
    finally:
        store.close()
