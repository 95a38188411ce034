"""From findings to incidents: open, escalate, resolve, recur, with storm control.

``IncidentManager.observe(findings)`` is called with whatever detectors flushed;
``tick()`` is called periodically to resolve what has gone quiet. For one fingerprint
(``Finding.fingerprint``: detector + subject, never a host or a time):

    no incident yet                     -> open            (id <fingerprint>-1)
    open, same or lower severity        -> counters only   (no notification)
    open, warning -> critical           -> escalate        (same incident, bundle rebuilt)
    open, no finding for quiet_period_s  -> resolve         (tick)
    resolved less than cooldown_s ago   -> reopen          (same incident; its next quiet period doubles)
    resolved longer ago                 -> recur           (new incident <fingerprint>-N, previous_id linked)

Storm control: at most ``rate_limit`` open/recur/reopen notifications per
``rate_window_s`` seconds across all fingerprints. Beyond that the incident is still
opened and stored (nothing is lost) but its outbox rows wait until the window has room.

Every text in an incident is scrubbed before it reaches the store (``agent.scrub``).

A bundle that fails to build (state dir briefly read-only, disk full) leaves the open
incident without ``bundle_path``: that is the mark, kept in the store, so ``tick()``
builds it again later, with backoff (``BUNDLE_RETRY_S``), also after a restart.
"""
from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from agent.clock import Clock
from agent.events import Evidence, Finding, severity_rank
from agent.incidents.model import ESCALATE, OPEN, RECUR, REOPEN, RESOLVE, TEST, Incident, IncidentUpdate
from agent.incidents.store import IncidentStore
from agent.scrub import Scrubber, scrub_finding
from agent.settings import setting

log = logging.getLogger(__name__)

MAX_FLAP_FACTOR = 8  # a flapping incident waits at most 8 quiet periods before resolving again
BUNDLE_RETRY_S = (5.0, 600.0)  # first and longest wait before building a failed bundle again


@dataclass(frozen=True)
class LifecycleSettings:
    """Incident lifecycle settings (``[incidents]`` in the config)."""

    quiet_period_s: float = setting(1800.0, above=0.0, was=("quiet_period",))  # seconds without a finding before an incident resolves
    quiet_periods_s: Mapping[str, float] = setting({}, above=0.0, was=("quiet_periods",))  # per detector name, overrides quiet_period_s
    cooldown_s: float = setting(900.0, min=0.0, was=("cooldown",))  # a recurrence within this long after resolving reopens the same incident
    rate_limit: int = setting(20, min=1)  # opening notifications per rate_window_s, all fingerprints together
    rate_window_s: float = setting(600.0, above=0.0, was=("rate_window",))
    max_evidence: int = setting(25, min=1)  # evidence lines kept per incident
    # fix verification after a deploy marker (agent.incidents.verify)
    verify_min_traffic: int = setting(20, min=1)  # requests to the endpoint / runs of the job after the deploy
    verify_still_share: float = setting(0.1, min=0.0, max=1.0)  # share of that traffic still showing the signal: not fixed
    verify_wait_s: float = setting(300.0, above=0.0)  # then "too little traffic so far" (still watching)
    verify_timeout_s: float = setting(3600.0, above=0.0)  # then "not verified: too little traffic"
    verify_recent_s: float = setting(86400.0, min=0.0)  # incidents resolved this recently are verified too

    def quiet_for(self, detector: str) -> float:
        return float(self.quiet_periods_s.get(detector, self.quiet_period_s))


Bundler = Callable[[Incident], str]  # builds the bundle, returns its path


class IncidentManager:
    """Turns findings into incidents in ``store`` and queues updates for ``sinks`` (names)."""

    def __init__(
        self,
        store: IncidentStore,
        clock: Clock,
        sinks: Sequence[str],
        settings: Optional[LifecycleSettings] = None,
        host: Optional[str] = None,
        bundler: Optional[Bundler] = None,
        scrubber: Optional[Scrubber] = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sinks = list(sinks)
        self.settings = settings or LifecycleSettings()
        self.host = host if host is not None else socket.gethostname()
        self.bundler = bundler
        self.scrubber = scrubber
        self._bundle_retry: Dict[str, List[float]] = {}  # incident id -> [next attempt (monotonic), wait]

    # ------------------------------------------------------------------ findings in

    def observe(self, findings: Iterable[Finding]) -> List[IncidentUpdate]:
        """Apply findings; return the updates queued for the sinks (in order)."""
        updates: List[IncidentUpdate] = []
        for finding in findings:
            update = self._observe_one(finding)
            if update is not None:
                updates.append(update)
        return updates

    def _observe_one(self, finding: Finding) -> Optional[IncidentUpdate]:
        now = self.clock.now()
        fp = finding.fingerprint  # from the raw subject, before scrubbing can change it
        clean, redactions = scrub_finding(finding, self.scrubber)
        latest = self.store.latest_for_fingerprint(fp)
        if latest is None:
            return self._open(fp, clean, redactions, now, recurrence=1, previous_id="", kind=OPEN)
        if latest.is_open:
            return self._update_open(latest, clean, redactions, now)
        if latest.resolved_at is not None and now - latest.resolved_at < self.settings.cooldown_s:
            return self._reopen(latest, clean, redactions, now)
        return self._open(fp, clean, redactions, now, recurrence=latest.recurrence + 1, previous_id=latest.id, kind=RECUR)

    def _open(self, fp: str, f: Finding, redactions: Dict[str, int], now: float, recurrence: int, previous_id: str,
              kind: str) -> IncidentUpdate:
        incident = Incident(
            id=f"{fp}-{recurrence}", fingerprint=fp, detector=f.detector, severity=f.severity, title=f.title,
            subject=dict(f.subject), status="open", opened_at=now, updated_at=now, last_reported_at=now,
            first_seen=f.first_seen, last_seen=f.last_seen, count=f.count, recurrence=recurrence, previous_id=previous_id,
            host=self.host, finding=_finding_dict(f, fp), redactions=dict(redactions),
        )
        self._bundle(incident)
        return self._notify(incident, kind, now, opening=True)

    def _update_open(self, inc: Incident, f: Finding, redactions: Dict[str, int], now: float) -> Optional[IncidentUpdate]:
        previous = inc.severity
        escalated = severity_rank(f.severity) > severity_rank(inc.severity)
        _absorb(inc, f, redactions, now, self.settings.max_evidence)
        if not escalated:
            self.store.record(inc, None, [])
            return None
        inc.severity, inc.title = f.severity, f.title
        self._bundle(inc)
        return self._notify(inc, ESCALATE, now, opening=False, previous_severity=previous)

    def _reopen(self, inc: Incident, f: Finding, redactions: Dict[str, int], now: float) -> IncidentUpdate:
        inc.status, inc.resolved_at, inc.resolved_reason = "open", None, ""
        inc.flaps += 1
        if severity_rank(f.severity) >= severity_rank(inc.severity):
            inc.severity, inc.title = f.severity, f.title
        _absorb(inc, f, redactions, now, self.settings.max_evidence)
        self._bundle(inc)
        return self._notify(inc, REOPEN, now, opening=True)

    # ------------------------------------------------------------------ time passes

    def tick(self) -> List[IncidentUpdate]:
        """Resolve open incidents that have been quiet for their detector's quiet period."""
        now = self.clock.now()
        updates = []
        for inc in self.store.open_incidents():
            if inc.test:
                continue
            quiet = self.settings.quiet_for(inc.detector) * min(2 ** inc.flaps, MAX_FLAP_FACTOR)
            if now - inc.last_reported_at >= quiet:
                updates.append(self._resolve(inc, now, "quiet"))
            elif not inc.bundle_path:
                self._rebuild_bundle(inc)
        return updates

    def _rebuild_bundle(self, inc: Incident) -> None:
        """Build again a bundle that failed, when its backoff allows; save the incident if it worked."""
        if self.bundler is None:
            return
        now = self.clock.monotonic()
        retry = self._bundle_retry.setdefault(inc.id, [now + BUNDLE_RETRY_S[0], BUNDLE_RETRY_S[0] * 2])
        if now < retry[0]:
            return
        self._bundle(inc)
        if inc.bundle_path:
            self._bundle_retry.pop(inc.id, None)
            self.store.record(inc, None, [])
            log.info("bundle for %s built on a later attempt: %s", inc.id, inc.bundle_path)
        else:
            retry[0], retry[1] = now + retry[1], min(retry[1] * 2, BUNDLE_RETRY_S[1])

    def resolve(self, incident_id: str, reason: str = "manual") -> Optional[IncidentUpdate]:
        """Resolve one incident now (``railwatch incidents resolve``); None if it is not open."""
        inc = self.store.get_incident(incident_id)
        if inc is None or not inc.is_open:
            return None
        return self._resolve(inc, self.clock.now(), reason)

    def _resolve(self, inc: Incident, now: float, reason: str) -> IncidentUpdate:
        inc.status, inc.resolved_at, inc.resolved_reason, inc.updated_at = "resolved", now, reason, now
        return self._notify(inc, RESOLVE, now, opening=False)

    def record_verification(self, incident_id: str, verification: Dict[str, object]) -> Optional[IncidentUpdate]:
        """Store a fix verification (agent.incidents.verify) on the incident and tell the sinks when it is
        decided: "fixed" resolves it (reason "fixed in R"), "not_fixed" escalates it (reopened if it had
        resolved); other states are stored only. The bundle is rebuilt so triage.md carries it."""
        inc = self.store.get_incident(incident_id)
        if inc is None:
            return None
        now = self.clock.now()
        inc.verification = dict(verification)
        status, revision = verification.get("status"), str(verification.get("revision") or "the new revision")
        if status == "fixed":
            self._bundle(inc)
            if inc.is_open:
                return self._resolve(inc, now, f"fixed in {revision}")
            inc.resolved_reason = f"{inc.resolved_reason}; fixed in {revision}" if inc.resolved_reason else f"fixed in {revision}"
            return self._notify(inc, RESOLVE, now, opening=False)
        if status == "not_fixed":
            previous = inc.severity
            inc.status, inc.resolved_at, inc.resolved_reason = "open", None, ""
            inc.last_reported_at = now
            inc.severity = "critical"
            marker = f"not fixed by {revision}"
            if marker not in inc.title:
                inc.title = f"{inc.title} ({marker})"
            self._bundle(inc)
            return self._notify(inc, ESCALATE, now, opening=False, previous_severity=previous)
        inc.updated_at = now
        self.store.record(inc, None, [])
        return None

    # ------------------------------------------------------------------ test incidents

    def test_incident(self) -> IncidentUpdate:
        """A clearly marked test incident (stored, so ``incidents list`` shows it; never auto-resolved)."""
        now = self.clock.now()
        tag = f"{int(now)}"
        inc = Incident(
            id=f"test-{tag}", fingerprint=f"railwatch-test-{tag}", detector="railwatch_test", severity="warning",
            title="[TEST] railwatch test incident: no action needed", subject={"test": tag}, status="open", opened_at=now,
            updated_at=now, last_reported_at=now, first_seen=now, last_seen=now, count=1, host=self.host, test=True,
            finding={"triage": {"summary": "This is a test sent by `railwatch test-incident` to check delivery. Ignore it.",
                                "likely_cause": "", "containment": [], "prevention": []}, "evidence": [], "details": {}},
        )
        return IncidentUpdate(kind=TEST, incident=inc, at=now)

    # ------------------------------------------------------------------ helpers

    def _notify(self, inc: Incident, kind: str, now: float, opening: bool, previous_severity: str = "") -> IncidentUpdate:
        inc.updated_at = now
        update = IncidentUpdate(kind=kind, incident=inc, at=now, previous_severity=previous_severity)
        due = None
        if opening:
            due = self._storm_slot(now)
            update.deferred_until = due
        self.store.record(inc, update, self.sinks, next_attempt_at=due)
        return update

    def _storm_slot(self, now: float) -> Optional[float]:
        """None if an opening notification may go now, else when it may go."""
        s = self.settings
        recent = self.store.count_updates_since((OPEN, RECUR, REOPEN), now - s.rate_window_s)
        if recent < s.rate_limit:
            return None
        windows = math.floor((recent - s.rate_limit) / max(s.rate_limit, 1)) + 1
        log.warning("alert storm: %d incidents opened in %.0f s; holding notifications back", recent + 1, s.rate_window_s)
        return now + windows * s.rate_window_s

    def _bundle(self, inc: Incident) -> None:
        if self.bundler is None:
            return
        try:
            inc.bundle_path = self.bundler(inc)
        except Exception as exc:  # a bundle is a bonus; the incident must open regardless
            log.warning("bundle for %s failed (will be retried): %s: %s", inc.id, type(exc).__name__, _reason(exc))


def _reason(exc: Exception) -> str:
    """An OSError's own words (path and cause: they hold no log content); other errors by type only."""
    return str(exc)[:300] if isinstance(exc, OSError) else ""


def _finding_dict(f: Finding, fp: str) -> Dict[str, object]:
    data = f.to_dict()
    data["fingerprint"] = fp
    return data


def _absorb(inc: Incident, f: Finding, redactions: Dict[str, int], now: float, max_evidence: int) -> None:
    """Fold a (scrubbed) finding into an incident: counters, window, evidence, latest triage."""
    inc.count += f.count
    inc.first_seen = min(inc.first_seen, f.first_seen)
    inc.last_seen = max(inc.last_seen, f.last_seen)
    inc.last_reported_at = now
    inc.updated_at = now
    for kind, n in redactions.items():
        inc.redactions[kind] = inc.redactions.get(kind, 0) + n
    old = [Evidence(**e) for e in inc.finding.get("evidence", [])]  # type: ignore[union-attr]
    seen = {(e.path, e.line) for e in old}
    merged = old + [e for e in f.evidence if (e.path, e.line) not in seen]
    data = _finding_dict(f, inc.fingerprint)
    if severity_rank(f.severity) < severity_rank(inc.severity):
        data["triage"] = inc.finding.get("triage", data["triage"])  # keep the triage of the worst state
        data["severity"] = inc.severity
    if len(merged) > max_evidence:  # keep the onset and the latest lines
        head = max(1, max_evidence // 4)
        merged = merged[:head] + merged[len(merged) - (max_evidence - head):]
    data["evidence"] = [dict(e.__dict__) for e in merged]
    data["count"], data["first_seen"], data["last_seen"] = inc.count, inc.first_seen, inc.last_seen
    inc.finding = data
