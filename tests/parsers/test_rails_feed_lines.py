"""RailsParser.feed_lines (the chunk loop the replay reader calls) gives exactly the events
of ``feed`` line by line: every field of every event, in order, and the same ``unparsed``.

On every fixture the Rails or lograge format is chosen for (tests/fixtures/logs, the corpus,
the e2e logs), on pairs of them interleaved as two processes write one log, fed in chunks of
1, 7, 1000 lines and the whole file; and (hypothesis) on random mixes of real line shapes and
junk. feed_lines reads the usual lines itself and hands the rest to feed, so any difference
in what the two make of a line, or in the state they leave behind, shows here.
"""
from __future__ import annotations

import dataclasses
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import List, Sequence, Tuple, Type

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parsers.choose import choose_format
from agent.parsers.rails import LogrageParser, RailsParser
from agent.sources.files import ReadStats, read_batches

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CHUNKS = (1, 7, 1000, 0)  # 0: the whole file in one call
LOGGER_PREFIX = re.compile(r"[DIWEFAU], \[")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIRROR = str.maketrans("0123456789abcdef", "fedcba9876543210")


def read(path: Path) -> List[str]:
    return [line for batch in read_batches(str(path), ReadStats()) for line in batch]


@lru_cache(maxsize=None)
def rails_fixtures() -> Tuple[Tuple[Path, Type[RailsParser]], ...]:
    found = []
    for path in sorted(FIXTURES.rglob("*")):
        if not path.is_file() or path.suffix not in (".log", ".txt", ".gz", ".bz2", ".xz"):
            continue
        parser, _ = choose_format([l for l in read(path)[:200] if l.strip()], None)
        if parser is not None and issubclass(parser, RailsParser):
            found.append((path, parser))
    return tuple(found)


def fields(events: Sequence[object]) -> List[Tuple[str, dict]]:
    return [(type(e).__name__, dataclasses.asdict(e)) for e in events]  # type: ignore[call-overload]


def by_feed(parser_type: Type[RailsParser], lines: Sequence[str]) -> Tuple[list, int]:
    parser = parser_type("production.log")
    out = []
    for n, line in enumerate(lines, 1):
        out.extend(parser.feed(line, n))
    out.extend(parser.finish())
    return fields(out), parser.unparsed


def by_chunks(parser_type: Type[RailsParser], lines: Sequence[str], size: int) -> Tuple[list, int]:
    parser = parser_type("production.log")
    out = []
    size = size or max(1, len(lines))
    for at in range(0, len(lines), size):
        out.extend(parser.feed_lines(lines[at : at + size], at + 1))
    out.extend(parser.finish())
    return fields(out), parser.unparsed


def assert_same(parser_type: Type[RailsParser], lines: Sequence[str]) -> None:
    want = by_feed(parser_type, lines)
    for size in CHUNKS:
        got = by_chunks(parser_type, lines, size)
        assert got[1] == want[1], f"unparsed differs with chunks of {size}"
        assert len(got[0]) == len(want[0]), f"event count differs with chunks of {size}"
        for g, w in zip(got[0], want[0]):
            assert g == w, f"chunks of {size}"


def logger_calls(lines: List[str]) -> List[List[str]]:
    calls: List[List[str]] = []
    for line in lines:
        if LOGGER_PREFIX.match(line) or not calls:
            calls.append([line])
        else:
            calls[-1].append(line)
    return calls


def interleave(a: List[str], b: List[str]) -> List[str]:
    """Two logs' logger calls alternating, the second with other request ids and pids."""
    other = [UUID.sub(lambda m: m.group(0).translate(MIRROR), l).replace(" #", " #9", 1) for l in b]
    first, second = logger_calls(a), logger_calls(other)
    out: List[str] = []
    for i in range(max(len(first), len(second))):
        for calls in (first, second):
            if i < len(calls):
                out.extend(calls[i])
    return out


def test_the_fixtures_cover_the_shapes_the_fast_path_reads() -> None:
    files = rails_fixtures()
    assert len(files) >= 20
    assert any(p.parent.parent.name == "e2e" for p, _ in files)
    assert any("corpus" in p.parts for p, _ in files)
    assert any(t is LogrageParser for _, t in files)
    text = "\n".join(l for p, _ in files for l in read(p))
    for shape in ("Started GET", "Processing by", "Completed 200", "  Rendered", "Parameters: ", "↳", "\x1b[", "FATAL", "user: "):
        assert shape in text, shape


@pytest.mark.parametrize("index", range(len(rails_fixtures())), ids=lambda i: str(rails_fixtures()[i][0].relative_to(FIXTURES)))
def test_feed_lines_equals_feed_on_each_fixture(index: int) -> None:
    path, parser_type = rails_fixtures()[index]
    assert_same(parser_type, read(path))


@pytest.mark.parametrize("index", range(len(rails_fixtures())), ids=lambda i: str(rails_fixtures()[i][0].relative_to(FIXTURES)))
def test_feed_lines_equals_feed_on_fixtures_interleaved(index: int) -> None:
    files = rails_fixtures()
    path, parser_type = files[index]
    other, _ = files[(index + 1) % len(files)]
    assert_same(parser_type, interleave(read(path), read(other)))
    assert_same(parser_type, interleave(read(path), read(path)))


def test_feed_lines_hands_state_to_feed_and_back() -> None:
    """A fallback line between fast ones: the same-second cache and the last time carry over."""
    lines = [
        "I, [2024-05-01T12:00:00.100000 #1]  INFO -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] Started GET \"/a\" for 1.2.3.4 at 2024-05-01 12:00:00 +0000",
        "I, [2024-05-01T12:00:00.200000 #1]  INFO -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] [extra] odd tag line",
        "I, [2024-05-01T12:00:00.300000+01:00 #1]  INFO -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] Processing by A#b as HTML",
        "bare line with no time",
        "I, [2024-05-01T12:00:01.400000 #1]  INFO -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77] Completed 200 OK in 5ms (Views: 1.0ms | ActiveRecord: 2.0ms (3 queries, 1 cached) | GC: 0.1ms | Allocations: 7)",
        "I, [2024-05-01T12:00:01.500000 #1]  INFO -- : Started GET \"/b\" for 1.2.3.4 at 2024-05-01 12:00:01 +0000",
        "D, [2024-05-01T12:00:01.600000 #1] DEBUG -- :   \x1b[1m\x1b[36mPost Load (0.3ms)\x1b[0m  \x1b[1m\x1b[34mSELECT 1\x1b[0m  [[\"id\", 1]]",
        "D, [2024-05-01T12:00:01.700000 #1] DEBUG -- :   ↳ app/x.rb:1",
        "I, [2024-05-01T12:00:01.800000 #1]  INFO -- : Completed 500 Internal Server Error in 9ms",
        "D, [2024-05-01T12:00:01.900000 #1] DEBUG -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77]   Post Load (0.3ms)  SELECT '  [x' FROM y",
    ]
    assert_same(RailsParser, lines)
    parser = RailsParser("p")
    events = parser.feed_lines(lines, 1) + parser.finish()
    assert [e.kind for e in events] == ["request", "sql", "request", "sql"]
    assert events[3].sql == "SELECT '  [x' FROM y" and events[3].binds == ""
    assert events[0].queries == 3 and events[0].cached == 1 and events[0].allocations == 7
    assert events[1].source_location == "app/x.rb:1" and events[2].request_id == "pid1.1"


def test_feed_lines_equals_feed_past_the_bounds_of_what_the_parser_remembers() -> None:
    """Over a thousand completed requests (the endpoint memory), then exceptions of the
    oldest ones; a held SQL line left waiting past the staleness bound; ANSI-coloured ↳ lines."""
    ids = [f"{n:08x}-8b1d-4e7a-9c55-2b8f0d6e1a77" for n in range(1100)]
    prefix = "I, [2024-05-01T12:00:{:02d}.{:06d} #7]  INFO -- : [{}] "
    lines = []
    for n, uid in enumerate(ids):
        p = prefix.format(n % 60, n, uid)
        lines += [p + f'Started GET "/{n}" for 1.2.3.4 at x', p + f"Processing by C{n}#a as HTML", p + "Completed 200 OK in 1ms"]
    for n in (0, 74, 75, 76, 77, 1099):
        p = prefix.format(0, n, ids[n]).replace("I,", "F,").replace(" INFO", "FATAL")
        lines += [p, p + "RuntimeError (boom):", p + "app/x.rb:1:in `a'"]
    d = "D, [2024-05-01T12:00:59.000001 #7] DEBUG -- : [{}] "
    lines += [d.format(ids[0]) + "  \x1b[1m\x1b[36mPost Load (0.3ms)\x1b[0m  \x1b[1mSELECT 1\x1b[0m"]
    lines += [d.format(ids[1]) + "  Post Load (0.3ms)  SELECT 2", d.format(ids[0]) + "  \x1b[1m↳ app/models/post.rb:3\x1b[0m"]
    lines += [d.format(ids[2]) + "Completed 200 OK in 1ms"] * 500 + [d.format(ids[1]) + "  ↳ app/y.rb:2"]
    assert_same(RailsParser, lines)
    parser = RailsParser("p")
    events = parser.feed_lines(lines, 1) + parser.finish()
    errors = [e for e in events if e.kind == "error"]
    assert [e.endpoint for e in errors] == ["", "", "", "C76#a", "C77#a", "C1099#a"]  # the 1,024 latest are remembered
    sql = [e for e in events if e.kind == "sql"]
    assert [e.source_location for e in sql] == ["app/models/post.rb:3", ""]  # the second went stale first


def test_a_one_call_record_made_between_sql_lines_is_released_by_the_next_call() -> None:
    """SQL lines (never one-call records) let feed_lines skip the look for one-call records;
    an exception written without prefix in between is one, and the next logger call of
    another request must still release it, as feed does."""
    d = "D, [2024-05-01T12:00:00.{:06d} #7] DEBUG -- : [{}] "
    a, b = "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77", "0d6e1a77-8b1d-4e7a-9c55-2b8f3f2c9a0e"
    lines = [
        d.format(1, a) + "  Post Load (0.3ms)  SELECT 1",
        d.format(2, b) + "  Post Load (0.3ms)  SELECT 2",
        d.format(3, a) + "  ↳ app/a.rb:1",
        d.format(4, b) + "  ↳ app/b.rb:2",
        "RuntimeError (boom):",
        "app/c.rb:3:in `x'",
        d.format(5, b) + "  Post Load (0.3ms)  SELECT 3",
    ] + [d.format(6 + n, a) + "  Rendered x" for n in range(10)]
    assert_same(RailsParser, lines)
    parser = RailsParser("p")
    events = parser.feed_lines(lines, 1)
    assert [e.kind for e in events] == ["sql", "sql", "error"]  # the error before the 10 later lines end


def test_feed_lines_equals_feed_on_sql_lines_sharing_their_head() -> None:
    """feed_lines remembers what the head of a SQL line (up to its first "ms)  ") reads as;
    lines with the same head and other tails, or a head SQL's pattern reads past, read alike."""
    tail = ["SELECT 1", "SELECT 'ms)  '  [[\"id\", 1]]", "  [x]", "", "B (2ms)  C", "(3ms)  D"]
    heads = ["  Post Load (1.5ms)  ", "  CACHE Post Load (1.5ms)  ", "  Post Load (1.5ms) (db time 2ms)  ", "  A (1xms)  ", "  A (1ms) (db time 1xms)  ", "   ms)  "]
    prefix = "D, [2024-05-01T12:00:00.{:06d} #7] DEBUG -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a7{}] "
    lines = [prefix.format(n, n % 10) + h + t for n, (h, t) in enumerate((h, t) for t in tail for h in heads for _ in range(2))]
    assert_same(RailsParser, lines)
    parser = RailsParser("p")
    sql = [e for e in parser.feed_lines(lines, 1) + parser.finish() if e.kind == "sql"]
    assert {(e.name, e.duration_ms, e.cached) for e in sql} >= {("Post Load", 1.5, False), ("Post Load", 2.0, False), ("Post Load", 1.5, True), ("A (1xms)  B", 2.0, False)}


# ----- random mixes of real shapes and junk ----------------------------------------------
UID = "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77"
PREFIXES = [
    "I, [2024-05-01T12:00:00.123456 #4321]  INFO -- : ",
    "I, [2024-05-01T12:00:00.9 #4321]  INFO -- : ",
    "I, [2024-05-01T12:00:01.123456 #77]  INFO -- : ",
    "D, [2024-05-01T12:00:01.000001 #77] DEBUG -- : ",
    "F, [2024-05-01T12:00:01.123456 #77] FATAL -- : ",
    "E, [2024-05-01T12:00:01.5 #77] ERROR -- : ",
    "W, [2024-05-01T12:00:02.123456 #4321]  WARN -- : ",
    "I, [2024-13-45T99:99:99.123456 #1]  INFO -- : ",
    "I, [2024-05-01T12:00:00.1234567890123 #1]  INFO -- : ",
    "I, [2024-05-01T12:00:00.123456+02:00 #1]  INFO -- : ",
    "I, [2024-05-01T12:00:00.123456 #1]  INFO -- prog: ",
    "I, [99999-05-01T12:00:00.123456 #1]  INFO -- : ",
    "",
]
TAGS = ["", f"[{UID}] ", "[0d6e1a77-8b1d-4e7a-9c55-2b8f3f2c9a0e] ", f"[{UID}] [ActiveJob] ", "[pd6e1a77-8b1]-4e7a-9c55-2b8f3f2c9a0e] [ActiveJob] ",
        f"[{UID}] [ActiveJob] [x] ", f"[{UID}] [ActiveJob]", "[ActiveJob] ", "[GET] ", "[abc] ", f"[{UID}]", "[pid-x] ", "[]"]
MESSAGES = [
    'Started GET "/posts" for 1.2.3.4 at 2024-05-01 12:00:00 +0000',
    'Started POST "/p" for ::1 at nonsense',
    "Started ",
    "Processing by PostsController#index as HTML",
    "Processing by Admin::X#y as */*",
    "Processing by broken",
    "Completed 200 OK in 11ms (Views: 0.5ms | ActiveRecord: 4.0ms | Allocations: 9557)",
    "Completed 500 Internal Server Error in 99999999999999999999999999999999999999999999ms (ActiveRecord: 1e400ms)",
    "Completed 200 OK in 3ms (Views: 1ms | ActiveRecord: 99999999999999999.5ms (18446744073709551616 queries, 3 cached))",
    "Completed 302 Found in 3ms (ActiveRecord: 0.0ms | Allocations: 12)",
    "Completed ٢٠٠ OK in ١١ms (Views: ١.٥ms | ActiveRecord: ٤ms (٣ queries, ٠ cached) | Allocations: ٩)",
    "Completed 200 OK in 999999999999999ms (Views: 99999999999999.9ms | ActiveRecord: 1000000000000000ms | Allocations: 9999999999999999)",
    "Completed 200 OK in 1000000000000001ms (ActiveRecord: 0.0000000000000000000000000000000000000001ms (999999999999999 queries, 1 cached))",
    "Completed 200 OK in 5ms (Views: 1ms | ActiveRecord: 2ms) trailing",
    "Completed 200 OK in 9999999999999999ms (ActiveRecord: 1000000000000001ms (9999999999999999 queries, 1000000000000000 cached))",
    "Completed 200 OK in 5ms in 6ms (ActiveRecord: 2ms)",
    "Completed in 12ms (View: 3 | DB: 4) with 200",
    "Completed 200 OK in 3ms (Views: 1.0ms | ActiveRecord: 2.0ms (1 query, 0 cached) | GC: 0.0ms)",
    "  Rendered posts/index.html.erb within layouts/application (Duration: 1.0ms | Allocations: 3)",
    "  Rendering layout",
    '  Parameters: {"id"=>"1"}',
    '  Parameters: {"x"=>"Foo (3ms)  bar"}',
    '  Post Load (0.3ms)  SELECT "posts".* FROM "posts"  [["id", 1]]',
    "  CACHE ASYNC Post Count (0.1ms) (db time 99999999999999999ms)  SELECT 1  [x]",
    "  Post Load (١.٢ms)  SELECT 2",
    "  A (1xms)  B (2ms)  C",
    "  A (1xms)  zzz",
    "  Post Load (1.5ms) (db time 2ms)  SELECT 1",
    "  Post Load (1.5ms)  SELECT 'ms)  '",
    "  Post Load (0.3ms)  SELECT '  [not binds' FROM x",
    "  Post Load (0.3ms)    [[\"id\", 1]]",
    "  \x1b[1m\x1b[36mCACHE Post Load (0.0ms)\x1b[0m  \x1b[1m\x1b[34mSELECT 1\x1b[0m",
    "  \x1b[1m\x1b[35mTRANSACTION (0.1ms)\x1b[0m  \x1b[1m\x1b[35mBEGIN\x1b[0m",
    "  \x1b[\x1b[0mm odd escape (1ms)  x",
    "  ↳ app/views/posts/index.html.erb:12",
    "  ↳ ",
    "  Completed 200 OK in 1ms)  x",
    "",
    "   ",
    "ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 5.000 seconds):",
    "ActionView::Template::Error (undefined method",
    "  more of the message",
    "):",
    "app/controllers/posts_controller.rb:7:in `index'",
    "  15: %section",
    "Error performing OkJob (Job ID: 1-2) from Sidekiq(default) in 3.1ms: RuntimeError (boom):",
    "user: root",
    "GET /posts",
    "USE eager loading detected",
    "  Post => [:author]",
    "  Add to your query: .includes([:author])",
    "Call stack",
    "  /app/views/posts/index.html.erb:5:in `block'",
    "method=GET path=/posts format=html controller=PostsController action=index status=200 duration=58.33 view=40.43 db=15.26",
    '{"method":"GET","path":"/x","controller":"A","action":"b","status":200,"duration":1e999}',
    "Redirected to http://x/",
    "Enqueued OkJob (Job ID: 1-2) to Sidekiq(default) with arguments: 1",
    "Enqueued (Job ID: 1-2) to Sidekiq(default):",
    "Enqueued X (3ms)  SELECT 1",
    "Enqueued ",
    "random words here",
]
@lru_cache(maxsize=None)
def real_lines() -> Tuple[str, ...]:
    return tuple(l for path, _ in rails_fixtures() for l in read(path)[:300])


DIGITS = re.compile(r"\d+")


def mutated(line: str, how: int, at: int) -> str:
    """A real line broken the way hostile logs are: a number made huge, cut, doubled."""
    runs = list(DIGITS.finditer(line))
    if how == 0 and runs:
        run = runs[at % len(runs)]
        return line[: run.start()] + "9" * (5 + at % 400) + line[run.end() :]
    if how == 1:
        return line[: at % (len(line) + 1)]
    return line + line[at % (len(line) + 1) :]


JUNK = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=40)
LINE = st.one_of(
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(TAGS), st.sampled_from(MESSAGES)).map("".join),
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(TAGS), JUNK).map("".join),
    st.tuples(st.sampled_from(PREFIXES), JUNK).map("".join),
    st.sampled_from(MESSAGES),
    JUNK,
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(MESSAGES), st.integers(0, 120)).map(lambda t: (t[0] + t[1])[: t[2]]),
    st.builds(lambda i: real_lines()[i % len(real_lines())], st.integers(0, 10**6)),
    st.builds(lambda i, how, at: mutated(real_lines()[i % len(real_lines())], how, at), st.integers(0, 10**6), st.integers(0, 2), st.integers(0, 10**4)),
)


# RAILWATCH_FUZZ_EXAMPLES raises it for a long run, as in tests/fuzz/
@settings(max_examples=int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 300), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(LINE, max_size=120), st.sampled_from([RailsParser, LogrageParser]))
def test_feed_lines_equals_feed_on_random_mixes(lines: List[str], parser_type: Type[RailsParser]) -> None:
    assert_same(parser_type, lines)


def test_positional_event_builders_equal_keyword_construction() -> None:
    """feed_lines builds Sql and Request positionally (rails.new_sql / new_request); the keyword
    adapters that take over when a dataclass's fields move give the same event."""
    from agent.parsers import rails

    sql_values = (1.5, "s", 3, "raw", "rid", "Post Load", 0.3, "SELECT 1", "[]", True, "", "77")
    request_values = (1.5, "s", 3, "raw", "rid", "GET", "/p", "A#b", 200, 5.0, 1.0, 2.0, 3, 1, 7, "", "77")
    assert rails.new_sql is rails.Sql and rails.new_request is rails.Request  # the fields are in that order today
    for build, adapter, values in ((rails.Sql, rails._sql_by_keywords, sql_values), (rails.Request, rails._request_by_keywords, request_values)):
        assert dataclasses.asdict(build(*values)) == dataclasses.asdict(adapter(*values))
        assert [getattr(adapter(*values), f.name) for f in dataclasses.fields(build)] == list(values)


def test_feed_lines_equals_feed_when_its_memories_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """What feed_lines remembers of messages (Started, Processing, Completed, SQL heads) is cleared
    when full: with bounds of 3, every fixture still reads as feed reads it."""
    from agent.parsers import rails

    for bound in ("MAX_SQL_HEADS", "MAX_REMEMBERED_COMPLETED", "MAX_REMEMBERED_MESSAGES"):
        monkeypatch.setattr(rails, bound, 3)
    d = "D, [2024-05-01T12:00:00.{:06d} #7] DEBUG -- : [3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a7{}] "
    made = []
    for n in range(60):  # heads and Completed messages that come back after the memory was cleared
        p = d.format(n, n % 3)
        made += [p + f"  Post Load ({n % 7}.{n % 4}ms)  SELECT {n % 5}  [[\"id\", {n}]]", p + "  ↳ app/x.rb:1"]
        made += [p + f"Completed 200 OK in {n % 6}ms (Views: {n % 5}.0ms | ActiveRecord: 1.{n % 4}ms (3 queries, 1 cached))"]
    lines = made + [l for path, _ in rails_fixtures() for l in read(path)]
    assert_same(RailsParser, lines)
