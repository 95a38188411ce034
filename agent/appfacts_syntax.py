"""The slice of YAML and Ruby that Rails and Sidekiq config files are written in.

* ``read_yaml(text) -> YamlMap``: block mappings by indentation, ``&anchor`` / ``*alias``,
  ``<<: *merge`` (own keys win), quoted scalars, comments; sequences and flow style are
  skipped. ERB control lines (``<% if … %>``) are skipped, so both branches are read.
* ``RubyExpr(env, scope, unset).evaluate(text)``: numbers, strings, ``nil``, ``ENV["X"]``,
  ``ENV.fetch("X", d)`` / ``ENV.fetch("X") { d }`` (the block runs only when X is unset),
  ``||``, comparisons, + - * /, ``Integer()``, ``Float()``, ``.to_i``, ``.to_f``, and
  variables from ``scope``; anything else raises ``Unknown``. Names of unset variables
  read are appended to ``unset``, so callers can say which defaults they assumed.
* ``render_erb(text, evaluator)``: ``<%= … %>`` replaced by its value.

No YAML library (not a dependency), no Ruby: a fact we cannot evaluate stays unknown.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["RubyExpr", "Unknown", "YamlMap", "number", "read_yaml", "render_erb", "split_args", "strip_comment", "unwrap_parens"]


class Unknown(Exception):
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
            raise Unknown(text[pos:])
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class RubyExpr:
    """Recursive-descent evaluator for the Ruby found in database.yml ERB and puma.rb."""

    def __init__(self, env: Mapping[str, str], scope: Dict[str, Any], unset: List[str]) -> None:
        self.env, self.scope, self.unset = env, scope, unset
        self.toks: List[Tuple[str, str]] = []
        self.i = 0

    def evaluate(self, text: str) -> Any:
        self.toks, self.i = _tokens(text), 0
        value = self._compare()
        if self.i != len(self.toks):
            raise Unknown(text)
        return value

    def _peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def _take(self, expected: Optional[str] = None) -> Tuple[str, str]:
        if self.i >= len(self.toks) or (expected is not None and self.toks[self.i][1] != expected):
            raise Unknown(expected or "end")
        self.i += 1
        return self.toks[self.i - 1]

    def _compare(self) -> Any:
        left = self._or()
        if self._peek() in ("==", "!=", ">", "<", ">=", "<="):
            op = self._take()[1]
            right = self._or()
            a, b = (number(left), number(right)) if op not in ("==", "!=") else (left, right)
            if a is None or b is None:
                raise Unknown(op)
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
            a, b = number(value), number(self._product())
            if a is None or b is None:
                raise Unknown(op)
            value = a + b if op == "+" else a - b
        return value

    def _product(self) -> Any:
        value = self._postfix()
        while self._peek() in ("*", "/"):
            op = self._take()[1]
            a, b = number(value), number(self._postfix())
            if a is None or b is None or (op == "/" and b == 0):
                raise Unknown(op)
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
                n = number(value)
                value = float(n) if n is not None else float(_ruby_to_i(value))
            elif method in ("to_s", "strip", "freeze"):
                value = "" if value is None else value
            else:
                raise Unknown(method)
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
            n = number(self._postfix())
            if n is None:
                raise Unknown("-")
            return -n
        if text == "nil":
            return None
        if text == "ENV":
            return self._env()
        if text in ("Integer", "Float"):
            args = self._args()
            n = number(args[0]) if args else None
            if n is None:
                raise Unknown(text)
            return int(n) if text == "Integer" else float(n)
        if kind == "name" and text in self.scope:
            return self.scope[text]
        raise Unknown(text)

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
            raise Unknown("ENV.fetch")
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


def number(value: Any) -> Optional[float]:
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


def render_erb(text: str, evaluator: RubyExpr) -> str:
    """Replace each ``<%= … %>`` by its value; raises Unknown if one cannot be evaluated."""

    def one(m: "re.Match[str]") -> str:
        value = evaluator.evaluate(m.group(1).strip())
        return "" if value is None else str(value)

    return _ERB.sub(one, text)


# --------------------------------------------------------------------------- a YAML subset

class YamlMap:
    """A YAML block mapping; ``merges`` are the ``<<: *anchor`` maps, looked up after own keys."""

    def __init__(self) -> None:
        self.items: Dict[str, Any] = {}
        self.merges: List["YamlMap"] = []

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


def strip_comment(text: str) -> str:
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


def read_yaml(text: str) -> YamlMap:
    root = YamlMap()
    anchors: Dict[str, YamlMap] = {}
    stack: List[Tuple[int, YamlMap]] = [(-1, root)]
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
        value = strip_comment(m.group("value") or "")
        if key == "<<":
            for name in re.findall(r"\*([\w-]+)", value):
                if name in anchors:
                    parent.merges.append(anchors[name])
            continue
        if not value or re.fullmatch(r"&[\w-]+", value):
            child = YamlMap()
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


def split_args(text: str) -> List[str]:
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


def unwrap_parens(text: str) -> str:
    """``(1, 5)`` -> ``1, 5`` when the parentheses enclose the whole argument list."""
    if not text.startswith("("):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[1:i] if i == len(text) - 1 else text
    return text
