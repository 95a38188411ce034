"""SQL fingerprinting: one stable shape per statement, whatever its literals.

Rules (rails-signals.md C.5, after pt-fingerprint, Sentry span grouping, Relay and
pg_stat_statements):

* ``/* … */`` and ``-- …`` comments are removed; QueryLogs / marginalia comments
  (``/*application:Blog,controller:posts,action:index*/``, sqlcommenter
  ``/*action='index',controller='posts'*/``) are parsed into ``tags`` first.
* single-quoted strings (``''`` and ``\\'`` escapes), numbers, hex, ``TRUE``/``FALSE``,
  ``$1``, ``?`` and ``:name`` placeholders become ``?``. ``NULL`` stays, so
  ``IS NULL`` and ``= ?`` remain different statements.
* ``IN (…)`` lists of any length (and PG 18's ``IN ($1 /*, ... */)``),
  ``ANY(ARRAY[…])`` and multi-row ``VALUES (…), (…)`` collapse to one placeholder.
* ``SAVEPOINT active_record_1`` names, ``LIMIT n`` and ``OFFSET n`` are abstracted;
  whitespace is collapsed.
* The hash ignores case and identifier quoting (``"users"`` = ``users`` = `` `users` ``);
  the displayed ``normalized`` text keeps the statement's own spelling.

``shape(sql)`` returns a ``SqlShape``: ``fingerprint`` (12 hex chars), ``normalized``,
``operation`` (``SELECT``…), ``table`` (main table: ``FROM``/``UPDATE``/``INSERT INTO``/
``DELETE FROM``), ``kind`` (``load``/``count``/``exists``/``write``/``transaction``/
``other``), ``key_lookup`` + ``key_column`` (a WHERE made only of ``col = ?``
conjunctions with an ``id``/``*_id`` column: the shape of a lazy association load),
``in_list_max`` (longest literal IN list: >1 means a batched load), ``limit`` (a
literal ``LIMIT``), and ``tags``.

Logs repeat the same statement text millions of times, so results are cached per
raw statement in a bounded C-level LRU (``SqlFingerprinter(max_entries)``).
"""
from __future__ import annotations

import functools
import hashlib
import re
from types import MappingProxyType
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote

_EMPTY_TAGS: Mapping[str, str] = MappingProxyType({})

# one pass over strings and comments, so a "/*" inside a string or a quote inside a
# comment cannot confuse the other
_TOKENS = re.compile(r"'(?:[^'\\]|\\.|'')*'|/\*.*?\*/|--[^\n]*", re.S)
_TAG = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(?:=|:)\s*('(?:[^'\\]|\\.)*'|[^,]*)\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DOLLAR = re.compile(r"\$\d+")
_NAMED = re.compile(r"(?<![:\w]):[A-Za-z_]\w*")
# numbers (not digits inside identifiers such as users_2009), hex, booleans: one pass
_LITERAL = re.compile(r"(?<![\w$.\"])(?:0x[0-9A-Fa-f]+|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|TRUE|FALSE)(?![\w\"])", re.I)
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_ANY_ARRAY = re.compile(r"\bANY\s*\(\s*(?:ARRAY\s*\[[^\]]*\]|\?)\s*(?:::[\w\[\]]+)?\s*\)", re.I)
_VALUES = re.compile(r"\bVALUES\s*\((?:[^()]|\([^()]*\))*\)(?:\s*,\s*\((?:[^()]|\([^()]*\))*\))*", re.I)
_SAVEPOINT = re.compile(r"\b(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\s+\S+", re.I)
_LIMIT_LITERAL = re.compile(r"\bLIMIT\s+(\d+)", re.I)
_FROM_TABLE = re.compile(r"\bFROM\s+((?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?[\w$]+[`\"]?)", re.I)
_WRITE_TABLE = re.compile(
    r"^\s*(?:UPDATE|INSERT\s+(?:IGNORE\s+)?INTO|DELETE\s+FROM|REPLACE\s+INTO)\s+((?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?[\w$]+[`\"]?)",
    re.I,
)
_WHERE = re.compile(r"\bWHERE\s+(.*?)(?:\s+(?:ORDER\s+BY|GROUP\s+BY|LIMIT|OFFSET|FOR\s+UPDATE|RETURNING)\b|$)", re.I | re.S)
_EQ_TERM = re.compile(r"^\(?\s*(?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?([\w$]+)[`\"]?\s*=\s*\?\s*\)?$")
_AND = re.compile(r"\s+AND\s+", re.I)
_COUNT = re.compile(r"^SELECT\s+COUNT\s*\(", re.I)
_EXISTS = re.compile(r"^SELECT\s+(?:1|\?)\s+AS\s+one\b", re.I)
_BIND_PAIR = re.compile(r"\[(\"(?:[^\"\\]|\\.)*\"|nil),\s*(\"(?:[^\"\\]|\\.)*\"|[^\]]*)\]")
# literals removed, comments and LIMIT n kept: statements that differ only in literal
# values share one skeleton, so logs with inlined values (mysql2, PG with
# prepared_statements: false) still hit a cache
_SKELETON = re.compile(r"(/\*.*?\*/|(?i:LIMIT)\s+\d+)|'(?:[^'\\]|\\.|'')*'|(?<![\w$.\"])-?\d+(?:\.\d+)?(?![\w\"])", re.S)
_TXN = frozenset(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START", "END"))


class SqlShape(NamedTuple):
    fingerprint: str
    normalized: str
    operation: str  # first keyword, upper-cased: SELECT, INSERT, UPDATE, DELETE, BEGIN…
    table: str  # main table, unquoted, without schema; "" if none
    kind: str  # load | count | exists | write | transaction | other
    key_lookup: bool  # WHERE is only `col = ?` terms joined by AND, one of them id/*_id
    key_column: str  # that id/*_id column ("id", "post_id", "record_id")
    in_list_max: int  # items in the longest IN (…) / ANY(ARRAY[…]) list; 0 if none
    limit: Optional[int]  # a literal LIMIT n (None for LIMIT $2 / none)
    tags: Mapping[str, str]  # QueryLogs / marginalia tags; read-only


def _unquote_ident(name: str) -> str:
    name = name.replace('"', "").replace("`", "")
    return name.rsplit(".", 1)[-1]


def parse_tags(comment_body: str) -> Mapping[str, str]:
    """``application:Blog,controller:posts`` or ``action='index',controller='posts'``."""
    tags = {}
    for part in comment_body.split(","):
        m = _TAG.fullmatch(part)
        if not m:
            return _EMPTY_TAGS  # not a tag comment (a hint, PG 18's "/*, ... */", prose)
        value = m.group(2).strip()
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            value = unquote(value[1:-1])
        tags[m.group(1)] = value
    return tags


def _list_items(text: str) -> int:
    return text.count(",") + 1 if text.strip() else 0


def _compute(sql: str) -> SqlShape:
    if "\x1b" in sql:
        sql = _ANSI.sub("", sql)
    tags = {}

    def token(m: "re.Match[str]") -> str:
        text = m.group(0)
        if text[0] == "'":
            return "?"
        if text.startswith("/*"):
            found = parse_tags(text[2:-2])
            if found:
                tags.update(found)
        return " "

    text = _TOKENS.sub(token, sql) if ("'" in sql or "/*" in sql or "--" in sql) else sql
    if "$" in text:
        text = _DOLLAR.sub("?", text)
    if ":" in text:
        text = _NAMED.sub("?", text)
    text = _LITERAL.sub("?", text)
    text = " ".join(text.split()).rstrip(";").rstrip()
    low = text.lower()  # guards below skip regexes that cannot match (cache misses must stay cheap)

    in_list_max = 0
    if " in" in low:
        for m in _IN_LIST.finditer(text):
            in_list_max = max(in_list_max, m.group(0).count("?"))
        text = _IN_LIST.sub("IN (?)", text)
    if "any" in low:
        for m in _ANY_ARRAY.finditer(text):
            inner = m.group(0)
            if "[" in inner:
                in_list_max = max(in_list_max, _list_items(inner[inner.index("[") + 1 : inner.rindex("]")]))
        text = _ANY_ARRAY.sub("ANY (?)", text)
    if "values" in low:
        text = _VALUES.sub("VALUES (?)", text)
    if "savepoint" in low:
        text = _SAVEPOINT.sub(lambda m: m.group(1) + " ?", text)

    limit = None
    if "limit" in low:
        m = _LIMIT_LITERAL.search(sql)
        if m:
            limit = int(m.group(1))

    operation = text.split(" ", 1)[0].upper() if text else ""
    table = ""
    if operation == "SELECT" or operation == "WITH":
        m = _FROM_TABLE.search(text)
        if m:
            table = _unquote_ident(m.group(1))
    elif operation in ("UPDATE", "INSERT", "DELETE", "REPLACE"):
        m = _WRITE_TABLE.match(text)
        if m:
            table = _unquote_ident(m.group(1))

    if operation in _TXN:
        kind = "transaction"
    elif operation in ("INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE"):
        kind = "write"
    elif operation == "SELECT":
        kind = "count" if _COUNT.match(text) else "exists" if _EXISTS.match(text) else "load"
    else:
        kind = "other"

    key_lookup, key_column = False, ""
    if operation in ("SELECT", "UPDATE", "DELETE") and "where" in low:
        m = _WHERE.search(text)
        if m:
            key_lookup, key_column = _key_lookup(m.group(1))

    hash_text = text.lower().replace('"', "").replace("`", "")
    digest = hashlib.sha1(hash_text.encode("utf-8")).hexdigest()[:12]
    return SqlShape(
        fingerprint=digest,
        normalized=text,
        operation=operation,
        table=table,
        kind=kind,
        key_lookup=key_lookup,
        key_column=key_column,
        in_list_max=in_list_max,
        limit=limit,
        tags=MappingProxyType(tags) if tags else _EMPTY_TAGS,
    )


def _key_lookup(where: str) -> Tuple[bool, str]:
    key = ""
    for term in _AND.split(where.strip()):
        m = _EQ_TERM.match(term.strip())
        if not m:
            return False, ""
        column = m.group(1).lower()
        if not key and (column == "id" or column.endswith("_id")):
            key = column
    return bool(key), key


class SqlFingerprinter:
    """``shape(sql)`` with bounded caches (``max_entries`` each).

    Level 1 is a C-level LRU on the raw text (PG ``$1`` logs: almost every line hits).
    Level 2 maps the literal-free skeleton to a shape, so ``WHERE id = 17`` after
    ``WHERE id = 16`` costs one regex pass instead of a full normalisation.
    """

    def __init__(self, max_entries: int = 20000) -> None:
        self.max_entries = max_entries
        self._by_skeleton: Dict[str, SqlShape] = {}
        self.shape = functools.lru_cache(maxsize=max_entries)(self._shape_uncached)

    def _shape_uncached(self, sql: str) -> SqlShape:
        skeleton = _SKELETON.sub(r"\1", sql)
        if skeleton == sql:
            return _compute(sql)
        found = self._by_skeleton.get(skeleton)
        if found is None:
            found = _compute(sql)
            if len(self._by_skeleton) >= self.max_entries:
                del self._by_skeleton[next(iter(self._by_skeleton))]  # oldest first
            self._by_skeleton[skeleton] = found
        return found

    def cache_info(self):  # for self-metrics and benchmarks
        return self.shape.cache_info()


_default = SqlFingerprinter()


def shape(sql: str) -> SqlShape:
    """Fingerprint ``sql`` through the module's shared cache."""
    return _default.shape(sql)


def parse_binds(binds: str) -> List[Tuple[str, str]]:
    """Rails' inspected bind array ``[["id", 3], ["LIMIT", 1]]`` -> ``[("id", "3"), ("LIMIT", "1")]``.

    Values stay as printed (strings keep their quotes stripped); ``nil`` names become "".
    """
    if not binds:
        return []
    pairs = []
    for m in _BIND_PAIR.finditer(binds):
        name, value = m.group(1), m.group(2).strip()
        name = "" if name == "nil" else name[1:-1]
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        pairs.append((name, value))
    return pairs
