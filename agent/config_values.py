"""Helpers of agent.config: the one validator, the checks bounds cannot say, masking.

``table(cls, raw, path, errors, checks)`` (from ``agent.settings``, where the bounds are
declared) builds a dataclass from a TOML table, one error line per problem with its
dotted path. ``checks`` here are the value rules that are not ranges or choices
(``regex``, ``http_url``, ``listen_problem``…): each returns "" when the value is fine,
else the problem.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from agent.settings import suggest, table  # noqa: F401 - the one validator, re-exported for agent.config


def has(data: Mapping[str, Any], *keys: str) -> bool:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    return ""


def http_url(v: str) -> str:
    return "" if v.startswith(("http://", "https://")) else "expected an http:// or https:// URL"


def scheme(*schemes: str) -> Callable[[str], str]:
    return lambda v: "" if v.startswith(schemes) else f"expected a URL starting with {' or '.join(schemes)}"


# /metrics and /healthz. Not 9394: that is prometheus_exporter's default, the Ruby exporter
# many Rails hosts already run. 9100-9999 is fully allocated on Prometheus's default-port
# list, so any port there is some exporter's; 19394 is outside that range (README, "Its own health").
DEFAULT_METRICS_LISTEN = "127.0.0.1:19394"


def split_listen(text: str) -> Optional[Tuple[str, int]]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def listen_problem(v: str) -> str:
    return "" if v == "off" or split_listen(v) is not None else f"expected HOST:PORT (e.g. {DEFAULT_METRICS_LISTEN}) or \"off\""


# ----------------------------------------------------------------------------- masking

SECRET_KEY = re.compile(r"token|secret|passw|routing_key|api_key|(?:^|_)key$", re.I)


def mask(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v, key) for v in value]
    if isinstance(value, str) and value:
        if SECRET_KEY.search(key):
            return "********"
        if "://" in value or "password=" in value:
            return mask_url(value, hide_path=key in ("url", "urls"))
    return value


def mask_url(value: str, hide_path: bool) -> str:
    value = re.sub(r"(password\s*=\s*)\S+", r"\1********", value)
    try:
        parts = urlsplit(value)
    except ValueError:
        return "********"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = (user.split(":")[0] + ":********@" if ":" in user else user + "@") + host
    path = "/********" if hide_path and parts.path not in ("", "/") else parts.path
    query = "********" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))
