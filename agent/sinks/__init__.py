"""Incident sinks and the one factory the config loader calls.

    build_sink(kind, name, options, session=None, clock=None) -> Sink

``kind`` is one of ``KINDS``; ``options`` is the sink's table from the config (without
``type``). Bad options raise ``ValueError("sinks.<name>.<key>: …")`` listing every
problem at once; values are never echoed (they are often secrets).

Options (all sinks that talk HTTP also take ``timeout`` seconds and ``ca_file``; TLS
verification cannot be turned off):

    directory     path (required)
    webhook       url (required), secret, attach_bundle (false), headers {}
    pagerduty     routing_key (required, 32 chars), url, source, component, group, bundle_url, client_url
    alertmanager  url or urls (required), runbook_url, generator_url, bundle_url, labels {}, headers {},
                  expire_after (900 s), refresh_interval (60 s)
    slack         url (required), bundle_url, mention

``bundle_url`` is a template (``{id}``, ``{fingerprint}``, ``{host}``) for where the
operator publishes bundles; without it, sinks name the bundle by host and path.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from agent.clock import Clock
from agent.sinks.alertmanager import AlertmanagerSink
from agent.sinks.base import DEFAULT_TIMEOUT, ACCEPTED, PERMANENT, RETRY, DeliveryResult, Options, Sink
from agent.sinks.directory import DirectorySink
from agent.sinks.pagerduty import EVENTS_URL, PagerDutySink
from agent.sinks.slack import SlackSink
from agent.sinks.webhook import WebhookSink

__all__ = [
    "ACCEPTED", "KINDS", "PERMANENT", "RETRY", "AlertmanagerSink", "DeliveryResult", "DirectorySink", "PagerDutySink",
    "Sink", "SlackSink", "WebhookSink", "build_sink", "default_sinks", "sinks_from_config",
]

KINDS = ("directory", "webhook", "pagerduty", "alertmanager", "slack")


def build_sink(kind: str, name: str, options: Mapping[str, Any], session: Any = None, clock: Optional[Clock] = None) -> Sink:
    """Validate ``options`` and build the sink (see the module docstring for options)."""
    if kind not in KINDS:
        raise ValueError(f"sinks.{name}.type: unknown sink type; choose from: {', '.join(KINDS)}")
    o = Options(name, options)
    http: Dict[str, Any] = {}
    if kind != "directory":
        http = {"session": session, "clock": clock, "timeout": o.number("timeout", DEFAULT_TIMEOUT, 0.1, 300),
                "verify": o.tls_verify()}
    sink: Any = None
    if kind == "directory":
        path = o.string("path", required=True)
        o.finish()
        sink = DirectorySink(name, path or "", clock=clock)
    elif kind == "webhook":
        url, secret = o.url("url", required=True), o.string("secret")
        attach, headers = o.boolean("attach_bundle", False), o.table("headers")
        o.finish()
        sink = WebhookSink(name, url or "", secret=secret, attach_bundle=attach, headers=headers, **http)
    elif kind == "pagerduty":
        key = o.string("routing_key", required=True)
        if key is not None and (len(key) != 32 or not key.isalnum()):
            o.errors.append(f"sinks.{name}.routing_key: expected a 32-character integration key")
        url = o.url("url", EVENTS_URL)
        rest = {k: o.string(k) for k in ("source", "component", "group", "bundle_url")}
        client_url = o.url("client_url")
        o.finish()
        sink = PagerDutySink(name, key or "", url=url or EVENTS_URL, client_url=client_url, **rest, **http)  # type: ignore[arg-type]
    elif kind == "alertmanager":
        urls = o.strings("urls")
        one = o.url("url")
        if one:
            urls.insert(0, one)
        if not urls:
            o.errors.append(f"sinks.{name}.url: required (or urls)")
        if any(not u.startswith(("http://", "https://")) for u in urls):
            o.errors.append(f"sinks.{name}.urls: expected http:// or https:// URLs")
        rest = {k: o.string(k) for k in ("runbook_url", "generator_url", "bundle_url")}
        labels, headers = o.table("labels"), o.table("headers")
        expire = o.number("expire_after", 900.0, 60.0)
        refresh = o.number("refresh_interval", 60.0, 5.0)
        if refresh >= expire:
            o.errors.append(f"sinks.{name}.refresh_interval: must be shorter than expire_after")
        o.finish()
        sink = AlertmanagerSink(name, urls, labels=labels, headers=headers, expire_after=expire, refresh_interval=refresh,
                                **rest, **http)  # type: ignore[arg-type]
    elif kind == "slack":
        url = o.url("url", required=True)
        bundle_url, mention = o.string("bundle_url"), o.string("mention")
        o.finish()
        sink = SlackSink(name, url or "", bundle_url=bundle_url, mention=mention, **http)
    return sink  # type: ignore[no-any-return]


def default_sinks(state_dir: str, clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """With no configured sink: the directory sink under ``<state_dir>/incidents``."""
    return {"local": DirectorySink("local", os.path.join(state_dir, "incidents"), clock=clock)}


def sinks_from_config(table: Mapping[str, Any], state_dir: str, session: Any = None,
                      clock: Optional[Clock] = None) -> Dict[str, Sink]:
    """Sinks from a config's ``[sinks.<name>]`` tables (each with ``type = "…"``); the default if none.

    A directory sink without ``path`` writes under ``<state_dir>/incidents``.
    """
    if not table:
        return default_sinks(state_dir, clock)
    sinks: Dict[str, Sink] = {}
    errors = []
    for name, options in table.items():
        if not isinstance(options, Mapping):
            errors.append(f"sinks.{name}: expected a table")
            continue
        kind = options.get("type", options.get("kind"))
        opts = {k: v for k, v in options.items() if k not in ("type", "kind")}
        if kind == "directory":
            opts.setdefault("path", os.path.join(state_dir, "incidents"))
        try:
            sinks[name] = build_sink(str(kind), name, opts, session=session, clock=clock)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))
    return sinks
