"""Writing TOML through tomli-w: quoting, escapes and non-ASCII keys are the library's job.

``dumps`` writes whole documents (``railwatch config show``, the e2e tests' configs);
``value`` and ``key`` write one inline value or key for the writers that keep comments
beside their keys (``railwatch init-config``, packaging/gen_example_config.py).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import tomli_w


def dumps(data: Mapping[str, Any]) -> str:
    """A TOML document for plain tables (strings, numbers, booleans, lists, tables)."""
    return tomli_w.dumps(_without_none(data))


def key(name: str) -> str:
    """One key, bare when TOML allows it, quoted and escaped otherwise."""
    return tomli_w.dumps({name: 0})[: -len(" = 0\n")]


def value(item: Any) -> str:
    """One value on a single line: arrays and tables inline (tomli-w breaks arrays over lines)."""
    if isinstance(item, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in _without_none(item).items()) + " }" if item else "{}"
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(v) for v in item if v is not None) + "]"
    return tomli_w.dumps({"v": item})[len("v = "):].rstrip("\n")


def _without_none(table: Mapping[str, Any]) -> Dict[str, Any]:
    """TOML has no null: an unset (None) key is left out, which reads back as unset."""
    out: Dict[str, Any] = {}
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            v = _without_none(v)
        elif isinstance(v, (list, tuple)):
            v = [_without_none(x) if isinstance(x, Mapping) else x for x in v if x is not None]
        out[k] = v
    return out
