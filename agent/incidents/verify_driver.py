"""The daemon's side of fix verification: markers in, verdicts to the lifecycle.

    REVISION change ─┐
    railwatch deploy ├─▶ marker ─▶ FixVerifier.deploy(open + recently resolved incidents)
    POST /deploy ────┤                      ▲ feed(events)  (the same batches the detectors get)
    Deploy events ───┘                      │
                          tick(until) ─▶ results ─▶ IncidentManager.record_verification ─▶ outbox

State survives a restart through the store: each incident's ``verification`` ("verifying"
with its marker time and before figures) is resumed at start; the last REVISION seen is a
checkpoint, so a deploy made while the agent was down is noticed at the next start.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Tuple

from agent.events import Deploy, Event
from agent.incidents.deploy_markers import Marker, MarkerInbox, RevisionWatcher
from agent.incidents.lifecycle import IncidentManager, LifecycleSettings
from agent.incidents.model import Incident, IncidentUpdate
from agent.incidents.verify import VERIFYING, WAITING, FixVerifier, VerifyOptions, verifiable

log = logging.getLogger("railwatch.verify")

REVISION_KEY = "verify:revision"


def options_from(settings: LifecycleSettings) -> VerifyOptions:
    return VerifyOptions(min_traffic=settings.verify_min_traffic, still_share=settings.verify_still_share,
                         wait_s=settings.verify_wait_s, timeout_s=settings.verify_timeout_s)


class FixVerification:
    def __init__(self, manager: IncidentManager, state_dir: str, app_root: str = "") -> None:
        self.manager = manager
        self.store = manager.store
        self.settings = manager.settings
        self.verifier = FixVerifier(options_from(self.settings))
        self.inbox = MarkerInbox(state_dir, manager.clock)
        self._started: List[Tuple[str, str]] = []  # (incident id, revision) verifying, state not saved yet
        saved = self.store.get_checkpoint(REVISION_KEY) or {}
        self.revisions: Optional[RevisionWatcher] = RevisionWatcher(app_root, str(saved.get("revision", ""))) if app_root else None
        self._known: List[Incident] = self._candidates()
        for inc in self._known:
            state = inc.verification or {}
            if state.get("status") in (VERIFYING, WAITING) and verifiable(inc.detector, inc.subject):
                self.verifier.resume(inc.id, inc.detector, inc.subject, state)

    # ------------------------------------------------------------------ input
    def feed(self, events: Iterable[Event]) -> None:
        """Feed a batch; a ``Deploy`` event in it is a marker at its own place in the batch. Never
        touches the store (the daemon calls this between the detectors and storing findings):
        the incidents it starts on were read at the last tick, their new state is saved at the next."""
        batch: List[Event] = []
        for e in events:
            if isinstance(e, Deploy) and e.ts is not None and e.revision:
                self.verifier.feed(batch)
                batch = []
                self._start(Marker(e.ts, e.revision, e.source or "log"), self._known)
            else:
                batch.append(e)
        self.verifier.feed(batch)

    def tick(self, until: Optional[float]) -> List[IncidentUpdate]:
        """Pick up new markers, let event time ``until`` decide what it can, apply the verdicts."""
        updates = self._record_started()
        markers = self.inbox.take()
        if self.revisions is not None:
            before = self.revisions.last_revision
            found = self.revisions.poll()
            if found is not None:
                markers.append(found)
            if self.revisions.last_revision != before:
                self.store.set_checkpoints({REVISION_KEY: {"revision": self.revisions.last_revision}})
        for m in sorted(markers):
            updates += self.marker(m)
        self.verifier.advance(until)
        updates += self.apply()
        self._known = self._candidates()  # what a Deploy event in the next batches starts on
        return updates

    def marker(self, m: Marker) -> List[IncidentUpdate]:
        """A deploy: every open or recently resolved incident the verifier can watch is now verifying."""
        self._known = self._candidates()
        self._start(m, self._known)
        return self._record_started()

    def _start(self, m: Marker, incidents: List[Incident]) -> None:
        started = self.verifier.deploy(m.ts, m.revision, incidents)
        log.info("deploy of %s (%s): verifying %d incident(s)", m.revision, m.source, len(started))
        self._started += [(i, m.revision) for i in started]

    def _record_started(self) -> List[IncidentUpdate]:
        updates: List[IncidentUpdate] = []
        started, self._started = self._started, []
        for incident_id, revision in started:
            state = self.verifier.state(incident_id)
            if state is None:  # already decided in the same batch: its result follows
                continue
            state["summary"] = f"verifying on {revision}: watching the signal on traffic since the deploy"
            update = self.manager.record_verification(incident_id, state)
            if update is not None:
                updates.append(update)
        return updates

    def apply(self) -> List[IncidentUpdate]:
        updates: List[IncidentUpdate] = []
        for r in self.verifier.results():
            log.info("incident %s: %s", r.incident_id, r.summary)
            update = self.manager.record_verification(r.incident_id, r.to_dict())
            if update is not None:
                updates.append(update)
        return updates

    def _candidates(self) -> List[Incident]:
        """Open incidents and those resolved within ``verify_recent_s`` (never test incidents)."""
        now = self.manager.clock.now()
        out = [i for i in self.store.open_incidents() if not i.test]
        for inc in self.store.list_incidents("resolved", limit=500):
            if inc.resolved_at is not None and now - inc.resolved_at <= self.settings.verify_recent_s and not inc.test:
                out.append(inc)
        return out

    def http_post(self, path: str, body: bytes) -> Any:
        """The listener's ``POST /deploy`` (from its thread; the main loop applies it at the next tick)."""
        if path != "/deploy":
            return 404, {"error": "POST /deploy only"}
        return self.inbox.post(body)


def state_line(verification: Dict[str, Any]) -> str:
    """One line for ``incidents show``."""
    if not verification:
        return ""
    return str(verification.get("summary") or f"{verification.get('status')} on {verification.get('revision')}")
