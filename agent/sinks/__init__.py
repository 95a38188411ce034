"""Incident sinks: each type's options as a typed settings dataclass, and the one lookup that builds them.

    TYPES[type] -> (settings class, sink class)
    parse_sink(name, table, errors) -> SinkConfig       validated once, at config parse
    make_sink(config, state_dir, session, clock) -> Sink
    build_sink(type, name, options, session, clock)     both at once (tests, tools)

Each sink module declares its options with ``agent.settings.setting`` beside the fields
(secrets ``secret=True``: never echoed in an error, masked by ``config show``); the one
validator checks them, so errors read ``sinks.<name>.<key>: …`` like every other table.

Options (all sinks that talk HTTP also take ``timeout`` seconds and ``ca_file``; TLS
verification cannot be turned off):

    directory     path ("" = <state dir>/incidents)
    webhook       url (required), secret, attach_bundle (false), headers {}
    pagerduty     routing_key (required, 32 chars), url, source, component, group, bundle_url, client_url,
                  dedup_scope ("host": <fingerprint>@<host>, or "fleet")
    alertmanager  url or urls (required), runbook_url, generator_url, bundle_url, labels {}, headers {},
                  expire_after_s (900), refresh_interval_s (60)
    slack         url (required), bundle_url, mention

``bundle_url`` is a template (``{id}``, ``{fingerprint}``, ``{host}``) for where the
operator publishes bundles; a bundle store's pre-signed link (``Incident.bundle_url``)
takes precedence; without either, sinks name the bundle by host and path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.clock import Clock
from agent.settings import bounds_of, table
from agent.sinks.alertmanager import AlertmanagerSettings, AlertmanagerSink
from agent.sinks.base import ACCEPTED, PERMANENT, RETRY, DeliveryResult, Sink
from agent.sinks.directory import DirectorySettings, DirectorySink
from agent.sinks.pagerduty import PagerDutySettings, PagerDutySink
from agent.sinks.slack import SlackSettings, SlackSink
from agent.sinks.webhook import WebhookSettings, WebhookSink

__all__ = [
    "ACCEPTED", "KINDS", "PERMANENT", "RETRY", "TYPES", "AlertmanagerSink", "DeliveryResult", "DirectorySink",
    "PagerDutySink", "Sink", "SinkConfig", "SlackSink", "WebhookSink", "build_sink", "build_sinks", "default_sinks",
    "make_sink", "parse_sink", "sinks_from_config",
]

TYPES: Dict[str, Tuple[type, Any]] = {
    "directory": (DirectorySettings, DirectorySink),
    "webhook": (WebhookSettings, WebhookSink),
    "pagerduty": (PagerDutySettings, PagerDutySink),
    "alertmanager": (AlertmanagerSettings, AlertmanagerSink),
    "slack": (SlackSettings, SlackSink),
}
KINDS = tuple(TYPES)
MASK = "********"


@dataclass(frozen=True)
class SinkConfig:
    """One ``[sinks.<name>]`` table, validated: its type and that type's settings."""

    name: str
    type: str
    settings: Any  # an instance of TYPES[type][0]

    def table(self) -> Dict[str, Any]:
        """The options as a plain table (``config show``), secrets masked."""
        out: Dict[str, Any] = {"type": self.type}
        for f in fields(self.settings):
            value = getattr(self.settings, f.name)
            value = dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else value
            out[f.name] = MASK if bounds_of(f).secret and value else value
        return out


def parse_sink(name: str, raw: Any, errors: List[str]) -> Optional[SinkConfig]:
    """Validate one ``[sinks.<name>]`` table; each problem goes to ``errors`` as ``sinks.<name>.<key>: …``."""
    where = f"sinks.{name}"
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: expected a table")
        return None
    kind = raw.get("type", raw.get("kind"))
    if kind not in TYPES:
        errors.append(f"{where}.type: unknown sink type; choose from: {', '.join(KINDS)}")
        return None
    settings_type = TYPES[kind][0]
    before = len(errors)
    options = {k: v for k, v in raw.items() if k not in ("type", "kind")}
    settings = table(settings_type, options, where, errors, getattr(settings_type, "CHECKS", {}))
    if settings is not None and len(errors) == before and hasattr(settings, "problems"):
        errors.extend(f"{where}.{key}: {problem}" for key, problem in settings.problems())
    return SinkConfig(name, kind, settings) if len(errors) == before else None


def make_sink(config: SinkConfig, state_dir: Optional[str] = None, session: Any = None,
              clock: Optional[Clock] = None) -> Sink:
    """The sink of a validated config; a directory sink without ``path`` writes under ``<state_dir>/incidents``."""
    sink_type = TYPES[config.type][1]
    if sink_type is DirectorySink:
        path = config.settings.path or (os.path.join(state_dir, "incidents") if state_dir else "")
        if not path:
            raise ValueError(f"sinks.{config.name}.path: required")
        return DirectorySink(config.name, path, clock=clock)
    return sink_type.from_settings(config.name, config.settings, session=session, clock=clock)  # type: ignore[no-any-return]


def build_sink(kind: str, name: str, options: Mapping[str, Any], session: Any = None, clock: Optional[Clock] = None) -> Sink:
    """Validate ``options`` for a sink of type ``kind`` and build it; ValueError lists every problem."""
    errors: List[str] = []
    config = parse_sink(name, dict(options, type=kind), errors)
    if config is None:
        raise ValueError("; ".join(errors))
    return make_sink(config, session=session, clock=clock)


def default_sinks(state_dir: str, clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """With no configured sink: the directory sink under ``<state_dir>/incidents``."""
    return {"local": DirectorySink("local", os.path.join(state_dir, "incidents"), clock=clock)}


def build_sinks(configs: Sequence[SinkConfig], state_dir: str, session: Any = None,
                clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """The sinks of a parsed config (``Config.sinks``); the default if there are none."""
    if not configs:
        return default_sinks(state_dir, clock)
    return {c.name: make_sink(c, state_dir, session=session, clock=clock) for c in configs}


def sinks_from_config(tables: Mapping[str, Any], state_dir: str, session: Any = None,
                      clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """Sinks from raw ``[sinks.<name>]`` tables (validated here); the default if none."""
    errors: List[str] = []
    configs = [parse_sink(name, options, errors) for name, options in tables.items()]
    if errors:
        raise ValueError("; ".join(errors))
    return build_sinks([c for c in configs if c is not None], state_dir, session=session, clock=clock)
