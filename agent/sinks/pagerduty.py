"""PagerDuty Events API v2: trigger and resolve, deduplicated by fingerprint.

    POST https://events.pagerduty.com/v2/enqueue   -> 202 Accepted
    {"routing_key": …, "event_action": "trigger"|"resolve", "dedup_key": <fingerprint>,
     "payload": {"summary" (≤1024), "source", "severity", "timestamp", "component", "group",
                 "class", "custom_details"}, "links": [...], "client", "client_url"}

``dedup_key`` is per host: ``<fingerprint>@<host>`` (``dedup_scope = "host"``, the default),
so each agent's alert triggers and resolves on its own and one host resolving can never
end the alert of a host that still has the bug. The fingerprint is in
``custom_details.fingerprint`` (and ``payload.class``/``component``) for PagerDuty's alert
grouping to put a fleet's alerts for one bug in one incident (README, "Fleets").
``dedup_scope = "fleet"`` keeps the old shared key: only for a single host. Severity: critical ->
critical, warning -> warning, a test -> info. PagerDuty takes no attachments: the
bundle is linked when ``bundle_url`` is set, else its path on the host is in
``custom_details``. Payloads stay far below the 512 KB limit (evidence is capped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from agent.clock import Clock
from agent.incidents.model import IncidentUpdate
from agent.config_values import http_url
from agent.settings import setting
from agent.sinks.base import (
    DEFAULT_TIMEOUT, HTTP_CHECKS, HttpSettings, DeliveryResult, HttpSink, bundle_link, headline, recurrence_note, triage,
)
from agent.timeparse import to_iso

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "warning": "warning"}
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_EVIDENCE = 5
MAX_EVIDENCE_CHARS = 1000


def routing_key_problem(key: str) -> str:
    return "" if len(key) == 32 and key.isalnum() else "expected a 32-character integration key"


def optional_url(url: str) -> str:
    return http_url(url) if url else ""


@dataclass(frozen=True)
class PagerDutySettings(HttpSettings):
    routing_key: str = setting("", required=True, secret=True)  # the Events API v2 integration key
    url: str = setting(EVENTS_URL)
    source: str = setting("")  # "" = the host
    component: str = setting("")
    group: str = setting("")
    bundle_url: str = setting("")  # template: {id}, {fingerprint}, {host}
    client_url: str = setting("")
    dedup_scope: str = setting("host", choices=("host", "fleet"))  # "fleet": one alert shared by all hosts (single host only)

    CHECKS = dict(HTTP_CHECKS, routing_key=routing_key_problem, url=http_url, client_url=optional_url)


class PagerDutySink(HttpSink):
    kind = "pagerduty"

    @classmethod
    def from_settings(cls, name: str, s: PagerDutySettings, session: Any = None, clock: Optional[Clock] = None) -> "PagerDutySink":
        optional = {k: getattr(s, k) or None for k in ("source", "component", "group", "bundle_url", "client_url")}
        return cls(name, s.routing_key, url=s.url, dedup_scope=s.dedup_scope, **optional, **s.http(session, clock))

    def __init__(self, name: str, routing_key: str, url: str = EVENTS_URL, source: Optional[str] = None,
                 component: Optional[str] = None, group: Optional[str] = None, bundle_url: Optional[str] = None,
                 client_url: Optional[str] = None, dedup_scope: str = "host", session: Any = None, clock: Optional[Clock] = None,
                 timeout: float = DEFAULT_TIMEOUT, verify: Union[bool, str] = True) -> None:
        super().__init__(name, session=session, clock=clock, timeout=timeout, verify=verify)
        self.routing_key = routing_key
        self.secrets.append(routing_key)
        self.url = url
        self.source = source
        self.component = component
        self.group = group
        self.bundle_url = bundle_url
        self.client_url = client_url
        self.dedup_scope = dedup_scope

    def dedup_key(self, update: IncidentUpdate) -> str:
        """One alert per (bug, host): a host's resolve ends its own alert only."""
        inc = update.incident
        if self.dedup_scope == "fleet" or not inc.host:
            return inc.fingerprint[:MAX_DEDUP_KEY]
        host = inc.host[:MAX_DEDUP_KEY - len(inc.fingerprint) - 1]
        return f"{inc.fingerprint}@{host}"[:MAX_DEDUP_KEY]

    def event(self, update: IncidentUpdate) -> Dict[str, Any]:
        inc = update.incident
        dedup_key = self.dedup_key(update)
        if update.kind == "resolve":
            return {"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": dedup_key}
        t = triage(inc)
        details: Dict[str, Any] = {
            "incident_id": inc.id,
            "fingerprint": inc.fingerprint,
            "detector": inc.detector,
            "subject": inc.subject,
            "count": inc.count,
            "first_seen": to_iso(inc.first_seen),
            "last_seen": to_iso(inc.last_seen),
            "summary": t.get("summary", ""),
            "likely_cause": t.get("likely_cause", ""),
            "containment": list(t.get("containment", []))[:10],
            "evidence": _evidence(inc.finding),
            "reported_by": inc.host,
            "update": update.kind,
        }
        note = recurrence_note(inc)
        if note:
            details["recurrence"] = note
        link = bundle_link(inc, self.bundle_url)
        if inc.bundle_path and not link:
            details["bundle"] = f"{inc.host}:{inc.bundle_path}"
        event: Dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": _cut(headline(update), MAX_SUMMARY),
                "source": self.source or inc.host or "railwatch",
                "severity": "info" if inc.test else SEVERITY.get(inc.severity, "error"),
                "timestamp": to_iso(update.at),
                "component": self.component or inc.subject.get("endpoint") or inc.subject.get("job_class") or inc.detector,
                "group": self.group or "railwatch",
                "class": inc.detector,
                "custom_details": details,
            },
            "client": "railwatch",
        }
        links: List[Dict[str, str]] = []
        if link:
            links.append({"href": link, "text": "Diagnostic bundle"})
        if links:
            event["links"] = links
        if self.client_url:
            event["client_url"] = self.client_url
        return event

    def deliver(self, update: IncidentUpdate) -> DeliveryResult:
        # 202 accepted; 400 malformed (permanent); 429 rate-limited and 5xx retried by the outbox
        return self.post_json(self.url, self.event(update))

    def dry_run(self) -> DeliveryResult:
        return DeliveryResult.ok("configuration valid (Events API v2 has no dry-run endpoint; use test-incident)")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence(finding: Dict[str, Any]) -> List[str]:
    out = []
    for e in list(finding.get("evidence", []))[:MAX_EVIDENCE]:
        out.append(_cut(f"{e.get('path')}:{e.get('line')}  {e.get('text', '')}", MAX_EVIDENCE_CHARS))
    return out
