"""Every parser is total: any stream of lines yields events or nothing, never an exception.

Property-based (hypothesis) over every parser in ``agent.parsers.BY_NAME``:
(a) random text lines (any code point, NULs, lone surrogates, control characters);
(b) real lines from tests/fixtures/logs mutated the way hostile or broken logs are —
digit runs replaced by huge numbers, timestamps given zone offsets or garbage, lines
cut at random points, control characters inserted, tokens repeated into long lines.
Each example is a stream: ``feed(line, lineno)`` for every line, then ``finish()``.
Every event must carry a finite numeric ``ts`` or None.

The suite runs a bounded number of examples; for a long run set
``RAILWATCH_FUZZ_EXAMPLES`` (examples per parser and property), e.g. 20000.
"""
from __future__ import annotations

import math
import os
import re
from functools import lru_cache
from typing import Dict, List, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import Event
from agent.parsers import BY_NAME, sniff
from support import FIXTURES

EXAMPLES = int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 0)
FUZZ = settings(
    max_examples=EXAMPLES or 120,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PARSERS = sorted(BY_NAME)
LINES_PER_FILE = 400  # enough of each file's shapes, few enough to keep sampling cheap
DIGITS = re.compile(r"\d+")
STAMP = re.compile(r"\d\d:\d\d:\d\d(?:[.,]\d+)?")


@lru_cache(maxsize=None)
def fixture_lines() -> Dict[str, List[str]]:
    """Real lines by the format their file sniffs as ("" for files no format claims)."""
    by_format: Dict[str, List[str]] = {}
    for path in sorted(FIXTURES.rglob("*.log")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:LINES_PER_FILE]
        parser, _ = sniff(lines[:200])
        by_format.setdefault(parser.name if parser else "", []).extend(l for l in lines if l.strip())
    return by_format


def lines_for(name: str) -> List[str]:
    pool = fixture_lines()
    return pool.get(name) or [l for lines in pool.values() for l in lines]


def all_lines() -> List[str]:
    return [l for lines in fixture_lines().values() for l in lines]


HUGE_NUMBERS = st.sampled_from(["9" * 400, "1" * 5000, "1e999", "-0", "NaN", "inf", "٣٣", "00000000000000000000001", "1.2.3"])
ODD_ZONES = st.sampled_from(["+01:00", "-0530", "Z", "+99:99", "+", " UTC", "+01:00:00", "x", "." + "7" * 60, ""])
CONTROL = st.sampled_from(["\x00", "\x1b[", "\x1b[31m", "\r", "\x7f", "\u2028", "\ufffd", "\udcff", "\t", "\x0b", "]", "[", "(", ")"])


@st.composite
def mutated(draw: st.DrawFn, pool: Sequence[str]) -> str:
    line = draw(st.sampled_from(pool))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.integers(0, 5))
        if how == 0 and DIGITS.search(line):
            matches = list(DIGITS.finditer(line))
            m = matches[draw(st.integers(0, len(matches) - 1))]
            line = line[: m.start()] + draw(HUGE_NUMBERS) + line[m.end() :]
        elif how == 1 and STAMP.search(line):
            m = STAMP.search(line)
            assert m is not None
            line = line[: m.end()] + draw(ODD_ZONES) + line[m.end() :]
        elif how == 2:
            line = line[: draw(st.integers(0, len(line)))]
        elif how == 3:
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(CONTROL) + line[at:]
        elif how == 4 and line:
            at = draw(st.integers(0, len(line) - 1))
            end = min(len(line), at + draw(st.integers(1, 12)))
            line = line[:end] + line[at:end] * draw(st.integers(2, 2000)) + line[end:]
        elif how == 5:
            line = line + " " + draw(st.sampled_from(pool))  # two lines run together (a lost newline)
    return line


ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)


def run_stream(name: str, lines: Sequence[str]) -> List[Event]:
    parser = BY_NAME[name](f"fuzz/{name}.log")
    events: List[Event] = []
    for n, line in enumerate(lines, 1):
        events.extend(parser.feed(line, n))
    events.extend(parser.finish())
    for event in events:
        assert isinstance(event, Event)
        assert event.ts is None or (isinstance(event.ts, float) and math.isfinite(event.ts)), event
    return events


@pytest.mark.parametrize("name", PARSERS)
@FUZZ
@given(data=st.data())
def test_random_text_streams_never_raise(name: str, data: st.DataObject) -> None:
    lines = data.draw(st.lists(st.one_of(ANY_TEXT, mutated(all_lines())), max_size=12))
    run_stream(name, lines)


@pytest.mark.parametrize("name", PARSERS)
@FUZZ
@given(data=st.data())
def test_mutated_real_lines_never_raise(name: str, data: st.DataObject) -> None:
    pool = lines_for(name)
    # mostly the parser's own format, mutated; some untouched lines so held records open and close
    line = st.one_of(mutated(pool), st.sampled_from(pool), mutated(all_lines()))
    run_stream(name, data.draw(st.lists(line, min_size=1, max_size=25)))


def test_every_parser_has_real_lines_of_its_own_format() -> None:
    """The mutated-line property is only as good as its seeds."""
    missing = [name for name in PARSERS if not fixture_lines().get(name)]
    assert not missing, f"no fixture sniffs as {missing}: add one under tests/fixtures/logs"


LONG = 64 * 1024
RAILS_PREFIX = "I, [2024-05-01T12:00:00.123456 #1]  INFO -- : "
SIDEKIQ_PREFIX = "2024-05-01T12:00:00.000Z pid=1 tid=abc "
PG_PREFIX = "2024-05-01 12:00:00.000 UTC [1] LOG:  "
# (head, repeated token, tail): shapes that make a backtracking pattern or a slicing loop quadratic
ADVERSARIAL = [
    ("", " ", ""), ("", "9", ""), ("", "[a] ", ""), ("", "[3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] ", ""),
    ("", " (1.0ms)  ", ""), ("  ", " x (1ms) ", "(1ms)  "), ("Completed 200 ", " in 1", ""), ("Completed 200 OK in 5ms ", " (", ""),
    ("", "A::", " (x"), ("", "app/x.rb:1:in ", ""), ("I, [", " #1] ", ""), ("", "a='", ""), ('{"method":', '{"a":', ""),
    ("", "\x1b[", ""), ("", "\x00", ""), ("", "é字\u2028", ""), ("user: ", " ", ""), ("duration: 1.0 ms  statement: ", " ", ""),
    ("stats: ", "1 xact/s, ", ""), ("[1] ", "- ", ""), ('Started GET "/x" for 1 at ', " at ", ""), ("", "1.", ""),
]


def long_line(head: str, token: str, tail: str) -> str:
    body = token * ((LONG - len(head) - len(tail)) // len(token) + 1)
    return head + body[: LONG - len(head) - len(tail)] + tail


@pytest.mark.parametrize("name", PARSERS)
def test_64_kib_adversarial_lines_parse_without_error(name: str) -> None:
    """Each takes milliseconds (measured, not asserted here; see the README's fuzz line)."""
    for head, token, tail in ADVERSARIAL:
        line = long_line(head, token, tail)
        for prefix in ("", RAILS_PREFIX, SIDEKIQ_PREFIX, PG_PREFIX):
            run_stream(name, [prefix + line, prefix + line])
