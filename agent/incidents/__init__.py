"""Incidents: lifecycle (findings -> open/escalate/resolve/recur), SQLite store, outbox delivery.

    store = IncidentStore(state_dir, clock)
    manager = IncidentManager(store, clock, sinks=list(sinks), bundler=BundleBuilder(state_dir, clock, facts))
    manager.observe(findings); manager.tick()          # from the pipeline, and periodically
    Deliverer(store, sinks, clock).run_once()          # periodically: drains the outbox
"""
from __future__ import annotations

from agent.incidents.delivery import Deliverer, deliver_now
from agent.incidents.lifecycle import IncidentManager, LifecycleSettings
from agent.incidents.model import Incident, IncidentUpdate
from agent.incidents.store import IncidentStore, StoreError

__all__ = [
    "Deliverer", "Incident", "IncidentManager", "IncidentStore", "IncidentUpdate", "LifecycleSettings", "StoreError",
    "deliver_now",
]
