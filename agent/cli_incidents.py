"""``railwatch incidents list|show|resolve``, ``railwatch bundle``, ``railwatch test-incident``,
and ``open_incidents_from_scan``: the one path from a scan's findings to incidents and sinks.

Registered by ``agent/cli.py``: ``cli.add_command(incidents)``, ``cli.add_command(bundle)``,
``cli.add_command(test_incident)``. Sinks come from ``--config FILE`` (its ``[sinks.<name>]``
tables, each with ``type = "webhook"|…``); without one, the directory sink under the
state directory. Exit status: 0 fine, 1 a sink did not accept (test-incident), 2 usage.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional

import click

from agent.cli_common import EXIT_FAILED, EXIT_OK, fail, fail_all, say
from agent.clock import Clock
from agent.config import DEFAULT_STATE_DIR
from agent.incidents import Deliverer, IncidentManager, IncidentStore, IncidentUpdate, LifecycleSettings, StoreError
from agent.incidents.model import RESOLVE
from agent.sinks import Sink, build_sinks
from agent.timeparse import to_iso

if TYPE_CHECKING:
    from agent.config import Config

state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False), default=DEFAULT_STATE_DIR, show_default=True,
    envvar="RAILWATCH_STATE_DIR", help="Where the incident store and bundles live.")
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
    help="railwatch config (TOML); its [sinks.*] tables say where incidents go.")


def load_config(path: Optional[str]) -> Optional["Config"]:
    """The config file through the same typed parse as ``run`` (no [[sources]] needed); None without a file.

    A bad file exits 2 listing every problem, one ``railwatch: <dotted path>: <problem>`` line
    each, as ``config check`` and ``run`` do.
    """
    if not path:
        return None
    from agent.config import ConfigError, load

    try:
        return load(path, require_sources=False)
    except ConfigError as exc:
        fail_all(exc.errors)


def configured_sinks(state_dir: str, config: Optional["Config"], clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """The config's sinks (validated at parse); the directory sink under ``state_dir`` without any."""
    return build_sinks(config.sinks if config is not None else (), state_dir, clock=clock)


@contextmanager
def _open_store(state_dir: str, read_only: bool = False) -> Iterator[IncidentStore]:
    """The store, or a one-line error and exit 2 if it cannot be opened or read (damaged, disk full,
    or, ``read_only``, missing: looking creates nothing)."""
    try:
        store = IncidentStore(state_dir, read_only=read_only)
    except (StoreError, OSError) as exc:
        fail(f"cannot open the incident store in {state_dir}: {exc}")
    try:
        yield store
    except StoreError as exc:
        fail(f"incident store in {state_dir}: {exc}")
    finally:
        store.close()


def _one(store: IncidentStore, ref: str):  # type: ignore[no-untyped-def]
    found = store.find_incident(ref)
    if not found:
        fail(f"no incident {ref!r} (see `railwatch incidents list`)")
    if len(found) > 1:
        fail(f"{ref!r} matches {len(found)} incidents: " + ", ".join(i.id for i in found[:5]))
    return found[0]


# ---------------------------------------------------------------------- the scan path


def _charts(result: Any) -> Callable[[str], Optional[str]]:
    """fingerprint -> the incident's timeline SVG, from the series the scan collected."""
    from agent.charts import timeline_svg
    from agent.report_view import timelines

    tls = timelines(result)
    return lambda fp: timeline_svg(tls[fp], standalone=True) if fp in tls else None


def open_incidents_from_scan(
    result: Any,
    state_dir: str,
    sinks: Optional[Mapping[str, Sink]] = None,
    *,
    facts: Any = None,
    clock: Optional[Clock] = None,
    settings: Optional[LifecycleSettings] = None,
    host: Optional[str] = None,
    agent_config: Any = None,
    snapshot: Optional[Callable[[], Dict[str, Any]]] = None,
) -> List[IncidentUpdate]:
    """Hand a ``ScanResult``'s findings to the incident lifecycle, bundles and sinks; return the updates.

    Quiet incidents from earlier runs are resolved, and the outbox is drained once (what a
    sink did not accept stays queued for the daemon or the next run).
    """
    from agent.bundle import BundleBuilder
    from agent.sinks import default_sinks

    clock = clock or Clock()
    sinks = dict(sinks) if sinks else default_sinks(state_dir, clock)
    try:
        store = IncidentStore(state_dir, clock)
    except (StoreError, OSError) as exc:
        fail(f"--open-incidents: cannot open the incident store in {state_dir}: {exc}")
    try:
        builder = BundleBuilder(state_dir, clock, facts=facts, agent_config=agent_config, snapshot=snapshot, host=host,
                                updates=store.updates_for, charts=_charts(result))
        manager = IncidentManager(store, clock, list(sinks), settings=settings, host=host, bundler=builder)
        updates = manager.observe(result.incidents)
        updates += manager.tick()
        Deliverer(store, sinks, clock).run_once(limit=1000)
        return updates
    except StoreError as exc:
        fail(f"--open-incidents: incident store in {state_dir}: {exc}")
    finally:
        store.close()


# ---------------------------------------------------------------------- incidents


@click.group("incidents")
def incidents() -> None:
    """List, show and resolve incidents in the local store."""


@incidents.command("list")
@state_dir_option
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.option("--limit", type=int, default=100, show_default=True)
def list_cmd(state_dir: str, status: str, as_json: bool, limit: int) -> None:
    """Incidents, most recently updated first."""
    with _open_store(state_dir, read_only=True) as store:
        rows = store.list_incidents(None if status == "all" else status, limit=limit)
        if as_json:
            click.echo(json.dumps([i.to_dict() for i in rows], indent=2, ensure_ascii=False, default=str))
            return
        if not rows:
            click.echo("No incidents.")
            return
        click.echo(f"{'ID':<20} {'STATUS':<9} {'SEVERITY':<9} {'DETECTOR':<18} {'OPENED (UTC)':<21} {'COUNT':>6}  TITLE")
        for i in rows:
            click.echo(f"{i.id:<20} {i.status:<9} {i.severity:<9} {i.detector[:18]:<18} {to_iso(i.opened_at)[:19]:<21} "
                       f"{i.count:>6}  {i.title[:80]}")


@incidents.command("show")
@state_dir_option
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(state_dir: str, incident_id: str, as_json: bool) -> None:
    """One incident: triage, evidence, updates and where each was delivered."""
    with _open_store(state_dir, read_only=True) as store:
        inc = _one(store, incident_id)
        updates = store.updates_for(inc.id)
        outbox = store.outbox_for(inc.id)
        if as_json:
            click.echo(json.dumps({"incident": inc.to_dict(), "updates": [u.to_dict() for u in updates],
                                   "deliveries": [o.__dict__ for o in outbox]}, indent=2, ensure_ascii=False, default=str))
            return
        t = inc.finding.get("triage") or {}
        out = [f"[{inc.severity.upper()}] {inc.title}", f"  id         {inc.id}   status {inc.status}",
               f"  detector   {inc.detector}   fingerprint {inc.fingerprint}",
               "  subject    " + "  ".join(f"{k}={v}" for k, v in inc.subject.items()),
               f"  window     {to_iso(inc.first_seen)} → {to_iso(inc.last_seen)}  ({inc.count} occurrence(s))",
               f"  opened     {to_iso(inc.opened_at)} on {inc.host}"]
        if inc.resolved_at:
            out.append(f"  resolved   {to_iso(inc.resolved_at)} ({inc.resolved_reason})")
        if inc.verification:
            out.append(f"  verified   {inc.verification.get('summary') or inc.verification.get('status')}")
        if inc.previous_id:
            out.append(f"  recurrence #{inc.recurrence} of this problem; previous {inc.previous_id}")
        out += [f"  bundle     {inc.bundle_path or '-'}", "", f"  summary    {t.get('summary', '')}"]
        if t.get("likely_cause"):
            out.append(f"  cause      {t['likely_cause']}")
        out += ["  evidence:"] + [f"    {e.get('path')}:{e.get('line')}  {str(e.get('text', '')).splitlines()[0][:200] if e.get('text') else ''}"
                                  for e in inc.finding.get("evidence", [])[:5]]
        out += ["", "  updates:"]
        for u in updates:
            out.append(f"    #{u.update_id} {to_iso(u.at)} {u.kind}")
            for o in (o for o in outbox if o.update_id == u.update_id):
                state = (f"delivered {to_iso(o.delivered_at)}" if o.delivered_at else
                         f"gave up: {o.last_error}" if o.gave_up_at else
                         f"pending, {o.attempts} attempt(s), next {to_iso(o.next_attempt_at)}" + (f": {o.last_error}" if o.last_error else ""))
                out.append(f"        → {o.sink}: {state}")
        click.echo("\n".join(out))


@incidents.command("resolve")
@state_dir_option
@config_option
@click.argument("incident_id")
def resolve_cmd(state_dir: str, config_path: Optional[str], incident_id: str) -> None:
    """Resolve an open incident now and tell the sinks."""
    config = load_config(config_path)
    clock = Clock()
    sinks = configured_sinks(state_dir, config, clock)
    with _open_store(state_dir) as store:
        inc = _one(store, incident_id)
        manager = IncidentManager(store, clock, list(sinks))
        update = manager.resolve(inc.id, reason="manual")
        if update is None:
            fail(f"{inc.id} is not open (status {inc.status})")
        counts = Deliverer(store, sinks, clock).run_once()
        pending = len(store.outbox_for(inc.id, pending_only=True))
        click.echo(f"resolved {inc.id}; delivered {counts['accepted']}, pending {pending}")


@incidents.command("prune")
@state_dir_option
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.option("--max-age-days", type=float, default=None, help="Override [retention] max_age_days.")
@click.option("--max-total-mb", type=float, default=None, help="Override [retention] max_total_mb.")
def prune_cmd(state_dir: str, config_path: Optional[str], dry_run: bool, max_age_days: Optional[float],
              max_total_mb: Optional[float]) -> None:
    """Remove old incident directories, bundles and records (never an open incident's), then compact the store."""
    import dataclasses
    import os

    from agent.incidents.prune import RetentionSettings, prune

    config = load_config(config_path)
    settings = config.retention if config is not None else RetentionSettings()
    if max_age_days is not None:
        settings = dataclasses.replace(settings, max_age_days=max_age_days)
    if max_total_mb is not None:
        settings = dataclasses.replace(settings, max_total_mb=max_total_mb)
    with _open_store(state_dir) as store:
        report = prune(store, os.path.join(state_dir, "incidents"), settings, Clock().now(), dry_run=dry_run)
        if not dry_run:
            store.vacuum()
    for path in report.removed_dirs:
        click.echo(("would remove " if dry_run else "removed ") + path)
    click.echo(report.summary(dry_run))


# ---------------------------------------------------------------------- bundle, test-incident


@click.command("bundle")
@state_dir_option
@config_option
@click.argument("incident_id")
@click.option("--rebuild", is_flag=True, help="Build it again (fresh process snapshot) even if it exists.")
@click.option("--app", "app_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Rails app root, for its configuration and REVISION.")
def bundle(state_dir: str, config_path: Optional[str], incident_id: str, rebuild: bool, app_dir: Optional[str]) -> None:
    """Print the path of an incident's diagnostic bundle (building it if missing)."""
    from agent.bundle import BundleBuilder

    facts = None
    if app_dir:
        from agent.appfacts import load_app_facts

        facts = load_app_facts(app_dir, env=dict(os.environ))
    with _open_store(state_dir) as store:
        inc = _one(store, incident_id)
        if rebuild or not inc.bundle_path or not os.path.isfile(inc.bundle_path):
            builder = BundleBuilder(state_dir, facts=facts, agent_config=config_path, updates=store.updates_for)
            inc.bundle_path = builder.build(inc)
            store.record(inc, None, [])
        click.echo(inc.bundle_path)


@click.command("test-incident")
@state_dir_option
@config_option
def test_incident(state_dir: str, config_path: Optional[str]) -> None:
    """Send a clearly marked test incident through every configured sink; report who accepted it."""
    from agent.bundle import BundleBuilder
    from agent.incidents.delivery import deliver_now

    config = load_config(config_path)
    clock = Clock()
    sinks = configured_sinks(state_dir, config, clock)
    with _open_store(state_dir) as store:
        update = IncidentManager(store, clock, list(sinks)).test_incident()
    try:
        update.incident.bundle_path = BundleBuilder(state_dir, clock, agent_config=config_path).build(update.incident)
    except OSError as exc:
        say(f"test bundle not built: {exc.strerror or exc}")
    results = deliver_now(sinks, update)
    # close the test alert again where the target keeps state (PagerDuty, Alertmanager)
    update.incident.status, update.incident.resolved_at, update.incident.resolved_reason = "resolved", clock.now(), "test"
    closing = IncidentUpdate(kind=RESOLVE, incident=update.incident, at=clock.now())
    deliver_now({n: s for n, s in sinks.items() if s.kind in ("pagerduty", "alertmanager")}, closing)
    width = max(len(n) for n in sinks) if sinks else 4
    for name, result in results:
        verdict = "accepted" if result.accepted else ("failed, would retry" if result.status == "retry" else "refused")
        click.echo(f"{name:<{width}}  {sinks[name].kind:<12} {verdict:<20} {result.detail}")
    sys.exit(EXIT_OK if all(r.accepted for _, r in results) else EXIT_FAILED)
