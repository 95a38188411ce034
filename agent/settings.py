"""Settings declared once: a field's default and its bounds side by side, and the one validator.

Every typed table the agent reads — detector settings, the incident lifecycle, the
daemon's own tables, sink options — declares its fields with ``setting()``:

    min_repeats: int = setting(5, min=1)                 # a count ≥ 1
    spike_share: float = setting(0.5, min=0.0, max=1.0)  # a share in 0–1
    window_s: float = setting(60.0, above=0.0)           # a duration > 0 (and finite)
    mode: str = setting("end", choices=("end", "beginning"))
    url: str = setting("", required=True, secret=True)  # must be given, never echoed

``table(cls, raw, path, errors)`` is the one validator: it builds ``cls`` from a TOML
table, checking types (from the field's annotation), these bounds, that every number is
finite, and unknown keys (with a "did you mean"), and adds one line per problem to
``errors``, each named by its dotted path. A value is therefore checked and worded the
same way wherever it comes from (``config check``, ``run``, ``scan --config``). Secrets
(``secret=True``) may instead come from ``<key>_file = "/path"`` or ``"env:NAME"``; a
duration key (``*_s``) takes seconds or ``"30s"``, ``"5m"``, ``"1h"``, ``"2h30m"``.
Detectors may import this module: it is a leaf (no import of the rest of the agent).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

BOUNDS_KEY = "railwatch.bounds"


@dataclass(frozen=True)
class Bounds:
    min: Optional[float] = None  # value >= min
    max: Optional[float] = None  # value <= max
    above: Optional[float] = None  # value > above (durations: above=0.0)
    choices: Tuple[Any, ...] = ()  # the value (or each item of a tuple) must be one of these
    secret: bool = False  # masked by `config show`; never echoed in an error
    required: bool = False  # must be given (a string: non-empty)
    was: Tuple[str, ...] = ()  # earlier names of the key, still read (with a deprecation warning)


def setting(default: Any, *, min: Optional[float] = None, max: Optional[float] = None,
            above: Optional[float] = None, choices: Tuple[Any, ...] = (), secret: bool = False,
            required: bool = False, was: Tuple[str, ...] = ()) -> Any:
    """A dataclass field with a default and the bounds the validator enforces."""
    metadata = {BOUNDS_KEY: Bounds(min, max, above, tuple(choices), secret, required, tuple(was))}
    if isinstance(default, (dict, list)):  # mutable defaults need a factory
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bounds_of(f: "dataclasses.Field[Any]") -> Bounds:
    return f.metadata.get(BOUNDS_KEY) or Bounds()


# ----------------------------------------------------------------------------- the validator

Check = Callable[[Any], str]  # "" when the value is fine, else the problem


def table(cls: Any, raw: Any, path: str, errors: List[str], checks: Optional[Dict[str, Check]] = None,
          required: Tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a TOML table; every problem becomes an ``errors`` line.

    ``checks`` add value rules that bounds cannot say (a regex, a URL). Returns None when a
    required key is missing or wrong, else ``cls`` built from the valid keys (defaults for
    the rest), so that one run reports every problem at once.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    must = set(required) | {n for n, f in fields.items() if bounds_of(f).required}
    if raw is None:
        raw = {}
    elif not isinstance(raw, Mapping):
        errors.append(f"{path}: expected a table")
        return None if must else cls()
    hints = _hints(cls)
    kwargs: Dict[str, Any] = {}
    failed = False
    raw = renamed_keys(raw, fields, path, errors)
    raw = resolve_secrets(raw, fields, path, errors)
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        f = fields.get(key)
        if f is None or not f.init:
            errors.append(f"{where}: unknown option{suggest(str(key), fields)}")
            continue
        if key.endswith("_s") and isinstance(value, str):  # durations: 30s, 5m, 1h as well as seconds
            from agent.timeparse import parse_duration  # a leaf module too

            try:
                value = parse_duration(value.strip())
            except ValueError:
                errors.append(f"{where}: expected a number, got {value!r} (seconds, or a duration such as 30s, 5m, 1h)")
                failed = failed or key in must
                continue
        problem, converted = check_value(value, hints.get(key, Any), _default(f), bounds_of(f))
        if not problem:
            problem = (checks or {}).get(key, lambda v: "")(converted)
        if problem:
            errors.append(f"{where}: {problem}")
            failed = failed or key in must
            continue
        kwargs[key] = converted
    for key in sorted(must - set(raw)):
        errors.append(f"{path}.{key}: required")
        failed = True
    return None if failed and must else cls(**kwargs)


_WARNED_RENAMES: set = set()


def renamed_keys(raw: Mapping[str, Any], fields: Mapping[str, Any], path: str, errors: List[str]) -> Dict[str, Any]:
    """Keys under an earlier name (``cooldown`` for ``cooldown_s``) read as the current one, with
    one deprecation warning per key and process; both names at once is an error."""
    old = {o: name for name, f in fields.items() for o in bounds_of(f).was}
    if not old or not any(k in old for k in raw):
        return dict(raw)
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        name = old.get(key)
        if name is None:
            out[key] = value
            continue
        where = f"{path}.{key}" if path else str(key)
        if name in raw:
            errors.append(f"{where}: the old name of {name}; set only {name}")
            continue
        if where not in _WARNED_RENAMES:
            _WARNED_RENAMES.add(where)
            import logging

            logging.getLogger("railwatch.config").warning(
                "%s is deprecated: call it %s (durations end in _s; the old name is still read)", where, name)
        out[name] = value
    return out


def resolve_secrets(raw: Mapping[str, Any], fields: Mapping[str, Any], path: str, errors: List[str]) -> Dict[str, Any]:
    """Secrets out of the config file: ``<key>_file = "/path"`` (the file's text, trailing newline
    stripped, as Alertmanager's ``*_file``) and ``"env:NAME"`` (an environment variable), for
    every field declared ``secret=True``. Problems go to ``errors`` by dotted path; the value
    itself is never echoed."""
    import os

    out: Dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        base = key[:-5] if isinstance(key, str) and key.endswith("_file") else None
        if base is not None and key not in fields and base in fields and bounds_of(fields[base]).secret:
            if base in raw:
                errors.append(f"{where}: give {base} or {key}, not both")
                continue
            if not isinstance(value, str) or not value:
                errors.append(f"{where}: expected the path of a file holding {base}")
                continue
            try:
                with open(value, encoding="utf-8") as fh:
                    text = fh.read().rstrip("\r\n")
                mode = os.stat(value).st_mode
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(f"{where}: cannot read {value} ({getattr(exc, 'strerror', None) or type(exc).__name__})")
                continue
            if mode & 0o004:
                import logging

                logging.getLogger("railwatch.config").warning(
                    "%s: %s is world-readable; a secret file should be 0600 or 0640 (chmod o-r %s)", where, value, value)
            out[base] = text
            continue
        if key in fields and bounds_of(fields[key]).secret:
            value = _from_env(value, where, errors, os.environ)
        out[key] = value
    return out


def _from_env(value: Any, where: str, errors: List[str], environ: Mapping[str, str]) -> Any:
    """``"env:NAME"`` → the variable's value (in a string, a list or a table of strings)."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in environ:
            errors.append(f"{where}: environment variable {name} is not set")
            return value
        return environ[name]
    if isinstance(value, (list, tuple)):
        return [_from_env(v, where, errors, environ) for v in value]
    if isinstance(value, Mapping):
        return {k: _from_env(v, f"{where}.{k}", errors, environ) for k, v in value.items()}
    return value


def check_value(value: Any, hint: Any, default: Any, b: Bounds) -> Tuple[str, Any]:
    """("", the converted value) or (the problem, value); values of secrets are never echoed."""
    kind, item = _kind(hint, default)
    got = "" if b.secret else f", got {value!r}"
    if kind == "tuple":
        if isinstance(value, (list, tuple)):
            out = []
            for v in value:
                problem, v = _scalar(v, item, b, got="")
                if problem:
                    return f"expected a list of {_plural(item)}" + _range_text(b, item, each=True) + got, value
                out.append(v)
            return "", tuple(out)
        return f"expected a list of {_plural(item)}{got}", value
    if kind == "map":
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            out_map = {}
            for k, v in value.items():
                problem, v = _scalar(v, item, b, got="")
                if problem:
                    return f"expected a table of {_plural(item)}" + _range_text(b, item, each=True) + got, value
                out_map[k] = v
            return "", out_map
        return f"expected a table of {_plural(item)}{got}", value
    return _scalar(value, kind, b, got)


def _scalar(value: Any, kind: str, b: Bounds, got: str) -> Tuple[str, Any]:
    if kind == "bool":
        return ("", value) if isinstance(value, bool) else (f"expected true or false{got}", value)
    if kind in ("int", "float"):
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind == "float" else int)
        if not ok:
            return f"expected {_singular(kind)}{got}", value
        if kind == "float":
            value = float(value)
            if not math.isfinite(value):
                return f"expected a finite number{got}", value
        if (b.min is not None and value < b.min) or (b.max is not None and value > b.max) or (
                b.above is not None and value <= b.above):
            return "expected " + _range_text(b, kind, value) + got, value
    elif kind == "str":
        if not isinstance(value, str):
            return f"expected a string{got}", value
        if b.required and not value.strip():
            return "expected a non-empty string", value
    if b.choices and value not in b.choices:
        return f"expected one of: {', '.join(str(c) for c in b.choices if c != '')}{got}", value
    return "", value


def _range_text(b: Bounds, kind: str, value: Any = None, each: bool = False) -> str:
    """The broken bound in words: "at least 1", "at most 1", "a number > 0".

    ``each`` words the whole range for the items of a list or table: " each between 1 and 65535".
    """
    if each:
        if b.min is not None and b.max is not None:
            return f" each between {_num(b.min)} and {_num(b.max)}"
        if b.min is not None:
            return f" each at least {_num(b.min)}"
        if b.max is not None:
            return f" each at most {_num(b.max)}"
        return f" each > {_num(b.above)}" if b.above is not None else ""
    if b.min is not None and value < b.min:
        return f"at least {_num(b.min)}"
    if b.max is not None and value > b.max:
        return f"at most {_num(b.max)}"
    return f"{_singular(kind)} > {_num(b.above)}"


def _num(x: Any) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _kind(hint: Any, default: Any) -> Tuple[str, str]:
    """("bool"|"int"|"float"|"str"|"tuple"|"map"|"any", the item kind of a tuple or map)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]: TOML has no null, so X
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0], default) if len(rest) == 1 else ("any", "")
    if origin in (tuple, list):
        return "tuple", _kind(args[0] if args else Any, None)[0]
    if origin in (dict, collections.abc.Mapping):
        return "map", _kind(args[1] if len(args) > 1 else Any, None)[0]
    for name, t in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if hint is t:
            return name, ""
    if hint is Any and default is not None and not isinstance(default, (tuple, Mapping)):
        return _kind(type(default), None)
    return "any", ""


def _hints(cls: Any) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the defaults' types
        return {}


def _default(f: "dataclasses.Field[Any]") -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _singular(kind: str) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}.get(kind, "a value")


def _plural(kind: str) -> str:
    return {"bool": "true/false values", "int": "integers", "float": "numbers", "str": "strings"}.get(kind, "values")


def suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
