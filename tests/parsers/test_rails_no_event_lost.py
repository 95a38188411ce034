"""No record is lost between the Rails parser and the detectors (issue 12, item 0).

Every Rails/lograge fixture is fed line by line, alone and interleaved with every other
as multi-process logs interleave (logger calls of two processes, with distinct request
ids and pids, alternating), and the events are compared with an independent count made
by simple patterns over the raw lines: exception headers, Bullet warnings and completed
requests.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List

import pytest

from agent.events import Error
from agent.parsers.choose import choose_format
from agent.parsers.rails import RailsParser
from support import FIXTURES, feed_lines

# independent of agent/parsers/rails_lines.py on purpose: what a person would grep for
AFTER_PREFIX_OR_TAG = r"(?:^|\] |: )"
EXCEPTION_HEADER = re.compile(AFTER_PREFIX_OR_TAG + r"(?:[A-Z]\w*::)*[A-Z]\w* \(")
BULLET_HEADER = re.compile(AFTER_PREFIX_OR_TAG + r"user: ")
REQUEST_DONE = re.compile(r"Completed \d{3} |Completed in \d|" + AFTER_PREFIX_OR_TAG + r'(?:method=[A-Z]+ |\{"method":)')
LOGGER_PREFIX = re.compile(r"[DIWEFAU], \[\S+ #(\d+)\]")
TAG = re.compile(r"^(?:[DIWEFAU], \[[^\]]*\] +\w+ -- [^:]*: )?\[([^\]]+)\]")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIRROR = str.maketrans("0123456789abcdef", "fedcba9876543210")


def rails_fixtures() -> List[Path]:
    found = []
    for path in sorted(FIXTURES.rglob("*.log")):
        parser, _ = choose_format([l for l in read(path)[:200] if l.strip()], None)
        if parser is not None and parser.name in ("rails", "lograge"):  # not a log shared with Sidekiq
            found.append(path)
    return found


def read(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def expected(lines: List[str]) -> Dict[str, int]:
    return {
        "error": sum(1 for l in lines if EXCEPTION_HEADER.search(l)),
        "bullet": sum(1 for l in lines if BULLET_HEADER.search(l)),
        "request": sum(1 for l in lines if REQUEST_DONE.search(l)),
    }


def parsed(lines: List[str]) -> Dict[str, int]:
    counts = Counter(e.kind for e in feed_lines(RailsParser("production.log"), lines))
    return {kind: counts[kind] for kind in ("error", "bullet", "request")}


def logger_calls(lines: List[str]) -> List[List[str]]:  # noqa: C901 - one rule per shape
    """A file cut into what one process wrote at once.

    A Logger prefix starts a call; lines without one (Bullet's body, a tagged exception
    report, bare Rails 8 lines) belong to it. Files with no prefix at all are cut where
    the request tag changes, and untagged ones at each ``Started`` (whole requests).
    """
    prefixed = any(LOGGER_PREFIX.match(l) for l in lines)
    tagged = any(TAG.match(l) for l in lines)
    calls: List[List[str]] = []
    last_tag = None
    for line in lines:
        if prefixed:
            starts = LOGGER_PREFIX.match(line) is not None
        elif tagged:
            m = TAG.match(line)
            starts = m is not None and m.group(1) != last_tag
            last_tag = m.group(1) if m else last_tag
        else:
            starts = "Started " in line
        if starts or not calls:
            calls.append([line])
        else:
            calls[-1].append(line)
    return calls


def as_another_process(lines: List[str]) -> List[str]:
    """The same log as written by another process: other request ids, other pids."""
    out = []
    for line in lines:
        line = UUID.sub(lambda m: m.group(0).translate(MIRROR), line)
        out.append(LOGGER_PREFIX.sub(lambda m: m.group(0).replace("#" + m.group(1), "#9" + m.group(1)), line, count=1))
    return out


def interleave(a: List[str], b: List[str]) -> List[str]:
    """Both files' logger calls alternating, the shorter one spread evenly over the longer
    (round-robin in proportion), as two busy processes write one shared log."""
    first, second = logger_calls(a), logger_calls(as_another_process(b))
    placed = [((i + 0.5) / len(first), 0, call) for i, call in enumerate(first)]
    placed += [((j + 0.5) / len(second), 1, call) for j, call in enumerate(second)]
    return [line for _, _, call in sorted(placed, key=lambda p: (p[0], p[1])) for line in call]


def shape(lines: List[str]) -> str:
    """How the file's lines say who wrote them: a Logger prefix, request tags only, or nothing."""
    if any(LOGGER_PREFIX.match(l) for l in lines):
        return "prefixed"
    return "tagged" if any(TAG.match(l) for l in lines) else "bare"


FILES = rails_fixtures()
# processes of one app write one shape; a bare line between another process's prefixed
# lines cannot be told apart from a continuation line, so shapes are not mixed
PAIRS = [(a, b) for a, b in itertools.combinations_with_replacement(FILES, 2) if shape(read(a)) == shape(read(b))]


def test_there_are_rails_fixtures_with_every_kind_of_record():
    total = Counter()
    for path in FILES:
        total.update(expected(read(path)))
    assert len(FILES) >= 10 and all(total[k] > 0 for k in ("error", "bullet", "request"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_each_fixture_yields_every_record_it_contains(path: Path):
    lines = read(path)
    assert parsed(lines) == expected(lines)


@pytest.mark.parametrize("first,second", PAIRS, ids=lambda p: p.parent.name + "/" + p.name)
def test_two_processes_interleaved_lose_no_record(first: Path, second: Path):
    lines = interleave(read(first), read(second))
    want = Counter(expected(read(first)))
    want.update(expected(read(second)))
    assert parsed(lines) == dict(want)


@pytest.mark.parametrize("first,second", PAIRS, ids=lambda p: p.parent.name + "/" + p.name)
def test_interleaved_exception_reports_keep_their_own_message_and_backtrace(first: Path, second: Path):
    """Source excerpts and backtrace lines stay with their record, whatever lands between them."""
    other = as_another_process(read(second))
    alone = Counter(error_shapes(read(first)) + error_shapes(other))
    assert Counter(error_shapes(interleave(read(first), read(second)))) == alone


def error_shapes(lines: List[str]) -> List[tuple]:
    return [
        (e.error_class, e.message, e.backtrace, e.request_id)
        for e in feed_lines(RailsParser("production.log"), lines)
        if isinstance(e, Error)
    ]


def test_a_bullet_warning_between_two_fatal_lines_of_another_request_is_kept():
    """The reported case: request A's FATAL header, request B's Bullet block, A's next FATAL line."""
    a, b = "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77", "c0d3c0d3-8b1d-4e7a-9c55-2b8f0d6e1a77"
    lines = [
        f"F, [2024-05-01T12:00:00.100000 #1] FATAL -- : [{a}]   ",
        f"F, [2024-05-01T12:00:00.100100 #1] FATAL -- : [{a}] ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 5.000 seconds):",
        f"W, [2024-05-01T12:00:00.100200 #2]  WARN -- : [{b}] user: root",
        "GET /posts",
        "USE eager loading detected",
        "  Post => [:author]",
        "  Add to your query: .includes([:author])",
        "Call stack",
        "  /app/app/controllers/posts_controller.rb:7:in `index'",
        f"F, [2024-05-01T12:00:00.100300 #1] FATAL -- : [{a}]   ",
        f"F, [2024-05-01T12:00:00.100400 #1] FATAL -- : [{a}] app/controllers/posts_controller.rb:7:in `index'",
    ]
    events = feed_lines(RailsParser("production.log"), lines)
    assert sorted(e.kind for e in events) == ["bullet", "error"]
    (error,) = [e for e in events if isinstance(e, Error)]
    assert error.backtrace == ("app/controllers/posts_controller.rb:7:in `index'",)
