"""Helpers of agent.config: TOML tables into frozen dataclasses, value checks, masking.

``table(cls, raw, path, errors, checks)`` builds a dataclass from a TOML table, adding
one error per unknown key (with a "did you mean") or value of the wrong type, each
named by its dotted path; ``checks`` add value rules (``positive``, ``one_of``…) that
return "" when the value is fine, else the problem.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit


def table(cls: Any, raw: Any, path: str, errors: List[str], checks: Optional[Dict[str, Callable[[Any], str]]] = None,
          required: Tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a TOML table: unknown keys and wrong types become errors."""
    if raw is None:
        return cls() if not required else None
    if not isinstance(raw, dict):
        errors.append(f"{path}: expected a table")
        return cls() if not required else None
    known = {f.name: f for f in fields(cls)}
    kwargs: Dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key not in known:
            errors.append(f"{where}: unknown key{suggest(key, known)}")
            continue
        f = known[key]
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else "")  # type: ignore[misc]
        ok, converted = coerce(value, default)
        if not ok:
            errors.append(f"{where}: expected {type_name(default)}, got {value!r}")
            continue
        problem = (checks or {}).get(key, lambda v: "")(converted)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        kwargs[key] = converted
    missing = [k for k in required if k not in kwargs and k not in raw]
    for key in missing:
        errors.append(f"{path}.{key}: required")
    if any(k not in kwargs for k in required):
        return None
    return cls(**kwargs)


def coerce(value: Any, default: Any) -> Tuple[bool, Any]:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool), value
    if isinstance(default, int) and not isinstance(default, bool):
        return isinstance(value, int), value
    if isinstance(default, float):
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    if isinstance(default, str):
        return isinstance(value, str), value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            return False, value
        kind = type(default[0]) if default else str
        return all(isinstance(v, kind) and not isinstance(v, bool) for v in value), tuple(value)
    if isinstance(default, Mapping):
        ok = isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
        return ok, {k: float(v) for k, v in value.items()} if ok else value
    if default is None or is_dataclass(default):
        return True, value
    return isinstance(value, type(default)), value


def type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "an integer" if isinstance(default, int) else "a number"
    if isinstance(default, tuple):
        return "a list of " + ("integers" if default and isinstance(default[0], int) else "strings")
    if isinstance(default, Mapping):
        return "a table of numbers"
    return "a string"


def suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def has(data: Mapping[str, Any], *keys: str) -> bool:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def positive(v: float) -> str:
    return "" if v > 0 else "expected a number > 0"


def at_least(n: int) -> Callable[[int], str]:
    return lambda v: "" if v >= n else f"expected at least {n}"


def one_of(choices: Tuple[str, ...]) -> Callable[[str], str]:
    return lambda v: "" if v in choices else f"expected one of: {', '.join(c for c in choices if c)}"


def regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    return ""


def ports(v: Tuple[int, ...]) -> str:
    return "" if all(0 < p < 65536 for p in v) else "expected port numbers 1-65535"


def http_url(v: str) -> str:
    return "" if v.startswith(("http://", "https://")) else "expected an http:// or https:// URL"


def scheme(*schemes: str) -> Callable[[str], str]:
    return lambda v: "" if v.startswith(schemes) else f"expected a URL starting with {' or '.join(schemes)}"


def split_listen(text: str) -> Optional[Tuple[str, int]]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def listen_problem(v: str) -> str:
    return "" if v == "off" or split_listen(v) is not None else "expected HOST:PORT (e.g. 127.0.0.1:9394) or \"off\""


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
