"""One file written by two kinds of process: a parser per format, each line to its owner.

A Rails app whose Sidekiq workers log to the same ``production.log`` as Puma (Sidekiq's
logger pointed at ``Rails.logger``'s device, or both on one container's STDOUT) gives a
file whose lines are Rails Logger lines *and* Sidekiq lines. One parser picked from the
file's head would read one kind and count the other as unparsed, so a failure storm in
the worker lines would go unseen. ``mixed_parser(primary, secondary)`` builds a parser
that owns one instance of each and hands every line to the format whose line shape it
has (``claims``); a line neither claims (a backtrace line, a wrapped message) continues
the record of the format that had the previous line.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type

from agent.events import Event
from agent.parsers.base import Parser

#: a second format must own at least this share of the sample's lines (lines the first
#: format does not claim) before a file is read as mixed; below it, stray lines stay unparsed
MIN_SECOND_SHARE = 0.1
MIN_SECOND_LINES = 3


def claims(parser: Type[Parser], line: str) -> bool:
    """Does this line have the parser's own line shape? (Its sniff, on one line.)"""
    return parser.sniff((line,)) >= 1.0


def second_format(sample: Sequence[str], first: Type[Parser], formats: Sequence[Type[Parser]]) -> Optional[Type[Parser]]:
    """The format that owns a fair share of the lines ``first`` does not, if any."""
    rest = [l for l in sample if l.strip() and not claims(first, l)]
    seen = sum(1 for l in sample if l.strip())
    best: Optional[Type[Parser]] = None
    best_lines = 0
    for other in formats:
        if issubclass(other, first) or issubclass(first, other):
            continue  # one reads the other's lines already (lograge is Rails with one-line requests)
        owned = sum(1 for l in rest if claims(other, l))
        if owned > best_lines:
            best, best_lines = other, owned
    if best is None or best_lines < MIN_SECOND_LINES or best_lines < MIN_SECOND_SHARE * seen:
        return None
    return best


class _MixedParser(Parser):
    parts: Tuple[Type[Parser], Type[Parser]]

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._parsers = [cls(source) for cls in self.parts]
        self._last = self._parsers[0]

    def feed(self, line: str, lineno: int, ts_hint: Optional[float] = None) -> List[Event]:
        first, second = self.parts
        if claims(first, line):
            target = self._parsers[0]
        elif claims(second, line):
            target = self._parsers[1]
        else:
            target = self._last  # a continuation of whatever came before it
        self._last = target
        return target.feed(line, lineno, ts_hint)

    def finish(self) -> List[Event]:
        out: List[Event] = []
        for p in self._parsers:
            out.extend(p.finish())
        return out

    @property  # type: ignore[override]
    def unparsed(self) -> int:
        return sum(p.unparsed for p in getattr(self, "_parsers", ()))

    @unparsed.setter
    def unparsed(self, value: int) -> None:  # the base class sets it to 0; the parts keep their own
        pass


_BUILT: Dict[Tuple[str, str], Type[Parser]] = {}


def mixed_parser(first: Type[Parser], second: Type[Parser]) -> Type[Parser]:
    """The parser class reading ``first``'s and ``second``'s lines from one file (named ``a+b``)."""
    key = (first.name, second.name)
    if key not in _BUILT:
        _BUILT[key] = type(
            f"Mixed_{first.name}_{second.name}", (_MixedParser,),
            {"name": f"{first.name}+{second.name}", "description": f"{first.name} and {second.name} lines in one file",
             "parts": (first, second)},
        )
    return _BUILT[key]
