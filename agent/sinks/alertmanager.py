"""Prometheus Alertmanager API v2: one alert per incident, resolved with ``endsAt``.

    POST <url>/api/v2/alerts   [{"labels": {...}, "annotations": {...}, "startsAt", "endsAt", "generatorURL"}]

Labels identify an alert: what identifies the *bug* (``alertname`` = ``railwatch_<detector>``,
``detector``, ``severity``, ``fingerprint`` and the subject, label names sanitised to
``[a-zA-Z_][a-zA-Z0-9_]*``) plus the reporting ``host``. Each agent's alert therefore lives
and resolves on its own: when one host's incident resolves, its alert ends while the other
hosts' alerts for the same bug keep firing (without the host label one host's resolve would
end everybody's alert until the next refresh). The fleet's dedup is Alertmanager's grouping:
route with ``group_by: [alertname, fingerprint]`` and a bug seen on many hosts is one group,
one notification, listing the hosts affected.

Alertmanager forgets an alert at ``endsAt``: a firing alert is posted with ``endsAt`` =
now + ``expire_after`` and re-posted every ``refresh_interval`` while open (the
deliverer does this). On escalation the alert with the old severity label is ended in
the same request. Send to every Alertmanager of an HA cluster (``urls``), never through
a load balancer; the update is accepted when all of them took it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from agent.clock import Clock
from agent.incidents.model import IncidentUpdate
from agent.config_values import http_url
from agent.settings import setting
from agent.sinks.base import (
    DEFAULT_TIMEOUT, HTTP_CHECKS, RETRY, DeliveryResult, HttpSettings, HttpSink, bundle_link, recurrence_note, triage,
)
from agent.timeparse import to_iso

RESERVED = ("alertname", "detector", "severity", "fingerprint", "host")
MAX_LABEL_VALUE = 512
MAX_ANNOTATION = 4000


def label_name(key: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    if not name or name[0].isdigit():
        name = "_" + name
    if name.startswith("__"):  # reserved for Alertmanager's internal use
        name = "subject" + name
    return "subject_" + name if name in RESERVED else name


def labels_for(update: IncidentUpdate, severity: Optional[str] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    inc = update.incident
    labels = {label_name(k): str(v)[:MAX_LABEL_VALUE] for k, v in sorted(inc.subject.items())}
    labels.update(extra or {})
    labels.update({
        "alertname": "railwatch_" + re.sub(r"[^a-zA-Z0-9_]", "_", inc.detector),
        "detector": inc.detector,
        "severity": severity or inc.severity,
        "fingerprint": inc.fingerprint,
    })
    if inc.host:
        labels["host"] = inc.host
    return labels


def _urls_problem(urls: Tuple[str, ...]) -> str:
    return "" if all(u.startswith(("http://", "https://")) for u in urls) else "expected http:// or https:// URLs"


@dataclass(frozen=True)
class AlertmanagerSettings(HttpSettings):
    url: str = setting("", secret=True)  # one Alertmanager…
    urls: Tuple[str, ...] = setting((), secret=True)  # …or every one of an HA cluster (never a load balancer)
    runbook_url: str = setting("")  # template: {detector}, {fingerprint}
    generator_url: str = setting("")
    bundle_url: str = setting("")  # template: {id}, {fingerprint}, {host}
    labels: Mapping[str, str] = setting({})
    headers: Mapping[str, str] = setting({}, secret=True)
    expire_after_s: float = setting(900.0, min=60.0, was=("expire_after",))  # an alert lives this long without a refresh
    refresh_interval_s: float = setting(60.0, min=5.0, was=("refresh_interval",))

    CHECKS = dict(HTTP_CHECKS, url=lambda u: http_url(u) if u else "", urls=_urls_problem)

    def problems(self) -> List[Tuple[str, str]]:
        """(key, problem) for rules over several options."""
        out = []
        if not self.url and not self.urls:
            out.append(("url", "required (or urls)"))
        if self.refresh_interval_s >= self.expire_after_s:
            out.append(("refresh_interval_s", "must be shorter than expire_after_s"))
        return out

    def all_urls(self) -> List[str]:
        return ([self.url] if self.url else []) + list(self.urls)


class AlertmanagerSink(HttpSink):
    kind = "alertmanager"

    @classmethod
    def from_settings(cls, name: str, s: AlertmanagerSettings, session: Any = None,
                      clock: Optional[Clock] = None) -> "AlertmanagerSink":
        optional = {k: getattr(s, k) or None for k in ("runbook_url", "generator_url", "bundle_url")}
        return cls(name, s.all_urls(), labels=dict(s.labels), headers=dict(s.headers), expire_after=s.expire_after_s,
                   refresh_interval=s.refresh_interval_s, **optional, **s.http(session, clock))

    def __init__(self, name: str, urls: Sequence[str], runbook_url: Optional[str] = None, generator_url: Optional[str] = None,
                 bundle_url: Optional[str] = None, labels: Optional[Dict[str, str]] = None, expire_after: float = 900.0,
                 refresh_interval: float = 60.0, headers: Optional[Dict[str, str]] = None, session: Any = None,
                 clock: Optional[Clock] = None, timeout: float = DEFAULT_TIMEOUT, verify: Union[bool, str] = True) -> None:
        super().__init__(name, session=session, clock=clock, timeout=timeout, verify=verify)
        self.urls = [u.rstrip("/") for u in urls]
        self.runbook_url = runbook_url
        self.generator_url = generator_url
        self.bundle_url = bundle_url
        self.extra_labels = {label_name(k): v for k, v in (labels or {}).items()}
        self.expire_after = expire_after
        self.refresh_interval = refresh_interval
        self.headers = dict(headers or {})
        self.secrets += list(self.headers.values())

    def alerts(self, update: IncidentUpdate) -> List[Dict[str, Any]]:
        inc = update.incident
        now = self.clock.now()
        t = triage(inc)
        description = "\n".join(x for x in (
            t.get("summary", ""),
            ("Likely cause: " + t["likely_cause"]) if t.get("likely_cause") else "",
            "Contain now: " + "; ".join(t.get("containment", [])) if t.get("containment") else "",
            recurrence_note(inc),
        ) if x)
        annotations = {
            "summary": inc.title[:MAX_ANNOTATION],
            "description": description[:MAX_ANNOTATION],
            "host": inc.host,
            "incident_id": inc.id,
            "count": str(inc.count),
            "first_seen": to_iso(inc.first_seen) or "",
        }
        if self.runbook_url:
            annotations["runbook_url"] = self.runbook_url.format(detector=inc.detector, fingerprint=inc.fingerprint)
        link = bundle_link(inc, self.bundle_url)
        if link:
            annotations["bundle_url"] = link
        elif inc.bundle_path:
            annotations["bundle"] = f"{inc.host}:{inc.bundle_path}"
        ends = inc.resolved_at if update.kind == "resolve" and inc.resolved_at else now + self.expire_after
        alert: Dict[str, Any] = {
            "labels": labels_for(update, extra=self.extra_labels),
            "annotations": annotations,
            "startsAt": to_iso(min(inc.first_seen, inc.opened_at)),
            "endsAt": to_iso(ends),
        }
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        out = [alert]
        if update.kind == "escalate" and update.previous_severity and update.previous_severity != inc.severity:
            # the severity label changed, so this is a new alert: end the one with the old label
            old = dict(alert, labels=labels_for(update, update.previous_severity, self.extra_labels), endsAt=to_iso(now))
            out.insert(0, old)
        return out

    def deliver(self, update: IncidentUpdate) -> DeliveryResult:
        body = self.alerts(update)
        results = [self.post_json(url + "/api/v2/alerts", body, self.headers) for url in self.urls]
        failed = [r for r in results if not r.accepted]
        if not failed:
            return DeliveryResult.ok(results[0].detail if results else "")
        worst = next((r for r in failed if r.status == RETRY), failed[0])
        accepted = len(results) - len(failed)
        prefix = f"{accepted}/{len(results)} Alertmanagers accepted; " if len(results) > 1 else ""
        return DeliveryResult(worst.status, prefix + worst.detail, worst.retry_after)

    def dry_run(self) -> DeliveryResult:
        import requests

        for url in self.urls:
            try:
                r = self.session.get(url + "/-/healthy", timeout=self.timeout, verify=self.verify, headers=self.headers)
            except requests.exceptions.RequestException as exc:
                return DeliveryResult.retry(f"Alertmanager not reachable ({type(exc).__name__})")
            if r.status_code != 200:
                return DeliveryResult.retry(f"Alertmanager /-/healthy answered HTTP {r.status_code}")
        return DeliveryResult.ok(f"{len(self.urls)} Alertmanager(s) healthy")
