"""``railwatch status``: how is the running agent doing? Its ``/healthz`` plus the store.

The daemon's ``/healthz`` gives the verdict (ok | degraded | failing, with reasons), the
sources with their lag, the detectors and the sinks' last errors; the incident store,
opened read-only, gives the open incidents and the outbox backlog per sink.

Exit status, for scripts: **0** ok, **1** degraded (running, something needs a look),
**2** failing, unreachable (not running, or [metrics] listen is off), or a usage error.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import click

from agent.cli_common import EXIT_USAGE
from agent.config import DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR
from agent.config_values import DEFAULT_METRICS_LISTEN, split_listen

EXIT_BY_STATUS = {"ok": 0, "degraded": 1, "failing": 2, "unreachable": 2}


def fetch_health(host: str, port: int, timeout: float = 5.0) -> Dict[str, Any]:
    """The daemon's /healthz document; ``status: unreachable`` when nothing answers."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"http://{shown}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return dict(json.loads(r.read().decode()), url=url)
    except urllib.error.HTTPError as exc:  # 503: failing, with its JSON body
        try:
            return dict(json.loads(exc.read().decode()), url=url)
        except ValueError:
            return {"status": "failing", "reasons": [f"{url}: HTTP {exc.code}"], "url": url}
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return {"status": "unreachable", "url": url,
                "reasons": [f"{url}: no answer ({why}); is railwatch running (systemctl status railwatch)?"]}


def read_store(state_dir: str) -> Dict[str, Any]:
    """Open incidents and the outbox backlog per sink, from the store opened read-only."""
    from agent.incidents import IncidentStore, StoreError

    try:
        store = IncidentStore(state_dir, read_only=True)
    except (StoreError, OSError) as exc:
        return {"error": str(exc)}
    try:
        incidents = [{"id": i.id, "severity": i.severity, "detector": i.detector, "title": i.title, "count": i.count}
                     for i in store.open_incidents()]
        backlog: Dict[str, Dict[str, Any]] = {}
        for row in store.outbox_for(pending_only=True):
            entry = backlog.setdefault(row.sink, {"pending": 0, "last_error": None})
            entry["pending"] += 1
            if row.last_error:
                entry["last_error"] = row.last_error
    except StoreError as exc:
        return {"error": str(exc)}
    finally:
        store.close()
    return {"state_dir": state_dir, "open_incidents": incidents, "outbox": backlog}


def _settings(config_path: Optional[str], listen: Optional[str], state_dir: Optional[str]) -> Tuple[Optional[Tuple[str, int]], str]:
    """(address or None when metrics are off, state dir): options win over the config file."""
    from agent.cli_common import fail_all
    from agent.config import ConfigError, load

    cfg_listen, cfg_state = DEFAULT_METRICS_LISTEN, DEFAULT_STATE_DIR
    path = config_path or (DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    if path:
        try:
            cfg = load(path, require_sources=False)
        except ConfigError as exc:
            fail_all(exc.errors)
        cfg_listen, cfg_state = cfg.metrics.listen, cfg.state.dir
    chosen = listen or cfg_listen
    address = None if chosen == "off" else split_listen(chosen)
    if chosen != "off" and address is None:
        click.echo(f"railwatch: --listen {chosen}: expected HOST:PORT", err=True)
        sys.exit(EXIT_USAGE)
    return address, state_dir or cfg_state


def render(health: Dict[str, Any], store: Dict[str, Any]) -> str:
    lines: List[str] = [f"railwatch {health.get('version', '')}".rstrip() + f": {health['status'].upper()}  ({health.get('url', '')})"]
    for reason in health.get("reasons") or []:
        lines.append(f"  ! {reason}")
    sources = health.get("sources") or []
    if sources:
        lines.append("sources:")
        for s in sources:
            if s.get("missing"):
                lines.append(f"  {s['path']}  missing")
            else:
                lag = f"{s['lag_bytes']:,} bytes behind for {s['lag_seconds']:.0f} s" if s["lag_bytes"] else "caught up"
                lines.append(f"  {s['path']}  {s['lines']:,} lines, {lag}{'  STALLED' if s.get('stalled') else ''}")
    detectors = health.get("detectors")
    if detectors:
        lines.append("detectors: " + (", ".join(detectors["enabled"]) or "none enabled"))
        for name, why in (detectors.get("disabled") or {}).items():
            lines.append(f"  {name} DISABLED: {why}")
    if "error" in store:
        lines.append(f"store: {store['error']}")
    else:
        open_ = store["open_incidents"]
        lines.append(f"open incidents: {len(open_)}")
        for i in open_[:10]:
            lines.append(f"  {i['severity'].upper():<8} {i['id']}  {i['detector']}  {i['title'][:70]}")
    sinks = dict(health.get("sinks") or {})
    backlog = store.get("outbox", {})
    names = sorted(set(sinks) | set(backlog))
    if names:
        lines.append("sinks:")
    for name in names:
        pending = backlog.get(name, {}).get("pending", 0)
        error = sinks.get(name, {}).get("last_error") or backlog.get(name, {}).get("last_error")
        failing = sinks.get(name, {}).get("failing_for_s")
        state = f"failing for {failing:.0f} s" if failing is not None else "ok"
        lines.append(f"  {name}: {state}, {pending} update(s) waiting" + (f"; last error: {error}" if error else ""))
    return "\n".join(lines) + "\n"


@click.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help=f"The daemon's configuration, for [metrics] listen and [state] dir (default {DEFAULT_CONFIG_PATH} if it exists).")
@click.option("--listen", default=None, metavar="HOST:PORT", help=f"Where the daemon serves /healthz (default {DEFAULT_METRICS_LISTEN}).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, envvar="RAILWATCH_STATE_DIR",
              help=f"The daemon's state directory (default {DEFAULT_STATE_DIR}); read only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {health, store}.")
def status(config_path: Optional[str], listen: Optional[str], state_dir: Optional[str], as_json: bool) -> None:
    """How the running agent is doing: its /healthz (sources and their lag, detectors, sinks)
    and the incident store (open incidents, outbox backlog per sink), read only.

    \b
    Exit status: 0 ok, 1 degraded, 2 failing or not reachable.
    """
    address, state = _settings(config_path, listen, state_dir)
    if address is None:
        health: Dict[str, Any] = {"status": "unreachable", "reasons": ["[metrics] listen is off: no /healthz to ask"]}
    else:
        health = fetch_health(*address)
    # the running daemon knows its state dir best, unless --state-dir says otherwise
    store = read_store(state if state_dir else str(health.get("state_dir") or state))
    if as_json:
        click.echo(json.dumps({"health": health, "store": store}, indent=2, ensure_ascii=False))
    else:
        click.echo(render(health, store), nl=False)
    sys.exit(EXIT_BY_STATUS.get(str(health.get("status")), 2))
