"""The Sink interface, its result type, option checking and the one HTTP POST every sink uses.

Each sink module declares its options as a frozen settings dataclass (``setting()``
fields, secrets marked ``secret=True``), validated by the one config validator.

A sink turns an ``IncidentUpdate`` into whatever its target understands and answers
with a ``DeliveryResult``: accepted, retryable (the outbox tries again later, with
backoff) or permanent (the target refused the payload; retrying cannot help).
``dry_run()`` checks the configuration (and, where the target has a harmless
endpoint, reachability) without notifying anyone; ``railwatch doctor`` calls it.

Errors never contain a secret: option errors never echo a secret's value, and
delivery errors name the failure class and a scrubbed, shortened response body,
never the URL (a Slack webhook URL is itself the secret).
"""
from __future__ import annotations

import datetime
import email.utils
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Protocol, Union

from agent.clock import Clock
from agent.incidents.model import Incident, IncidentUpdate
from agent.scrub import scrub
from agent.settings import setting

ACCEPTED, RETRY, PERMANENT = "accepted", "retry", "permanent"
DEFAULT_TIMEOUT = 10.0
USER_AGENT = "railwatch"


@dataclass
class DeliveryResult:
    status: str  # ACCEPTED | RETRY | PERMANENT
    detail: str = ""
    retry_after: Optional[float] = None

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED

    @classmethod
    def ok(cls, detail: str = "") -> "DeliveryResult":
        return cls(ACCEPTED, detail)

    @classmethod
    def retry(cls, detail: str, retry_after: Optional[float] = None) -> "DeliveryResult":
        return cls(RETRY, detail, retry_after)

    @classmethod
    def permanent(cls, detail: str) -> "DeliveryResult":
        return cls(PERMANENT, detail)


class Sink(Protocol):
    """What the deliverer needs from a sink."""

    name: str
    kind: str
    refresh_interval: Optional[float]  # re-send open incidents this often (Alertmanager), else None

    def deliver(self, update: IncidentUpdate) -> DeliveryResult: ...

    def dry_run(self) -> DeliveryResult: ...


def ca_file_problem(path: str) -> str:
    return "" if not path or os.path.isfile(path) else "no such file"


@dataclass(frozen=True)
class HttpSettings:
    """Options every sink that talks HTTP takes. TLS verification cannot be turned off."""

    timeout_s: float = setting(DEFAULT_TIMEOUT, min=0.1, max=300.0, was=("timeout",))  # per request
    ca_file: str = setting("")  # extra trust roots (a private CA); "" = the system's

    def http(self, session: Any, clock: Optional[Clock]) -> Dict[str, Any]:
        """The HttpSink keyword arguments these options give."""
        return {"session": session, "clock": clock, "timeout": self.timeout_s, "verify": self.ca_file or True}


HTTP_CHECKS = {"ca_file": ca_file_problem}


class HttpSink:
    """Shared plumbing for sinks that POST to an HTTP endpoint."""

    kind = "http"
    refresh_interval: Optional[float] = None

    def __init__(self, name: str, session: Any = None, clock: Optional[Clock] = None, timeout: float = DEFAULT_TIMEOUT,
                 verify: Union[bool, str] = True) -> None:
        import requests

        self.name = name
        self.session = session if session is not None else requests.Session()
        self.clock = clock or Clock()
        self.timeout = timeout
        self.verify = verify
        self.secrets: List[str] = []  # literal values never to appear in a result (keys, URLs, tokens)

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[REDACTED]")
        return text

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        import requests

        all_headers = {"User-Agent": USER_AGENT}
        all_headers.update(headers)
        try:
            response = self.session.post(url, data=body, headers=all_headers, timeout=self.timeout, verify=self.verify,
                                         allow_redirects=False)
        except requests.exceptions.SSLError:
            return DeliveryResult.retry("TLS verification failed")
        except requests.exceptions.Timeout:
            return DeliveryResult.retry(f"timed out after {self.timeout:g} s")
        except requests.exceptions.ConnectionError:
            return DeliveryResult.retry("connection failed")
        except requests.exceptions.RequestException as exc:
            return DeliveryResult.retry(f"request failed ({type(exc).__name__})")
        result = classify(response.status_code, response.headers, _body_text(response), now=self.clock.now())
        result.detail = self.mask(result.detail)  # a target may echo the key or URL back
        return result

    def post_json(self, url: str, obj: Any, headers: Optional[Mapping[str, str]] = None) -> DeliveryResult:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.post(url, to_json(obj), h)


def classify(status: int, headers: Mapping[str, str], body: str, now: Optional[float] = None) -> DeliveryResult:
    """HTTP status -> outcome: 2xx accepted; 408/425/429/5xx retry; other 4xx (and 3xx) permanent."""
    snippet = scrub(" ".join(body.split())[:200])[0]
    detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if 200 <= status < 300:
        return DeliveryResult.ok(detail)
    if status in (408, 425, 429) or status >= 500:
        return DeliveryResult.retry(detail, retry_after_seconds(headers.get("Retry-After"), now))
    return DeliveryResult.permanent(detail)


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """A Retry-After header in seconds: delta-seconds ("120") or an HTTP-date (RFC 9110 §10.2.3),
    the latter counted from ``now`` (the sink's clock); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or now is None:
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - now)


def _body_text(response: Any) -> str:
    try:
        return response.content[:2000].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a body we cannot read is not worth failing over
        return ""


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


# ---------------------------------------------------------------------- text shared by sinks


def headline(update: IncidentUpdate) -> str:
    inc = update.incident
    if update.kind == "resolve":
        return f"RESOLVED: {inc.title}"
    prefix = {"escalate": "ESCALATED", "reopen": "REOPENED", "recur": "RECURRED", "test": "TEST"}.get(update.kind, "")
    head = f"[{inc.severity.upper()}] {inc.title}"
    return f"{prefix} {head}" if prefix else head


def triage(inc: Incident) -> Dict[str, Any]:
    t = inc.finding.get("triage") or {}
    return t if isinstance(t, dict) else {}


def subject_text(inc: Incident) -> str:
    return ", ".join(f"{k}={v}" for k, v in inc.subject.items())


def bundle_link(inc: Incident, template: Optional[str]) -> str:
    """A URL for the bundle: the bundle store's pre-signed link, else the operator's template, else ''."""
    if inc.bundle_url:
        return inc.bundle_url
    if not template or not inc.bundle_path:
        return ""
    return template.format(id=inc.id, fingerprint=inc.fingerprint, host=inc.host)


def recurrence_note(inc: Incident) -> str:
    notes = []
    if inc.recurrence > 1:
        notes.append(f"recurrence #{inc.recurrence} (previous incident {inc.previous_id})")
    if inc.flaps:
        notes.append(f"reopened {inc.flaps} time(s) within the cooldown")
    return "; ".join(notes)
