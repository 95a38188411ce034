"""Bullet gem warnings: ``log/bullet.log`` entries, and the same blocks inside a Rails log.

Matched shape (flyerhzm/bullet ``lib/bullet/notification/*.rb``; UniformNotifier's BulletLogger
writes ``<%Y-%m-%d %H:%M:%S>[WARN] `` before the first line; each part is optional but the title):

    2022-12-12 15:35:59[WARN] user: s.dastan                     whoami (absent when $USER is empty)
    GET /api/v1/accounts/1/conversations?status=open              the request (absent outside a request)
    USE eager loading detected                                    or "USE eager loading in <path>", "N+1 Query detected" (old)
      Message => [:inbox]                                         "AVOID eager loading …" / "Unused Eager Loading …" (old)
      Add to your query: .includes([:inbox])                      "Need Counter Cache"
    Call stack
      /app/models/message.rb:152:in `content'
                                                                  a blank line ends the entry

Each entry becomes one ``Bullet`` event: detection ("n_plus_one", "unused_eager_loading",
"counter_cache"), model, associations, request ("GET /path", query string dropped) and the
first frames of the call stack. ``parse_bullet_block`` does the same for the lines of one
Bullet warning logged through ``Rails.logger`` (``Bullet.rails_logger = true``).
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from agent.events import Bullet, Event
from agent.parsers.base import NOTHING, Parser
from agent.parsers.numbers import safe_iso

HEADER = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\[([A-Z]+)\] ?(.*)")
REQUEST = re.compile(r"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+)$")
MODEL_LINE = re.compile(r"\s+((?:[A-Z]\w*::)*[A-Z]\w*) => \[(.*)\]\s*$")
ASSOCIATION = re.compile(r"\w+[?!]?")
#: title prefix -> detection
TITLES: Tuple[Tuple[str, str], ...] = (
    ("USE eager loading", "n_plus_one"),
    ("N+1 Query", "n_plus_one"),
    ("AVOID eager loading", "unused_eager_loading"),
    ("Unused Eager Loading", "unused_eager_loading"),
    ("Need Counter Cache", "counter_cache"),
)
TITLE_STARTS = tuple(prefix for prefix, _ in TITLES)
MAX_CALL_STACK = 10
MAX_ENTRY_LINES = 200


def detection_of(line: str) -> str:
    """The detection a Bullet title line announces; "" when the line is not a title."""
    if not line.startswith(TITLE_STARTS):  # most lines: one call says no
        return ""
    for prefix, detection in TITLES:
        if line.startswith(prefix):
            return detection
    return ""


def looks_like_bullet_start(message: str) -> bool:
    """Whether a logged message opens a Bullet warning (for parsers that embed Bullet blocks)."""
    return message.startswith("user: ") or detection_of(message) != ""


def parse_bullet_block(
    lines: Sequence[str], ts: Optional[float] = None, source: str = "", line: int = 0
) -> Optional[Bullet]:
    """One Bullet warning from its lines (logger prefix already removed from the first).

    ``lines`` is e.g. ``["user: root", "GET /posts", "USE eager loading detected",
    "  Post => [:author]", "  Add to your query: .includes([:author])", "Call stack",
    "  /app/views/posts/index.html.erb:5:in `block in …'", ""]``. Returns None when no
    Bullet title is among them. ``raw`` is the lines joined by "\\n" (trailing blanks cut).
    """
    detection = model = request = ""
    associations: Tuple[str, ...] = ()
    stack: List[str] = []
    in_stack = False
    for text in lines:
        if not text.strip():
            continue
        if in_stack:
            if text[:1] in (" ", "\t") and len(stack) < MAX_CALL_STACK:
                stack.append(text.strip())
            continue
        if not detection:
            found = detection_of(text)
            if found:
                detection = found
                continue
            m = REQUEST.match(text)
            if m is not None:
                path = m[2].split("?", 1)[0]
                request = f"{m[1]} {path}"
            continue
        if text.startswith("Call stack") or text.startswith("N+1 Query method call stack"):
            in_stack = True
            continue
        if not model:
            m = MODEL_LINE.match(text)
            if m is not None:
                model = m[1]
                associations = tuple(ASSOCIATION.findall(m[2]))
    if not detection:
        return None
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    return Bullet(
        ts=ts, source=source, line=line, raw="\n".join(lines[:end]), detection=detection, model=model,
        associations=associations, request=request, call_stack=tuple(stack),
    )


class BulletParser(Parser):
    """Bullet's own log file (``Bullet.bullet_logger = true``): one event per warning."""

    name = "bullet"
    description = "Bullet gem log (log/bullet.log)"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._lines: List[str] = []  # the entry's lines, timestamp prefix removed from the first
        self._raw: List[str] = []  # the same lines as written
        self._start = 0
        self._ts: Optional[float] = None
        self._stack_seen = False

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:
        seen = hits = 0
        in_entry = False
        for text in lines:
            if not text.strip():
                continue
            seen += 1
            if HEADER.match(text):
                in_entry = True
                hits += 1
            elif in_entry and (
                text[:1] == " " or text.startswith("Call stack") or detection_of(text) or REQUEST.match(text)
            ):
                hits += 1  # body lines only count inside an entry: indented paths alone prove nothing
        return hits / seen if seen else 0.0

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        m = HEADER.match(line) if line[:1].isdigit() else None
        if m is not None:
            out = self._emit()
            self._lines = [m[3]]
            self._raw = [line]
            self._start = lineno
            ts = safe_iso(m[1])
            self._ts = ts if ts is not None else (ts_hint if ts_hint is not None else self.last_ts)
            if self._ts is not None:
                self.last_ts = self._ts
            self._stack_seen = False
            return out
        if not self._start:
            if line.strip():
                self.unparsed += 1
            return NOTHING
        if not line.strip():
            # a blank line ends the entry once its call stack has been written
            if self._stack_seen and len(self._lines) > 1 and self._lines[-1].strip():
                return self._emit()
            if len(self._lines) < MAX_ENTRY_LINES:
                self._lines.append(line)
                self._raw.append(line)
            return NOTHING
        if line.startswith("Call stack") or line.startswith("N+1 Query method call stack"):
            self._stack_seen = True
        if len(self._lines) < MAX_ENTRY_LINES:
            self._lines.append(line)
            self._raw.append(line)
        return NOTHING

    def finish(self) -> List[Event]:
        return self._emit()

    def _emit(self) -> List[Event]:
        if not self._start:
            return NOTHING
        lines, raw, start = self._lines, self._raw, self._start
        self._lines, self._raw, self._start = [], [], 0
        event = parse_bullet_block(lines, ts=self._ts, source=self.source, line=start)
        if event is None:
            self.unparsed += len(lines)
            return NOTHING
        end = len(raw)
        while end > 1 and not raw[end - 1].strip():
            end -= 1
        event.raw = "\n".join(raw[:end])
        return [event]
