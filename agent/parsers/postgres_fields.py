"""Small, pure helpers shared by the PostgreSQL and PgBouncer parsers.

* ``local_ts``: server times such as ``2014-04-01 11:13:21 CEST`` (``%t``/``%m`` print the
  zone *abbreviation*, which ``parse_iso`` would silently read as UTC).
* ``locate_severity``: where ``LOG:  `` / ``ERROR:  `` … sits in a line, whatever
  ``log_line_prefix`` put before it.
* ``prefix_fields``: pid, user, database, SQLSTATE and syslog sequence out of that prefix.
* ``sql_tags``: ActiveRecord::QueryLogs / marginalia comments (rails-signals.md A.5).
* ``infer_sqlstate`` / ``pg_error_class``: the fixed SQLSTATE of the messages that matter
  for pool exhaustion, and the ``PG::`` class the pg gem raises for it.
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Tuple
from urllib.parse import unquote

from agent.parsers.numbers import safe_iso

# Zone abbreviations PostgreSQL and PgBouncer print; an unknown one is read as UTC.
ZONE_HOURS: Dict[str, float] = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
    "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "JST": 9, "KST": 9, "SGT": 8, "HKT": 8,
    "AWST": 8, "ACST": 9.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "BRT": -3, "ART": -3,
}


def local_ts(text: str) -> Optional[float]:
    """Epoch seconds of the timestamp that starts ``text``, honouring a zone abbreviation."""
    ts = safe_iso(text)
    if ts is None:
        return None
    i = 19  # just after YYYY-MM-DD HH:MM:SS
    if text[i : i + 1] == ".":
        i += 1
        while text[i : i + 1].isdigit():
            i += 1
    if text[i : i + 1] == " " and text[i + 1 : i + 2].isalpha():
        j = i + 1
        while text[j : j + 1].isalpha():
            j += 1
        hours = ZONE_HOURS.get(text[i + 1 : j])
        if hours:
            ts -= hours * 3600
    return ts


SEVERITIES = frozenset(
    ("LOG", "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "INFO", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3",
     "DEBUG4", "DEBUG5", "DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION")
)
#: lines that belong to the message logged just before them (same backend)
CONTINUATIONS = frozenset(("DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION"))
ERROR_LEVELS = frozenset(("ERROR", "FATAL", "PANIC"))


def locate_severity(line: str) -> Tuple[int, str, int]:
    """(start of the severity word, the word, start of the message) or (-1, "", -1).

    PostgreSQL always writes ``<SEVERITY>:  <message>`` (two spaces); the word is
    preceded by the prefix's last character: a space, ``:`` (RDS) or ``]``.
    """
    i = line.find(":  ")
    while i > 0:
        j = max(line.rfind(" ", 0, i), line.rfind(":", 0, i), line.rfind("]", 0, i), line.rfind("\t", 0, i)) + 1
        word = line[j:i]
        if word in SEVERITIES:
            return j, word, i + 3
        i = line.find(":  ", i + 3)
    return -1, "", -1


_USER = re.compile(r"\b(?:user|usr)=([^,\s]*)")
_DB = re.compile(r"\bdb=([^,\s]*)")
_HEROKU_CODE = re.compile(r"sql_error_code = (\w{5})")
SEQ = re.compile(r"\[(\d+)-(\d+)\]")


def _known(value: str) -> str:
    return "" if value.startswith("[") else value  # "[unknown]" before authentication


def prefix_fields(prefix: str) -> Tuple[str, str, str, str]:
    """(pid, user, database, sqlstate) from a ``log_line_prefix`` rendering; "" when absent."""
    # substring checks first: this runs once per timed statement, 100k times in a busy log
    user = database = code = ""
    if "=" in prefix:
        mu = _USER.search(prefix) if ("user=" in prefix or "usr=" in prefix) else None
        md = _DB.search(prefix) if "db=" in prefix else None
        if mu is not None:
            user = _known(mu[1])
        if md is not None:
            database = _known(md[1])
        if "sql_error_code" in prefix:
            mc = _HEROKU_CODE.search(prefix)
            code = mc[1] if mc else ""
    if not user and not database:
        at = prefix.find("@")
        if at > 0:  # %u@%d (RDS, Debian's default): walk out from the "@"; a regex search is slow here
            i = at
            while i > 0 and (prefix[i - 1].isalnum() or prefix[i - 1] in "_.-"):
                i -= 1
            j = at + 1
            while j < len(prefix) and (prefix[j].isalnum() or prefix[j] in "_.-"):
                j += 1
            user, database = prefix[i:at], prefix[at + 1 : j]
    return pid_of(prefix), user, database, code


def pid_of(prefix: str) -> str:
    """The first ``[12345]`` (or Heroku's ``app[postgres.12345]``) in the prefix."""
    i = prefix.find("[")
    while i >= 0:
        j = prefix.find("]", i)
        if j < 0:
            break
        inner = prefix[i + 1 : j]
        if inner.isdigit():
            return inner
        if inner.startswith("postgres.") and inner[9:].isdigit():
            return inner[9:]
        i = prefix.find("[", j)
    return ""


_VERBOSE_CODE = re.compile(r"([0-9A-Z]{5}): ")


def split_verbose_code(message: str) -> Tuple[str, str]:
    """``log_error_verbosity = verbose`` puts ``42P01: `` before the text."""
    if len(message) > 7 and message[5] == ":" and _VERBOSE_CODE.match(message):
        return message[:5], message[7:]
    return "", message


# Messages whose SQLSTATE is fixed in PostgreSQL's source (src/backend/...): used when
# the prefix has no %e, so a detector can still match on the code.
_INFERRED: Tuple[Tuple[str, str], ...] = (
    ("sorry, too many clients already", "53300"),
    ("remaining connection slots are reserved", "53300"),
    ("too many connections for role", "53300"),
    ("too many connections for database", "53300"),
    ("deadlock detected", "40P01"),
    ("canceling statement due to statement timeout", "57014"),
    ("canceling statement due to user request", "57014"),
    ("canceling statement due to lock timeout", "55P03"),
    ("could not obtain lock on", "55P03"),
    ("terminating connection due to idle-in-transaction timeout", "25P03"),
    ("terminating connection due to administrator command", "57P01"),
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
    ("the database system is in recovery mode", "57P03"),
    ("could not serialize access", "40001"),
    ("duplicate key value violates unique constraint", "23505"),
)


def infer_sqlstate(message: str) -> str:
    for needle, code in _INFERRED:
        if needle in message:
            return code
    return ""


# The class the pg gem raises for a SQLSTATE, so server-side and app-side errors line up.
_PG_CLASSES: Dict[str, str] = {
    "53300": "PG::TooManyConnections",
    "40P01": "PG::TRDeadlockDetected",
    "40001": "PG::TRSerializationFailure",
    "57014": "PG::QueryCanceled",
    "55P03": "PG::LockNotAvailable",
    "25P03": "PG::IdleInTransactionSessionTimeout",
    "57P01": "PG::AdminShutdown",
    "57P03": "PG::CannotConnectNow",
    "23505": "PG::UniqueViolation",
    "42P01": "PG::UndefinedTable",
    "42703": "PG::UndefinedColumn",
    "42601": "PG::SyntaxError",
    "28P01": "PG::InvalidPassword",
    "28000": "PG::InvalidAuthorizationSpecification",
    "08P01": "PG::ProtocolViolation",
    "53200": "PG::OutOfMemory",
    "53100": "PG::DiskFull",
}


def pg_error_class(code: str) -> str:
    return _PG_CLASSES.get(code, "")


_COMMENT = re.compile(r"/\*(.*?)\*/", re.S)
_TAG_KEY = re.compile(r"[A-Za-z_][\w.-]*$")


def sql_tags(sql: str) -> Dict[str, str]:
    """Tags of the first QueryLogs/marginalia comment in ``sql``; {} when there is none.

    legacy / marginalia: ``/*application:Blog,controller:posts,action:index*/``
    sqlcommenter:        ``/*action='index',application='Blog',controller='posts'*/`` (values URL-encoded)
    """
    if "/*" not in sql:
        return {}
    for m in _COMMENT.finditer(sql):
        body = m[1].strip()
        if ("=" not in body and ":" not in body) or "\n" in body:
            continue
        tags: Dict[str, str] = {}
        key = ""
        for part in body.split(","):
            eq, colon = part.find("="), part.find(":")
            cut = eq if eq > 0 and (colon < 0 or eq < colon) and part[eq + 1 : eq + 2] == "'" else colon
            if cut <= 0 or not _TAG_KEY.match(part[:cut].strip()):
                if key:  # a legacy value with a comma in it (marginalia does not escape)
                    tags[key] += "," + part
                    continue
                tags = {}
                break
            key, value = part[:cut].strip(), part[cut + 1 :].strip()
            if cut == eq:
                tags[key] = unquote(value.strip("'"))
            else:
                tags[key] = value
        if tags:
            return tags
    return {}
