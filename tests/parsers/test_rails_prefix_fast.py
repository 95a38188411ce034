"""The Logger prefix read by one regex match (the usual shape) gives the same fields as the
string slicing it replaced on the hot path (issue 18), on every prefixed line of the fixtures
and corpus, and on hand-made odd shapes that must fall back."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

from agent.parsers.numbers import bounded_float
from agent.parsers.rails import RailsParser
from agent.parsers.rails_lines import PLAIN_PREFIX

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def prefixed_lines() -> Iterator[str]:
    for path in sorted(FIXTURES.rglob("*")):
        if not path.is_file() or path.suffix not in (".log", ".gz", ".txt"):
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
                for line in fh:
                    line = line.rstrip("\n")
                    if len(line) > 4 and line[1] == "," and line[3] == "[":
                        yield line
        except (OSError, EOFError):
            continue


def test_fast_and_slow_prefix_reading_agree_on_every_real_prefixed_line() -> None:
    fast, slow = RailsParser("f"), RailsParser("s")
    matched = 0
    for line in prefixed_lines():
        matched += PLAIN_PREFIX.match(line) is not None
        # both parsers see the same sequence, so their same-second caches evolve alike
        assert fast._split_prefix(line) == slow._split_prefix_slowly(line), line
    assert matched > 1000  # the fast path really ran on the corpus


def test_odd_prefixes_fall_back_and_still_agree() -> None:
    odd = [
        "I, [2024-05-01T12:00:00.123456 #4321]  INFO -- app: progname before the colon",
        "I, [2024-05-01T12:00:00+01:00 #4321]  INFO -- : a zone offset, no fraction",
        "I, [2024-05-01T12:00:00.1234567890123 #4321]  INFO -- : a fraction too long for the cache",
        "I, [2024-05-01T12:00:00.123456 #4321]INFO -- : no space before the level",
        "I, [2024-13-45T12:00:00.123456 #4321]  INFO -- : no such date",
        "I, [2024-05-01T12:00:00.１２３ #4321]  INFO -- : non-ASCII digits",
    ]
    for line in odd:
        assert PLAIN_PREFIX.match(line) is None or "no such date" in line
        assert RailsParser("f")._split_prefix(line) == RailsParser("s")._split_prefix_slowly(line), line


def test_bounded_float_text_fast_path_keeps_its_bounds() -> None:
    assert bounded_float("58.3") == 58.3
    assert bounded_float("nan") is None and bounded_float("inf") is None and bounded_float("-inf") is None
    assert bounded_float("1e16") is None and bounded_float("1e15") == 1e15
    assert bounded_float("") is None and bounded_float("9" * 41) is None and bounded_float("x") is None
    assert bounded_float("5", limit=4) is None
