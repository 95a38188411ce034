"""The parser interface: one class per log format.

A parser is built per input file and fed that file's lines in order. It may hold a
record back while it waits for continuation lines (a backtrace, the ``↳`` source line
of a SQL statement), so ``feed`` returns the events *completed* by this line and
``finish`` returns whatever is still held at end of input.

``sniff`` looks at the first lines of a file (envelope already stripped, ANSI codes
still in) and returns the share of them that this format recognises, 0.0 to 1.0.
"""
from __future__ import annotations

import re
from typing import Callable, ClassVar, List, Optional, Sequence

from agent.events import Event

NOTHING: List[Event] = []  # shared empty result; callers must not mutate it

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(line: str) -> str:
    return ANSI.sub("", line) if "\x1b" in line else line


class Parser:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, source: str) -> None:
        self.source = source
        self.unparsed = 0  # lines this format could not make sense of
        self.last_ts: Optional[float] = None  # for lines that carry no time of their own

    @classmethod
    def sniff(cls, lines: Sequence[str]) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:  # pragma: no cover
        """Parse one line (no trailing newline). ``ts_hint`` is the envelope's time
        (journald, container runtime, syslog) when the line has one."""
        raise NotImplementedError

    def feed_lines(self, lines: Sequence[str], first_lineno: int) -> List[Event]:
        """Parse consecutive lines, the first numbered ``first_lineno``; the same events as
        ``feed`` on each in turn. Parsers override it with a loop that keeps its state in
        locals (the per-line call is a third of the cost of a cheap line)."""
        out: List[Event] = []
        feed = self.feed
        for lineno, line in enumerate(lines, first_lineno):
            events = feed(line, lineno)
            if events:
                out.extend(events)
        return out

    def finish(self) -> List[Event]:
        return NOTHING


def share(lines: Sequence[str], test: Callable[[str], object]) -> float:
    """Share of non-blank lines for which ``test`` is true (a compiled pattern's ``.match`` will do)."""
    seen = hits = 0
    for line in lines:
        if not line.strip():
            continue
        seen += 1
        if test(line):
            hits += 1
    return hits / seen if seen else 0.0
