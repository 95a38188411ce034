"""How one Sidekiq line is laid out: the prefixes of Sidekiq 4 to 8, and the fields inside them.

Used by ``agent.parsers.sidekiq`` (dispatch) and ``agent.parsers.sidekiq_errors`` (error records).
Every function here looks at one line (or one record's text) and keeps no state; ``StampClock``
caches the time of the last stamps read.

    2016-08-17T08:43:03.200Z 5207 TID-9s4zo UpdateCountersWorker JID-3c… INFO: done: 0.123 sec     (4.x, 5.x)
    2024-05-01T12:00:00.123Z pid=1 tid=2b8 class=HardJob jid=b4a5… elapsed=0.5 INFO: done           (6.0 - 7.x)
    INFO  2025-04-01T12:00:00.123Z pid=1 tid=2b8 class=HardJob jid=b4a5… elapsed=0.5: done           (8.x Pretty/Plain)
    {"ts":"2024-…","pid":1,"tid":"2b8","lvl":"INFO","msg":"done","ctx":{"class":"HardJob",…}}      (JSON formatter)
"""
from __future__ import annotations

import json
import re
from typing import Dict, Optional, Tuple

from agent.parsers.numbers import bounded_float, safe_iso
from agent.timeparse import day_epoch

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"
# [time ](pid=P tid=T | P TID-T)<context> LEVEL: message   (4.x to 7.x), read in two steps: HEAD up to
# the thread, then LEVEL.search for the first " LEVEL:" after it. One regex with a lazy ``(.*?)``
# before the level retried the level alternation at every character of the context: twice as slow.
HEAD = re.compile(r"(?:(" + STAMP + r") )?(?:pid=(\d+) tid=(\w+)|(\d+) TID-([\w-]+))")
LEVEL = re.compile(r" (DEBUG|INFO|WARN|ERROR|FATAL): ?")
# The job logger's start/done lines as Sidekiq writes them (most lines of a busy log), whole: one match
# gives every field. Anything else of that kind (other context keys, another level) goes the long way.
# Tokens are [^ ]+ as the context is split on " " (and a one-character class costs half of \S per
# character); the lookahead keeps newlines out, as HEAD + LEVEL do; the 4.x class must not look like a
# level, where HEAD + LEVEL would stop.
JOB_LINE = re.compile(
    r"(?=[^\n]*\Z)(?:(" + STAMP + r") )?"
    r"(?:pid=(\d+) tid=(\w+) class=([^ ]+) jid=([^ ]+)(?: elapsed=([^ ]+))?"
    r"|(\d+) TID-([\w-]+) (?!(?:DEBUG|INFO|WARN|ERROR|FATAL):)([^ ]+) JID-([^ ]+))"
    r" INFO: (start|done(?:: ([^ ]+) sec)?)\Z"
)
# JOB_LINE from the seconds of its stamp on, for ``SidekiqParser.feed_lines``: the stamp's first 17
# characters ("2024-05-01T12:00:", MINUTE) are checked once per minute, then compared. Narrower than
# JOB_LINE where that spares work per line: the thread is ASCII letters and digits (in \w and [\w-]), a
# duration ASCII digits whose float is bounded_float's (at most 15 before the point), and the caller
# requires no newline or ANSI code in the line (JOB_LINE's lookahead, feed's strip_ansi); anything else
# goes the long way.
MINUTE = re.compile(r"2\d{3}-\d\d-\d\dT\d\d:\d\d:")
JOB_LINE_SECONDS = re.compile(
    r"(\d\d(?:\.\d+)?)Z "
    r"(?:pid=(\d+) tid=([0-9A-Za-z]+) class=([^ ]+) jid=([^ ]+)(?: elapsed=([0-9]{1,15}(?:\.[0-9]{1,20})?))?"
    r"|(\d+) TID-([0-9A-Za-z]+) (?!(?:DEBUG|INFO|WARN|ERROR|FATAL):)([^ ]+) JID-([^ ]+))"
    r" INFO: (start|done(?:: ([0-9]{1,15}(?:\.[0-9]{1,20})?) sec)?)\Z"
)
# LEVEL [time ]pid=P tid=T<context>: message   (8.x; the context may hold spaces and a job={…} hash)
SK8 = re.compile(r"(DEBUG|INFO|WARN|ERROR|FATAL) +(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) )?pid=(\d+) tid=(\w+)")
SNIFF = re.compile(
    r"(?:(?:DEBUG|INFO|WARN|ERROR|FATAL) +)?(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z )?(?:pid=\d+ tid=\w+|\d+ TID-[\w-]+ )"
    r'|\{"ts":"[^"]*","pid":\d+,"tid":'
)
STAMP_SHAPE = re.compile(STAMP + r"\Z")
ERROR_LINE = re.compile(r"((?:[A-Z]\w*::)*[A-Z]\w*): (.*)", re.S)
ERROR_TAIL = re.compile(r"(.*) \(((?:[A-Z]\w*::)*[A-Z]\w*)\)$", re.S)  # 8.x detailed_message
# A backtrace frame is  \s*(?:from )?[^\s:]+:\d+(?::in |$)  ("app/x.rb:12:in `m'", "\tfrom x.rb:12"). It is
# matched in two steps (see is_frame): the file up to the first colon as [^:]+ (a class holding \s costs
# 3-4x as much per character, and frames are most lines of a failing log), then "no whitespace in it".
FRAME_LOOSE = re.compile(r"\s*(?:from )?([^:]+):\d+(?::in |$)")
LEAD_FRAME = re.compile(r"([^\s:]+:\d+:in [`'][^`']*'): ")  # full_message: "file:1:in 'm': msg (Class)"
JOB_FIELD = re.compile(
    r'"(class|wrapped|display_class|queue|jid|retry_count|error_class)"\s*(?::|=>)\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+))'
)
ADDING_DEAD = re.compile(r"Adding dead (\S+) job (\w+)")
DONE_LEGACY = re.compile(r"(?:done|fail): ([\d.]+) sec")
AJ_ERROR = re.compile(r"(?:\[[^\]]*\] )*Error performing ([\w:]+) \(Job ID: [\w-]+\) from .*?: ((?:[A-Z]\w*::)*[A-Z]\w*) \((.*)")

BOOT = ("Booted Rails", "Booting Sidekiq", "Running in ", "Starting processing")
BOOT_NOISE = ("See LICENSE", "Upgrade to Sidekiq Pro", "Sidekiq Pro ", "Sidekiq Enterprise ")
QUIET = ("Received USR1", "Received TSTP", "Terminating quiet")
REDIS_LINES = ("Error fetching job", "heartbeat: ", "Unable to flush stats", "Your Redis network connection")
SILENT = (
    "Pausing to allow", "Pushed ", "Heartbeat stopping", "Scheduler exiting", "Work still in progress",
    "Received TTIN", "Received INFO", "Thread TID-", "Jobs still in progress", "Re-queueing terminated jobs", "Performing ", "Performed ",
    "Enqueued ", "Retrying ", "!!! ERROR HANDLER",
)
WRAPPERS = ("ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "Sidekiq::ActiveJob::Wrapper")
CRASH = "bundler: failed to load command: sidekiq"

# (time, pid, tid, context, level, message); the context is the raw text (6.x/7.x) or a dict
Parts = Tuple[str, str, str, object, str, str]


def is_frame(text: str) -> bool:
    """Whether ``text`` starts like a Ruby backtrace frame (``\\s*(?:from )?[^\\s:]+:\\d+(?::in |$)``)."""
    m = FRAME_LOOSE.match(text)
    if m is None:
        return False
    path = m.group(1)
    if " " not in path and path.isprintable():  # every other whitespace character is unprintable
        return True
    return not any(ch.isspace() for ch in path)


def kv_context(ctx: str) -> Dict[str, str]:
    """`` class=HardJob jid=b4a5 elapsed=0.5`` -> dict (values without spaces, 6.x/7.x)."""
    out: Dict[str, str] = {}
    for part in ctx.split():
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out


def legacy_context(ctx: str) -> Dict[str, str]:
    """`` UpdateCountersWorker JID-3c4f… BID-…`` (4.x/5.x context)."""
    parts = ctx.split()
    out: Dict[str, str] = {}
    if len(parts) >= 2 and parts[1].startswith("JID-"):
        out["class"], out["jid"] = parts[0], parts[1][4:]
    return out


def job_context(ctx: str, legacy: bool) -> Tuple[str, str, Optional[float]]:
    """(class, jid, elapsed) of a start/done line's context text, as the job logger writes it."""
    job_class = jid = ""
    elapsed: Optional[float] = None
    if ctx:
        if not legacy:  # " class=HardJob jid=b4a5 elapsed=0.5"
            for part in ctx.split(" "):
                if part[:6] == "class=":
                    job_class = part[6:]
                elif part[:4] == "jid=":
                    jid = part[4:]
                elif part[:8] == "elapsed=":
                    elapsed = bounded_float(part[8:])
        else:  # " UpdateCountersWorker JID-3c4f…"
            parts = ctx.split(" ")
            if len(parts) >= 3 and parts[2][:4] == "JID-":
                job_class, jid = parts[1], parts[2][4:]
    return job_class, jid, elapsed


def context_fields(ctx: object) -> Dict[str, object]:
    """The context of a split line as a dict (JSON and 4.x contexts already are)."""
    if isinstance(ctx, dict):
        return ctx
    return kv_context(ctx) if ctx else {}  # type: ignore[arg-type]


def matching_brace(text: str, start: int) -> int:
    """Index just past the ``}`` closing the ``{`` at ``start`` (strings skipped); -1 if none."""
    depth = 0
    in_str = False
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def split_sk8(rest: str) -> Tuple[Dict[str, str], str]:
    """8.x: `` class=X jid=Y: msg`` or `` context=Job raised exception job={…}: msg`` -> (ctx, msg)."""
    if rest.startswith(": "):
        return {}, rest[2:]
    ctx: Dict[str, str] = {}
    j = rest.find(" job={")
    if j >= 0:
        end = matching_brace(rest, j + 5)
        if end > 0 and rest.startswith(": ", end):
            ctx["job"] = rest[j + 5 : end]
            head, msg = rest[:j], rest[end + 2 :]
        else:
            head, _, msg = rest.partition(": ")
    else:
        head, _, msg = rest.partition(": ")
    keys = list(re.finditer(r" (\w+)=", head))
    for i, m in enumerate(keys):
        stop = keys[i + 1].start() if i + 1 < len(keys) else len(head)
        ctx[m.group(1)] = head[m.end() : stop]
    return ctx, msg


def job_fields(text: str) -> Dict[str, str]:
    """Top-level fields of a job hash printed as JSON or Ruby ``inspect`` (first occurrence wins)."""
    out: Dict[str, str] = {}
    for m in JOB_FIELD.finditer(text):
        key = m.group(1)
        if key not in out:
            out[key] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


def job_class_of(fields: Dict[str, object]) -> str:
    """What Sidekiq's job logger shows: display_class, else wrapped (ActiveJob), else class."""
    for key in ("display_class", "wrapped", "class"):
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def job_hash(msg: str) -> Dict[str, object]:
    """The job of the error handler's first WARN record: JSON (6.x/7.x) or a Ruby ``inspect`` (4.x)."""
    if msg.startswith('{"'):
        try:
            data = json.loads(msg)
        except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
            data = None
        if isinstance(data, dict):
            job = data.get("job")
            out: Dict[str, object] = dict(job) if isinstance(job, dict) else {}
            out["context"] = data.get("context", "")
            return out
    end = matching_brace(msg, msg.find("=>{") + 2) if "=>{" in msg else -1
    return dict(job_fields(msg[:end] if end > 0 else msg))


def split_pretty(line: str) -> Optional[Tuple[Optional[str], str, str, str, bool, str, str]]:
    """(time or None, pid, tid, context text, legacy (4.x/5.x), level, message) of a 4.x-7.x line, else None."""
    head = HEAD.match(line)
    if head is None:
        return None
    start = head.end()
    m = LEVEL.search(line, start)
    if m is None:
        return None
    ctx = line[start : m.start()]
    if "\n" in ctx:  # the level is on the record's first line
        return None
    stamp, pid, tid, pid4, tid4 = head.groups()
    if pid is None:
        return stamp, pid4, tid4, ctx, True, m.group(1), line[m.end() :]
    return stamp, pid, tid, ctx, False, m.group(1), line[m.end() :]


def pretty_parts(split: Tuple[Optional[str], str, str, str, bool, str, str]) -> Parts:
    """``split_pretty``'s result as the parts every line shape gives (4.x contexts as a dict)."""
    stamp, pid, tid, ctx, legacy, level, msg = split
    if legacy:
        return stamp or "", pid, tid, legacy_context(ctx) if ctx else {}, level, msg
    return stamp or "", pid, tid, ctx, level, msg


def split_json(line: str) -> Optional[Parts]:
    """The parts of a JSON formatter line, None if it is no Sidekiq record."""
    if '"tid"' not in line[:80]:
        return None
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return None
    if not isinstance(data, dict) or "tid" not in data:
        return None
    ctx = data.get("ctx") or {}
    if not isinstance(ctx, dict):
        ctx = {}
    msg = data.get("msg")
    return str(data.get("ts") or ""), str(data.get("pid", "")), str(data["tid"]), ctx, str(data.get("lvl", "")), msg if isinstance(msg, str) else json.dumps(msg)


def split_line(line: str) -> Optional[Parts]:
    """(time, pid, tid, context, level, message) of a Sidekiq-prefixed line, else None."""
    c = line[:1]
    if c == "{":
        return split_json(line)
    if c in "DIWEF":
        m = SK8.match(line)
        if m is not None:
            ctx, msg = split_sk8(line[m.end() :])
            return m.group(2) or "", m.group(3), m.group(4), ctx, m.group(1), msg
        return None
    if not c.isdigit() and c != "p":
        return None
    split = split_pretty(line)
    return pretty_parts(split) if split is not None else None


class StampClock:
    """Epoch seconds of Sidekiq's ``2024-05-01T12:00:00.123Z`` stamps, exactly as ``parse_iso`` reads them.

    Lines repeat their stamp (a fail and its error records) and their minute: both are cached, so
    most lines cost a comparison, or a ``float`` of the seconds. Other texts (the JSON formatter's
    ``ts`` can be anything) go to ``parse_iso``.
    """

    __slots__ = ("_stamp", "_value", "_minute", "_minute_epoch", "_day", "_day_epoch")

    def __init__(self) -> None:
        self._stamp = ""
        self._value: Optional[float] = None
        self._minute = ""  # "2024-05-01T12:00" of the last stamp, and its epoch (None: a date parse_iso rejects)
        self._minute_epoch: Optional[float] = None
        self._day = ""
        self._day_epoch: Optional[int] = None

    def read(self, stamp: str) -> Optional[float]:
        """The time of any text: a Sidekiq stamp, else what ``parse_iso`` makes of it."""
        if stamp == self._stamp:
            return self._value
        if STAMP_SHAPE.match(stamp):
            return self.read_stamp(stamp)
        value = safe_iso(stamp)
        self._stamp, self._value = stamp, value
        return value

    def read_stamp(self, stamp: str) -> Optional[float]:
        """The time of a text ``STAMP`` matched whole (as in the prefix regexes)."""
        if stamp == self._stamp:
            return self._value
        if not plain_seconds(stamp[17:-1]):
            value = safe_iso(stamp)  # a second past 60 (refused), or more fraction digits than it reads
            self._stamp, self._value = stamp, value
            return value
        minute = stamp[:16]
        if minute != self._minute:
            self._minute = minute
            self._minute_epoch = self.minute_epoch(stamp)
        epoch = self._minute_epoch
        # "SS.mmm" as one float: the same double as parse_iso's int arithmetic (checked on 9M stamps), half the cost
        value = None if epoch is None else epoch + float(stamp[17:-1])
        self._stamp, self._value = stamp, value
        return value

    def minute_epoch(self, stamp: str) -> Optional[float]:
        """Epoch of the minute of a text that starts like a ``STAMP`` ("2024-05-01T12:00", digits checked
        by the caller); None for a date ``parse_iso`` rejects. ``read_stamp`` is this + ``float(stamp[17:-1])``."""
        day = stamp[:10]
        if day != self._day:
            self._day, self._day_epoch = day, day_epoch(day)
        hour, minute = int(stamp[11:13]), int(stamp[14:16])
        if self._day_epoch is None or hour > 23 or minute > 59:
            return None
        # calendar.timegm is linear in the time of day: the day's epoch + the seconds into it
        return float(self._day_epoch + hour * 3600 + minute * 60)


def plain_seconds(seconds: str) -> bool:
    """"SS" or "SS.fff" (digits checked by the caller) that ``float`` reads as ``parse_iso`` does: a
    second parse_iso accepts (up to 60, a leap second) and at most the 9 fraction digits it reads."""
    return seconds[:2] <= "60" and len(seconds) <= 12
