"""Line shapes of Rails' logger: the patterns and the tag splitting the Rails parser uses.

See ``agent/parsers/rails.py`` for the records they make and rails-signals.md (A.1–A.4)
for where each format comes from.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from agent.timeparse import day_epoch

PREFIX = re.compile(r"([DIWEFAU]), \[(\S+) #(\d+)\] *([A-Z]+) -- [^:]*: ")
#: the Logger prefix as Ruby's default formatter writes it: (second, ".fraction", pid, level).
#: Only a shape the string slicing in RailsParser._split_prefix reads the same way.
PLAIN_PREFIX = re.compile(r"[DIWEFAU], \[([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,9}) #([0-9]+)\] +([A-Z]+) -- : ")
#: the usual line, in one match: PLAIN_PREFIX's four groups, then (group 5) the request id
#: when it is the line's only tag, read by feed's own rule (36 characters, "-" 9th), else
#: None and no tag at all (a message starting "[" does not match), then (group 6) the message,
#: the rest of the line. RailsParser.feed_lines reads such lines without ``feed``.
COMMON_LINE = re.compile(PLAIN_PREFIX.pattern + r"(?:\[(.{8}-.{27})\] (?!\[)|(?!\[))(.*)", re.S)
#: COMMON_LINE's groups for a line tagged ``[<request id>] [ActiveJob] `` (ActiveJob's
#: "Enqueued …" lines, written inside a request): the two tags feed's split_tags reads there
#: (the first "]" closes the first tag), and request_key's choice of them, the first (a
#: 36-character tag is never "ActiveJob", and "ActiveJob" is no UUID).
ACTIVEJOB_TAGGED_LINE = re.compile(PLAIN_PREFIX.pattern + r"\[([^\]]{8}-[^\]]{27})\] \[ActiveJob\] (?!\[)(.*)", re.S)
ACTIVEJOB_TAG = "ActiveJob"
#: a line starting with one request tag and no other, by the same rule (no prefix before it)
ONE_TAG = re.compile(r"\[(.{8}-.{27})\] (?!\[)", re.S)
#: Processing's endpoint as one group: PROCESSING's "\1#\2" ([\w:]+ holds no "#")
PROCESSING_ENDPOINT = re.compile(r"Processing by ([\w:]+#\w+) as \S")
#: the usual Completed line, whole: (status, duration, views, db, queries, cached, allocations).
#: Where it matches, COMPLETED gives the same status and duration (the status text has no
#: digit, so " in <digits>ms" is found right after it) and ADDITION.finditer over the part in
#: brackets finds exactly these values (GC is read by nobody).
USUAL_COMPLETED = re.compile(  # no possessive quantifiers (Python 3.11+ only): what follows a digit run is never a digit, so backtracking finds nothing new
    r"Completed (\d{3}) [A-Za-z ]* in (\d+(?:\.\d+)?)ms(?: \((?:Views: (\d+(?:\.\d+)?)ms \| )?ActiveRecord: (\d+(?:\.\d+)?)ms"
    r"(?: \((\d+) quer(?:y|ies), (\d+) cached\))?(?: \| GC: \d+(?:\.\d+)?ms)?(?: \| Allocations: (\d+))?\))?"
)
STARTED = re.compile(r'Started ([A-Z]+) "([^"]*)" for \S+ at (.+)')
#: STARTED where the time is not read (the Logger prefix gave it): matches where STARTED does
STARTED_HEAD = re.compile(r'Started ([A-Z]+) "([^"]*)" for \S+ at .')
PROCESSING = re.compile(r"Processing by ([\w:]+)#(\w+) as (\S+)")
COMPLETED = re.compile(r"Completed (\d{3}) (.*?) in (\d+(?:\.\d+)?)ms(?: \((.*)\))?")
COMPLETED_RAILS30 = re.compile(r"Completed in (\d+(?:\.\d+)?)ms(?: \((.*)\))? with (\d{3})")
ADDITION = re.compile(r"(Views|ActiveRecord|Allocations|GC|Duration): (\d+(?:\.\d+)?)(?:ms)?(?: \((\d+) quer(?:y|ies), (\d+) cached\))?")
SQL = re.compile(r" +(CACHE )?(ASYNC )?(.*?) ?\((\d+(?:\.\d+)?)ms\)(?: \(db time (\d+(?:\.\d+)?)ms\))?  (.*)")
#: SQL without its last group: the statement is the rest of the line, sliced from ``end()``
#: (lines hold no newline, so SQL's "(.*)" takes all of it; the match is the same)
SQL_HEAD = re.compile(SQL.pattern[: -len("(.*)")])
EXCEPTION = re.compile(r"((?:[A-Z]\w*::)*[A-Z]\w*) \((.*)")
ACTIVEJOB_ERROR = re.compile(
    r"Error performing ([\w:]+) \(Job ID: ([\w-]+)\) from \w+\(([\w-]*)\) in [\d.]+ms: ((?:[A-Z]\w*::)*[A-Z]\w*) \((.*)"
)
FRAME = re.compile(r"\s*(?:(?:[\w.-]+ \([\w.]+\) )?\S+:\d+(?::in |$)|from \S+:\d+|\d+: |Caused by:|Information for)")
REAL_FRAME = re.compile(r"\s*(?:[\w.-]+ \([\w.]+\) )?\S+:\d+:in ")
HEADER_END = re.compile(r"(?:\)|\) on line #\d+ of .*):$")  # Rails 3.0: "(msg) on line #3 of app/views/x.erb:"
MAX_MESSAGE_LINES = 12
MAX_TAGS = 16  # Rails apps log a request id and a few more; beyond this it is message text
UUIDISH = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{7,}$")

NO_TAGS: List[str] = []  # shared; never mutated


class PlainSecondClock:
    """``safe_iso(second + fraction)`` for the fields PLAIN_PREFIX matched ("2024-05-01T12:00:00",
    ".123456": ASCII digits, 1 to 9 of them in the fraction), with parse_iso's arithmetic and its
    refusals (a day not in the calendar, hour > 23, minute > 59, second > 60), the day's epoch
    remembered. A log whose every line starts a new second (rails-corpus: one in 17) pays 1 us
    per second instead of parse_iso's 3. safe_iso stays the reference: feed reads with it, and
    tests/parsers compare the two."""

    __slots__ = ("_day", "_day_epoch")

    def __init__(self) -> None:
        self._day = ""
        self._day_epoch: Optional[int] = None

    def read(self, second: str, fraction: str) -> Optional[float]:
        day = second[:10]
        if day != self._day:
            self._day, self._day_epoch = day, day_epoch(day)
        epoch = self._day_epoch
        hour, minute, sec = int(second[11:13]), int(second[14:16]), int(second[17:19])
        if epoch is None or hour > 23 or minute > 59 or sec > 60:
            return None
        digits = fraction[1:]
        # parse_iso: float(calendar.timegm(fields)) + int(frac) / 10 ** len(frac); timegm is linear in the time of day
        return float(epoch + hour * 3600 + minute * 60 + sec) + int(digits) / 10 ** len(digits)


def split_tags(msg: str) -> Tuple[List[str], str]:
    """``[a] [b] text`` -> (["a", "b"], "text").

    At most ``MAX_TAGS`` tags; the rest stays in the message. Walks by index and slices
    once, so a line of thousands of ``[x] `` stays linear.
    """
    tags: List[str] = []
    at = 0
    while msg.startswith("[", at) and len(tags) < MAX_TAGS:
        end = msg.find("]", at)
        if end < 0:
            break
        if end + 1 < len(msg) and msg[end + 1] != " ":
            break  # "[GET] …" inside a message is not a tag
        tags.append(msg[at + 1 : end])
        at = end + 2
    return tags, msg[at:] if at else msg


def request_key(tags: List[str]) -> str:
    """The tag that identifies the request: a UUID-like id, else the first tag."""
    if not tags or tags[0] == "ActiveJob":
        return ""
    for tag in tags:
        if UUIDISH.match(tag):
            return tag
    return tags[0]
