"""Incidents and their updates: what the store keeps and what sinks receive.

An ``Incident`` is one problem (one fingerprint) over one stretch of time: it opens
when a finding first arrives, may escalate, and resolves after a quiet period. A later
recurrence is a new incident linked to the earlier one (``previous_id``). Every change
that someone should hear about is an ``IncidentUpdate``; sinks receive updates, never
findings, and every text in them has been scrubbed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional

# update kinds; all but "resolve" mean "this is firing" to a paging system
OPEN, RECUR, REOPEN, ESCALATE, RESOLVE, TEST = "open", "recur", "reopen", "escalate", "resolve", "test"
UPDATE_KINDS = (OPEN, RECUR, REOPEN, ESCALATE, RESOLVE, TEST)
TRIGGER_KINDS = frozenset((OPEN, RECUR, REOPEN, ESCALATE, TEST))

PAYLOAD_SCHEMA = "railwatch.incident/v1"


@dataclass
class Incident:
    """One incident. Times: ``*_at`` are agent wall-clock times, ``first_seen``/``last_seen`` log times."""

    id: str
    fingerprint: str
    detector: str
    severity: str
    title: str
    subject: Dict[str, str]
    status: str  # "open" | "resolved"
    opened_at: float
    updated_at: float
    last_reported_at: float  # when a finding for it last arrived (drives the quiet period)
    first_seen: float
    last_seen: float
    count: int = 0
    recurrence: int = 1  # 1 for the first incident of a fingerprint, 2 for its first recurrence…
    previous_id: str = ""
    flaps: int = 0  # reopened within the cooldown after resolving
    resolved_at: Optional[float] = None
    resolved_reason: str = ""  # "quiet", "manual"
    host: str = ""
    bundle_path: str = ""
    bundle_url: str = ""  # a pre-signed link to the uploaded bundle, set when a payload is sent (bundle store)
    finding: Dict[str, Any] = field(default_factory=dict)  # the latest finding, scrubbed (Finding.to_dict shape)
    redactions: Dict[str, int] = field(default_factory=dict)
    test: bool = False
    # fix verification after a deploy marker (agent.incidents.verify): status, revision, since,
    # before/after figures, summary; {} when no deploy has been verified against it
    verification: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Incident":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class IncidentUpdate:
    """A change worth telling the sinks: ``kind`` is one of ``UPDATE_KINDS``."""

    kind: str
    incident: Incident
    at: float
    update_id: int = 0
    previous_severity: str = ""  # set on escalation
    deferred_until: Optional[float] = None  # set when the storm limit held the notification back

    @property
    def firing(self) -> bool:
        return self.kind in TRIGGER_KINDS

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": PAYLOAD_SCHEMA,
            "kind": self.kind,
            "at": self.at,
            "update_id": self.update_id,
            "previous_severity": self.previous_severity,
            "deferred_until": self.deferred_until,
            "incident": self.incident.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any], update_id: int = 0) -> "IncidentUpdate":
        return cls(
            kind=data["kind"], incident=Incident.from_dict(data["incident"]), at=data["at"],
            update_id=update_id or int(data.get("update_id") or 0), previous_severity=data.get("previous_severity", ""),
            deferred_until=data.get("deferred_until"),
        )
