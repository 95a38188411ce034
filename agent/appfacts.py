"""Read what a Rails app's own config says about its connection capacity.

``load_app_facts(root, env)`` reads, from a Rails app root (or a Capistrano deploy
root, where the live release is ``root/current``):

* ``config/database.yml``, production section: ``pool`` (Rails 8.1: ``max_connections``)
  and ``checkout_timeout``. ``default: &default`` anchors with ``<<: *default`` merges,
  ERB such as ``<%= ENV.fetch("RAILS_MAX_THREADS") { 5 } %>`` and multi-database
  ``production: primary: …`` (primary is taken). ``DATABASE_URL``'s ``pool=`` wins, as in Rails.
* ``config/puma.rb``: ``threads min, max`` (through ``threads_count = ENV.fetch(…)``
  assignments) and ``workers N`` / ``WEB_CONCURRENCY``.
* ``config/sidekiq.yml``: ``:concurrency:`` / ``concurrency:``, with the
  ``production:`` override Sidekiq applies.
* ``REVISION``: the deployed revision, its mtime as the deploy time.

No YAML library (not a dependency) and no Ruby: a line-based reader covers the
shapes Rails and Sidekiq generate. ERB and Ruby are evaluated only for the small
expression language those files use (numbers, strings, ``ENV.fetch``, ``ENV[]``,
``||``, ``Integer()``, ``.to_i``, + - * /); anything else leaves the fact unknown.
Environment values come from the ``env`` mapping the caller passes (the CLI passes
the app's environment if it knows it); when an ERB default was used because a
variable is unset, a note says so, since the app's real environment may differ.
Nothing here raises on a bad or missing file: what could not be read becomes a note.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from detectors.base import AppFacts

__all__ = ["load_app_facts"]

MAX_CONFIG_BYTES = 1_000_000  # a config file bigger than this is not a config file


class _Unknown(Exception):
    """The expression uses Ruby this evaluator does not model."""


# --------------------------------------------------------------------------- Ruby expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<sym>:[A-Za-z_]\w*)|(?P<name>[A-Za-z_]\w*[?!]?)|(?P<op>\|\||&&|==|!=|>=|<=|[-+*/()\[\]{},.<>]))"
)


def _tokens(text: str) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _Unknown(text[pos:])
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _RubyExpr:
    """Recursive-descent evaluator for the Ruby found in database.yml ERB and puma.rb."""

    def __init__(self, env: Mapping[str, str], scope: Dict[str, Any], unset: List[str]) -> None:
        self.env, self.scope, self.unset = env, scope, unset
        self.toks: List[Tuple[str, str]] = []
        self.i = 0

    def evaluate(self, text: str) -> Any:
        self.toks, self.i = _tokens(text), 0
        value = self._compare()
        if self.i != len(self.toks):
            raise _Unknown(text)
        return value

    def _peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def _take(self, expected: Optional[str] = None) -> Tuple[str, str]:
        if self.i >= len(self.toks) or (expected is not None and self.toks[self.i][1] != expected):
            raise _Unknown(expected or "end")
        self.i += 1
        return self.toks[self.i - 1]

    def _compare(self) -> Any:
        left = self._or()
        if self._peek() in ("==", "!=", ">", "<", ">=", "<="):
            op = self._take()[1]
            right = self._or()
            a, b = (_number(left), _number(right)) if op not in ("==", "!=") else (left, right)
            if a is None or b is None:
                raise _Unknown(op)
            return {"==": a == b, "!=": a != b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
        return left

    def _or(self) -> Any:
        value = self._sum()
        while self._peek() == "||":
            self._take()
            other = self._sum()
            value = value if value is not None and value is not False else other
        return value

    def _sum(self) -> Any:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            a, b = _number(value), _number(self._product())
            if a is None or b is None:
                raise _Unknown(op)
            value = a + b if op == "+" else a - b
        return value

    def _product(self) -> Any:
        value = self._postfix()
        while self._peek() in ("*", "/"):
            op = self._take()[1]
            a, b = _number(value), _number(self._postfix())
            if a is None or b is None or (op == "/" and b == 0):
                raise _Unknown(op)
            value = a * b if op == "*" else (a // b if isinstance(a, int) and isinstance(b, int) else a / b)
        return value

    def _postfix(self) -> Any:
        value = self._primary()
        while self._peek() == ".":
            self._take()
            method = self._take()[1]
            if method == "to_i":
                value = _ruby_to_i(value)
            elif method == "to_f":
                n = _number(value)
                value = float(n) if n is not None else float(_ruby_to_i(value))
            elif method in ("to_s", "strip", "freeze"):
                value = "" if value is None else value
            else:
                raise _Unknown(method)
        return value

    def _args(self) -> List[Any]:
        self._take("(")
        args: List[Any] = []
        while self._peek() != ")":
            args.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        return args

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return text[1:-1]
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if text == "-":
            n = _number(self._postfix())
            if n is None:
                raise _Unknown("-")
            return -n
        if text == "nil":
            return None
        if text == "ENV":
            return self._env()
        if text in ("Integer", "Float"):
            args = self._args()
            n = _number(args[0]) if args else None
            if n is None:
                raise _Unknown(text)
            return int(n) if text == "Integer" else float(n)
        if kind == "name" and text in self.scope:
            return self.scope[text]
        raise _Unknown(text)

    def _env(self) -> Any:
        if self._peek() == "[":
            self._take("[")
            name = self._or()
            self._take("]")
            return self._lookup(str(name), None, has_default=False)
        self._take(".")
        self._take("fetch")
        args = self._args()
        if not args:
            raise _Unknown("ENV.fetch")
        default, has_default = (args[1], True) if len(args) > 1 else (None, False)
        if self._peek() == "{":
            # the block runs only when the variable is unset, as in Ruby (it may call
            # things this evaluator does not know, such as Concurrent.processor_count)
            has_default = True
            if str(args[0]) in self.env:
                self._skip_block()
            else:
                self._take("{")
                default = self._or()
                self._take("}")
        return self._lookup(str(args[0]), default, has_default)

    def _skip_block(self) -> None:
        depth = 0
        while self.i < len(self.toks):
            text = self._take()[1]
            depth += {"{": 1, "}": -1}.get(text, 0)
            if depth == 0:
                return

    def _lookup(self, name: str, default: Any, has_default: bool) -> Any:
        if name in self.env:
            return self.env[name]
        self.unset.append(name)
        return default


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", value):
        return float(value) if "." in value else int(value)
    return None


def _ruby_to_i(value: Any) -> int:
    # Ruby's String#to_i reads leading digits and gives 0 otherwise; nil.to_i is 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    m = re.match(r"\s*(-?\d+)", value or "") if isinstance(value, str) else None
    return int(m.group(1)) if m else 0


_ERB = re.compile(r"<%=?-?(.*?)-?%>", re.S)


def _render_erb(text: str, evaluator: _RubyExpr) -> str:
    """Replace each ``<%= … %>`` by its value; raises _Unknown if one cannot be evaluated."""

    def one(m: "re.Match[str]") -> str:
        value = evaluator.evaluate(m.group(1).strip())
        return "" if value is None else str(value)

    return _ERB.sub(one, text)


# --------------------------------------------------------------------------- a YAML subset

class _Map:
    """A YAML block mapping; ``merges`` are the ``<<: *anchor`` maps, looked up after own keys."""

    def __init__(self) -> None:
        self.items: Dict[str, Any] = {}
        self.merges: List["_Map"] = []

    def get(self, key: str, depth: int = 0) -> Any:
        for k in (key, ":" + key):  # Sidekiq writes Ruby-symbol keys (":concurrency:")
            if k in self.items:
                return self.items[k]
        if depth < 10:  # a merge cycle must not loop forever
            for merged in self.merges:
                value = merged.get(key, depth + 1)
                if value is not None:
                    return value
        return None


_YAML_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|:?[^\s:#'"][^:]*?)\s*:(?:\s+(?P<value>.*))?$""")


def _strip_comment(text: str) -> str:
    """Cut a trailing `` # comment`` that is outside quotes and ERB tags."""
    quote = ""
    in_erb = False
    for i, ch in enumerate(text):
        if in_erb:
            in_erb = not text.startswith("%>", i)
        elif quote:
            quote = "" if ch == quote else quote
        elif text.startswith("<%", i):
            in_erb = True
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _read_yaml(text: str) -> _Map:
    root = _Map()
    anchors: Dict[str, _Map] = {}
    stack: List[Tuple[int, _Map]] = [(-1, root)]
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or stripped == "---":
            continue
        if stripped.startswith("<%") and not _YAML_KEY.match(stripped):
            continue  # an ERB control line (`<% if … %>`): both branches are read
        indent = len(raw) - len(raw.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        m = _YAML_KEY.match(stripped)
        if not m:
            continue
        key = m.group("key").strip("\"'")
        value = _strip_comment(m.group("value") or "")
        if key == "<<":
            for name in re.findall(r"\*([\w-]+)", value):
                if name in anchors:
                    parent.merges.append(anchors[name])
            continue
        if not value or re.fullmatch(r"&[\w-]+", value):
            child = _Map()
            if value:
                anchors[value[1:]] = child
            parent.items[key] = child
            stack.append((indent, child))
        elif value.startswith("*"):
            parent.items[key] = anchors.get(value[1:].strip())
        else:
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            parent.items[key] = value
    return root


# --------------------------------------------------------------------------- the three files

class _Reader:
    """Collects notes while reading one app; one instance per ``load_app_facts`` call."""

    def __init__(self, root: str, env: Mapping[str, str]) -> None:
        self.root, self.env = root, env
        self.notes: List[str] = []

    def text(self, rel: str) -> Optional[str]:
        path = os.path.join(self.root, rel)
        try:
            if os.path.getsize(path) > MAX_CONFIG_BYTES:
                self.notes.append(f"{rel}: larger than {MAX_CONFIG_BYTES} bytes, not read")
                return None
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            self.notes.append(f"{rel}: not found")
        except OSError as exc:
            self.notes.append(f"{rel}: cannot read ({exc.strerror or exc})")
        return None

    def scalar(self, rel: str, what: str, raw: Any, want: type) -> Optional[float]:
        """Evaluate a YAML scalar (maybe ERB) to a number, noting what was assumed."""
        if raw is None or isinstance(raw, _Map):
            return None
        unset: List[str] = []
        try:
            rendered = _render_erb(str(raw), _RubyExpr(self.env, {}, unset))
        except _Unknown:
            self.notes.append(f"{rel}: {what} is {raw!r}, which this reader cannot evaluate")
            return None
        number = _number(rendered)
        if number is None:
            self.notes.append(f"{rel}: {what} is {raw!r}, not a number")
            return None
        for name in unset:
            self.notes.append(f"{rel}: {what} depends on ENV {name}, unset here: took the default {number}")
        return want(number)

    def database(self) -> Tuple[Optional[int], Optional[float]]:
        rel = "config/database.yml"
        text = self.text(rel)
        pool: Optional[int] = None
        timeout: Optional[float] = None
        if text is not None:
            prod = _read_yaml(text).get("production")
            if not isinstance(prod, _Map):
                self.notes.append(f"{rel}: no production section")
            else:
                prod = self._primary(prod, rel)
                key = "max_connections" if prod.get("max_connections") is not None else "pool"
                pool = self.scalar(rel, f"production {key}", prod.get(key), int)  # type: ignore[assignment]
                timeout = self.scalar(rel, "production checkout_timeout", prod.get("checkout_timeout"), float)
                if prod.get(key) is None:
                    self.notes.append(f"{rel}: production has no pool/max_connections: Rails' default is 5")
        url_pool = _url_pool(self.env.get("DATABASE_URL", ""))
        if url_pool is not None:
            self.notes.append(f"DATABASE_URL sets pool={url_pool}, which Rails merges over database.yml")
            pool = url_pool
        return pool, timeout

    def _primary(self, prod: _Map, rel: str) -> _Map:
        own = ("adapter", "database", "url", "pool", "max_connections", "host")
        if any(prod.get(k) is not None for k in own):
            return prod
        primary = prod.get("primary")
        if isinstance(primary, _Map):
            return primary
        for name, child in prod.items.items():
            if isinstance(child, _Map):
                self.notes.append(f"{rel}: production has no primary database; read {name!r}")
                return child
        return prod

    def puma(self) -> Tuple[Optional[int], Optional[int]]:
        rel = "config/puma.rb"
        text = self.text(rel)
        if text is None:
            return None, None
        scope: Dict[str, Any] = {}
        max_threads: Optional[int] = None
        workers: Optional[int] = 0  # no `workers` line: Puma runs in single mode
        workers_raw = ""
        found_threads = False
        for raw in text.splitlines():
            line = _strip_comment(raw.strip())
            if not line:
                continue
            assign = re.match(r"^([a-z_]\w*)\s*=(?!=)\s*(.+)$", line)
            if assign:
                value = self._ruby(assign.group(2), scope)
                if value is not None:
                    scope[assign.group(1)] = value
                continue
            call = re.match(r"^(threads|workers)\b\s*(.+?)(?:\s+(if|unless)\s+(.+))?$", line)
            if not call:
                continue
            if call.group(3) and not self._condition(call.group(3), call.group(4), scope):
                continue
            args = [self._ruby(a, scope) for a in _split_args(_unwrap_parens(call.group(2)))]
            numbers = [_number(a) for a in args]
            if call.group(1) == "threads":
                found_threads = True
                max_threads = int(numbers[-1]) if numbers and numbers[-1] is not None else None
                if max_threads is None:
                    self.notes.append(f"{rel}: cannot evaluate `{line}`")
            else:
                workers = int(numbers[0]) if numbers and numbers[0] is not None else None
                workers_raw = line
        if not found_threads:
            self.notes.append(f"{rel}: no threads setting found")
        if workers is None:
            workers = self._workers_fallback(rel, text, workers_raw)
        return max_threads, workers

    def _workers_fallback(self, rel: str, text: str, line: str) -> Optional[int]:
        # The Rails 7.1+ template computes the count over several lines (`if … == "auto"`):
        # take WEB_CONCURRENCY, else the template's default for it.
        env_value = _number(self.env.get("WEB_CONCURRENCY", ""))
        if env_value is not None:
            return int(env_value)
        m = re.search(r"""ENV\.fetch\(\s*["']WEB_CONCURRENCY["']\s*(?:,\s*(\d+)\s*\)|\)\s*\{\s*(\d+)\s*\})""", text)
        if m:
            n = int(m.group(1) or m.group(2))
            self.notes.append(f"{rel}: workers depends on ENV WEB_CONCURRENCY, unset here: took the default {n}")
            return n
        why = "the number of CPUs" if "processor_count" in text else "not a plain number"
        self.notes.append(f"{rel}: cannot evaluate `{line}` ({why} when WEB_CONCURRENCY is unset)")
        return None

    def _ruby(self, expr: str, scope: Dict[str, Any]) -> Any:
        unset: List[str] = []
        try:
            return _RubyExpr(self.env, scope, unset).evaluate(expr)
        except (_Unknown, ValueError, TypeError):
            return None

    def _condition(self, word: str, expr: str, scope: Dict[str, Any]) -> bool:
        try:
            value = _RubyExpr(self.env, scope, []).evaluate(expr)
        except (_Unknown, ValueError, TypeError):
            return True  # cannot tell: assume the setting applies
        truthy = value is not None and value is not False
        return truthy if word == "if" else not truthy

    def sidekiq(self) -> Optional[int]:
        rel = "config/sidekiq.yml"
        if not os.path.exists(os.path.join(self.root, rel)):
            self.notes.append(f"{rel}: not found (Sidekiq's default concurrency is 10 up to 6.x, 5 from 7.0)")
            return None
        text = self.text(rel)
        if text is None:
            return None
        config = _read_yaml(text)
        prod = config.get("production")
        raw = prod.get("concurrency") if isinstance(prod, _Map) else None
        raw = raw if raw is not None else config.get("concurrency")
        if raw is None:
            self.notes.append(f"{rel}: no concurrency setting (Sidekiq's default is 10 up to 6.x, 5 from 7.0)")
            return None
        return self.scalar(rel, "concurrency", raw, int)  # type: ignore[return-value]

    def revision(self) -> Tuple[str, Optional[float]]:
        path = os.path.join(self.root, "REVISION")
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                first = fh.read(200).strip().splitlines()
            return (first[0].strip() if first else ""), os.stat(path).st_mtime
        except FileNotFoundError:
            self.notes.append("REVISION: not found (deploy time unknown)")
        except OSError as exc:
            self.notes.append(f"REVISION: cannot read ({exc.strerror or exc})")
        return "", None


def _split_args(text: str) -> List[str]:
    """Split a Ruby argument list on top-level commas."""
    args, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return [a for a in args if a]


def _unwrap_parens(text: str) -> str:
    """``(1, 5)`` -> ``1, 5`` when the parentheses enclose the whole argument list."""
    if not text.startswith("("):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[1:i] if i == len(text) - 1 else text
    return text


def _url_pool(url: str) -> Optional[int]:
    if "pool=" not in url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("pool", [])
    except ValueError:
        return None
    n = _number(values[0]) if values else None
    return int(n) if n is not None else None


def load_app_facts(root: str, env: Optional[Mapping[str, str]] = None) -> AppFacts:
    """Read an app's pool, thread and concurrency settings; never raises on bad files."""
    env = env if env is not None else {}
    if os.path.isdir(os.path.join(root, "current", "config")):
        root = os.path.join(root, "current")  # Capistrano: releases/…, current -> live release
    reader = _Reader(root, env)
    if not os.path.isdir(root):
        return AppFacts(root=root, notes=(f"{root}: not a directory",))
    pool, timeout = reader.database()
    max_threads, workers = reader.puma()
    concurrency = reader.sidekiq()
    revision, revision_time = reader.revision()
    return AppFacts(
        root=root,
        db_pool=pool,
        db_checkout_timeout=timeout,
        puma_max_threads=max_threads,
        puma_workers=workers,
        sidekiq_concurrency=concurrency,
        revision=revision,
        revision_time=revision_time,
        notes=tuple(reader.notes),
    )
