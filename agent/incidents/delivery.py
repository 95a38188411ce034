"""Deliver the outbox: every update to every sink, once, whatever the sink's mood.

``Deliverer(store, sinks, clock).run_once()`` sends the due outbox rows. Per row:

    accepted          -> delivered_at set; never sent again
    retryable error   -> attempts+1, next_attempt_at = now + exponential backoff with full
                         jitter (base 2 s, cap 10 min) or the sink's Retry-After
    permanent error   -> gave_up_at set, the error kept for ``railwatch incidents show``
    exception         -> treated as retryable (a bug in one sink never stops the others)

A sink that fails retryably is skipped for the rest of the pass (it is down: no point
timing out on each of its rows), and its rows stay pending in SQLite across restarts.

Recovering quickly: while a sink is down, its oldest failed row is tried again every
``probe_interval_s`` (3 s; never before the sink's ``Retry-After``), whatever that row's
own backoff says: one request per few seconds tells when the sink is back. On the first
success after a failure the rest of its queue is made due at once, ``1/recovery_rate``
seconds apart (bounded rate), instead of each row waiting out its own backoff. So an
outage of any length is over for the pages a few seconds after the sink is.
Rows older than ``max_age`` are given up with "expired", so the outbox stays bounded.

Delivery is at-least-once: a crash after the sink accepted and before ``delivered_at``
was written resends that one update; the ``update_id`` travels with it for idempotency.

Bundle links: with a bundle store (``agent.bundle.remote``) the upload is an outbox row
like any other, under the store's name, queued first. Its key, when it lands, is kept as
the checkpoint ``bundle:<incident id>``, and every payload sent from then on carries a
fresh pre-signed link (``Incident.bundle_url``). A page is never held back for long:
while its incident's upload is pending, a sink's row waits at most ``hold_s`` (10 s),
then goes without the link; later updates and refreshes carry it.

Alertmanager forgets alerts that are not re-sent: sinks with a ``refresh_interval``
get the latest state of each open incident again (and a resolved one for 5 minutes)
on that cadence, outside the outbox, best effort.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from agent.clock import Clock
from agent.incidents.store import IncidentStore, OutboxRow
from agent.settings import setting
from agent.sinks.base import ACCEPTED, PERMANENT, DeliveryResult, Sink

log = logging.getLogger(__name__)

BASE_DELAY = 2.0
MAX_DELAY = 600.0
MAX_AGE = 7 * 86400.0
RESOLVED_RESEND = 300.0  # Alertmanager: keep re-sending a resolve this long (alerts_api.md)
BUNDLE_KEY = "bundle:"  # checkpoint key prefix: the uploaded bundle of an incident
PROBE_INTERVAL = 3.0
RECOVERY_RATE = 10.0


@dataclass(frozen=True)
class DeliverySettings:
    """Outbox delivery (``[delivery]`` in the config)."""

    base_backoff_s: float = setting(BASE_DELAY, above=0.0)  # first retry waits up to this long
    max_backoff_s: float = setting(MAX_DELAY, above=0.0)  # no wait (backoff, Retry-After) is longer than this
    probe_interval_s: float = setting(PROBE_INTERVAL, min=0.5)  # a down sink is tried again this often
    recovery_rate: float = setting(RECOVERY_RATE, above=0.0)  # rows per second to a sink that just came back
    max_age_s: float = setting(MAX_AGE, above=0.0)  # an update undelivered this long is given up

    def deliverer_args(self) -> Dict[str, float]:
        return {"base_delay": self.base_backoff_s, "max_delay": self.max_backoff_s, "max_age": self.max_age_s,
                "probe_interval": self.probe_interval_s, "recovery_rate": self.recovery_rate}


class Deliverer:
    """Drains the outbox into the sinks; call ``run_once()`` from the daemon's loop."""

    def __init__(
        self,
        store: IncidentStore,
        sinks: Mapping[str, Sink],
        clock: Clock,
        rng: Optional[random.Random] = None,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        max_age: float = MAX_AGE,
        probe_interval: float = PROBE_INTERVAL,
        recovery_rate: float = RECOVERY_RATE,
        bundle_store: Any = None,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self.clock = clock
        self.rng = rng or random.Random()
        self.base_delay, self.max_delay, self.max_age = base_delay, max_delay, max_age
        self.probe_interval, self.recovery_rate = probe_interval, recovery_rate
        self.bundle_store = bundle_store  # uploads (a row under its name) and signs links
        if bundle_store is not None:
            self.sinks.setdefault(bundle_store.name, bundle_store)
        self._refreshed: Dict[Tuple[str, str], float] = {}
        # sink -> earliest time to probe it again; every sink starts "unknown" (rows may be
        # backing off from before a restart), so its first success hastens its queue too
        self._probe_at: Dict[str, float] = {name: 0.0 for name in self.sinks}

    def run_once(self, limit: int = 100) -> Dict[str, int]:
        """One pass: due outbox rows, then refreshes. Returns counts by outcome."""
        now = self.clock.now()
        counts = {"accepted": 0, "retry": 0, "failed": 0}
        down: set = set()
        rows = self.store.due_outbox(now, list(self.sinks), limit=limit)
        rows += self._probes(now, {r.sink for r in rows})
        while rows:
            row = rows.pop(0)
            if row.sink in down:
                continue
            if now - row.created_at > self.max_age:
                self.store.mark_failed(row.id, now, f"expired after {self.max_age:.0f} s undelivered")
                counts["failed"] += 1
                continue
            if self._waiting_for_upload(row, now):
                continue
            update = self.store.get_update(row.update_id)
            if update is None:  # cannot happen with foreign keys on; never loop on it
                self.store.mark_failed(row.id, now, "update row missing")
                continue
            result = self._deliver(self.sinks[row.sink], self._with_link(update, row.sink))
            if result.status == ACCEPTED:
                self.store.mark_delivered(row.id, self.clock.now())
                if self._is_upload(row.sink) and result.detail:
                    self.store.set_checkpoints({BUNDLE_KEY + row.incident_id: {"key": result.detail}})
                self._refreshed[(row.incident_id, row.sink)] = now
                counts["accepted"] += 1
                if self._probe_at.pop(row.sink, None) is not None:
                    rows += self._recovered(row.sink, now, {r.id for r in rows})
            elif result.status == PERMANENT:
                self.store.mark_failed(row.id, now, result.detail)
                log.warning("sink %s refused update %d for good: %s", row.sink, row.update_id, result.detail)
                counts["failed"] += 1
            else:
                down.add(row.sink)
                delay = self.backoff(row.attempts + 1, result.retry_after)
                self.store.mark_retry(row.id, now + delay, result.detail)
                wait = max(self.probe_interval, min(result.retry_after or 0.0, self.max_delay))
                self._probe_at[row.sink] = now + wait
                log.info("sink %s: %s; retry in %.0f s", row.sink, result.detail, delay)
                counts["retry"] += 1
        self._refresh(now, down)
        return counts

    def _is_upload(self, sink: str) -> bool:
        return self.bundle_store is not None and sink == self.bundle_store.name

    def _waiting_for_upload(self, row: OutboxRow, now: float) -> bool:
        """True while this row's incident has an upload pending for less than ``hold_s``."""
        if self.bundle_store is None or self._is_upload(row.sink):
            return False
        hold = float(getattr(self.bundle_store, "hold_s", 0.0))
        return any(r.sink == self.bundle_store.name and now - r.created_at < hold
                   for r in self.store.outbox_for(row.incident_id, pending_only=True))

    def _with_link(self, update: Any, sink: str) -> Any:
        """The update with a fresh pre-signed link to the incident's uploaded bundle, if there is one."""
        if self.bundle_store is None or self._is_upload(sink):
            return update
        uploaded = self.store.get_checkpoint(BUNDLE_KEY + update.incident.id)
        if not uploaded or not uploaded.get("key"):
            return update
        try:
            link = self.bundle_store.presign(uploaded["key"])
        except Exception:  # noqa: BLE001 - no link is better than no page
            log.exception("signing the bundle link failed")
            return update
        return dataclasses.replace(update, incident=dataclasses.replace(update.incident, bundle_url=link))

    def _probes(self, now: float, busy: set) -> List[OutboxRow]:
        """One failed row of each down sink whose probe time has come (and that has no due row anyway)."""
        probes = []
        for sink, at in self._probe_at.items():
            if now >= at and sink not in busy and sink in self.sinks:
                row = self.store.probe_row(sink)
                if row is not None:
                    probes.append(row)
        return probes

    def _recovered(self, sink: str, now: float, queued: set) -> List[OutboxRow]:
        """The sink is back: its backing-off rows become due at the recovery rate; the ones due now join this pass."""
        n = self.store.hasten(sink, now, 1.0 / self.recovery_rate)
        if n:
            log.info("sink %s is back: sending its %d queued update(s) now", sink, n)
        return [r for r in self.store.due_outbox(now, [sink]) if r.id not in queued]

    def backoff(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Exponential backoff with full jitter (capped by ``max_delay``), at least the sink's Retry-After."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt - 1, 30)))
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.max_delay))
        return delay

    def pending(self) -> int:
        return len(self.store.outbox_for(pending_only=True))

    def _deliver(self, sink: Sink, update) -> DeliveryResult:  # type: ignore[no-untyped-def]
        try:
            return sink.deliver(update)
        except Exception as exc:  # noqa: BLE001 - one broken sink must not stop delivery to the others
            log.exception("sink %s raised", getattr(sink, "name", "?"))
            return DeliveryResult.retry(f"sink raised {type(exc).__name__}")

    def _refresh(self, now: float, down: set) -> None:
        wanting = {n: s for n, s in self.sinks.items() if getattr(s, "refresh_interval", None) and n not in down}
        if not wanting:
            return
        candidates = self.store.open_incidents() + [
            i for i in self.store.list_incidents(status="resolved", limit=200)
            if i.resolved_at is not None and now - i.resolved_at < RESOLVED_RESEND
        ]
        for inc in candidates:
            for name, sink in wanting.items():
                if name in down:
                    continue
                key = (inc.id, name)
                last = self.store.last_delivery(inc.id, name)
                if last is None or last.delivered_at is None:
                    continue  # never delivered, or an update is still pending: the outbox owns it
                since = max(self._refreshed.get(key, 0.0), last.delivered_at)
                if now - since < float(sink.refresh_interval):  # type: ignore[attr-defined]
                    continue
                update = self.store.get_update(last.update_id)
                if update is None:
                    continue
                # the last update, told with the incident as it is now (counts, last seen)
                update = self._with_link(dataclasses.replace(update, incident=inc), name)
                result = self._deliver(sink, update)
                self._refreshed[key] = now
                if result.status != ACCEPTED:
                    down.add(name)
                    log.info("refresh to %s failed: %s", name, result.detail)


def deliver_now(sinks: Mapping[str, Sink], update, on_result: Optional[Callable[[str, DeliveryResult], None]] = None) -> List[Tuple[str, DeliveryResult]]:  # type: ignore[no-untyped-def]
    """Send one update straight to every sink (``test-incident``), bypassing the outbox."""
    results = []
    for name, sink in sinks.items():
        try:
            result = sink.deliver(update)
        except Exception as exc:  # noqa: BLE001
            result = DeliveryResult.retry(f"sink raised {type(exc).__name__}")
        results.append((name, result))
        if on_result is not None:
            on_result(name, result)
    return results
