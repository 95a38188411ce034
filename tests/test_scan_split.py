"""One big file on several cores (``agent.scan_split``): the same events and incidents as
one process reading it, on the e2e fixtures and every Rails-format fixture and corpus file.

The fixtures are small, so the split is forced (no size minimum) and the warm-up before
each range is cut to a few KiB: far less than the 4 MiB a real run reads, so any parser
state that outlives the warm-up shows up here as a difference.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest

from agent import event_spill, scan_split
from agent.scan import scan
from agent.scan_split import plan, split_events, splittable
from agent.sources.replay import iter_events

FIXTURES = Path(__file__).resolve().parent / "fixtures"
E2E = sorted(p for p in (FIXTURES / "logs" / "e2e").glob("*/production.log"))


def rails_files() -> List[Path]:
    found = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and path.suffix in (".log", ".txt") and splittable(str(path), None, min_bytes=0):
            found.append(path)
    return found


@pytest.fixture
def small_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_split, "WARMUP_BYTES", 16 << 10)
    monkeypatch.setattr(scan_split, "SPLIT_MIN_BYTES", 0)


def incidents(result) -> List[Tuple]:  # type: ignore[no-untyped-def, type-arg]
    return sorted((f.fingerprint, f.detector, f.severity, f.count, f.first_seen, f.last_seen) for f in result.incidents)


def test_the_fixtures_hold_enough_rails_logs_to_mean_something() -> None:
    files = rails_files()
    assert len(files) >= 10
    assert len(E2E) == 4 and all(p in files for p in E2E)


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_split_reading_gives_the_same_events_in_the_same_order(small_warmup: None, parts: int) -> None:
    for path in rails_files():
        whole = [repr(e) for e in iter_events(str(path))]
        split = [repr(e) for e in split_events(str(path), parts)]
        assert split == whole, f"{path} in {parts} ranges"


def test_ranges_start_at_line_starts_and_number_lines_exactly(small_warmup: None) -> None:
    path = E2E[0]
    data = path.read_bytes()
    lines = data.split(b"\n")
    for rng in plan(str(path), 4):
        assert rng.warm_byte == 0 or data[rng.warm_byte - 1 : rng.warm_byte] == b"\n"
        before = data[: rng.warm_byte].count(b"\n")
        assert rng.warm_line == before + 1
        assert rng.start_line >= rng.warm_line and rng.start_line <= len(lines)


@pytest.mark.parametrize("path", E2E, ids=[p.parent.name for p in E2E])
def test_scan_with_two_jobs_on_one_file_finds_the_same_incidents(small_warmup: None, path: Path) -> None:
    one = scan([str(path)])
    two = scan([str(path)], jobs=2)
    assert one.incidents, "the e2e logs hold incidents: an empty comparison proves nothing"
    assert incidents(two) == incidents(one)
    assert (two.events, two.files[0].lines, two.files[0].unparsed, two.files[0].format) == (
        one.events, one.files[0].lines, one.files[0].unparsed, one.files[0].format
    )
    assert two.series is not None  # one detector pass: the timelines are kept, unlike --jobs over files


def test_small_compressed_and_other_format_files_are_not_split() -> None:
    assert not splittable(str(E2E[0]), None)  # under SPLIT_MIN_BYTES
    assert not splittable(str(FIXTURES / "logs" / "e2e" / "info" / "sidekiq.log"), None, min_bytes=0)
    assert not splittable(str(FIXTURES / "corpus" / "sidekiq_log_analyzer" / "sidekiq.log.gz"), None, min_bytes=0)


@pytest.fixture
def long_rails_log(tmp_path: Path) -> Path:
    """Every Rails fixture, one after another, five times: long enough
    that every range has lines fed in bulk (``feed_lines``) between the ones fed line by line
    where ranges meet."""
    body = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in rails_files())
    out = tmp_path / "long.log"
    out.write_bytes(body * 5)
    return out


@pytest.mark.parametrize("parts", [2, 4])
def test_bulk_and_exact_runs_give_the_same_events_in_the_same_order(
    small_warmup: None, long_rails_log: Path, parts: int
) -> None:
    ranges = plan(str(long_rails_log), parts)
    assert all(r.end_line is None or r.end_line - r.start_line > 2 * scan_split.SPILL_LINES for r in ranges)
    whole = [repr(e) for e in iter_events(str(long_rails_log))]
    split = [repr(e) for e in split_events(str(long_rails_log), parts)]
    assert len(whole) > 10_000
    assert split == whole


def test_segments_cut_at_the_range_edges_and_are_exact_only_where_ranges_meet() -> None:
    rng = scan_split.Range(warm_byte=10, warm_line=5, start_line=100, end_line=10_000)
    runs = list(scan_split._segments(1, 20_000, rng))
    assert runs[0][0] == 1 and runs[-1][1] == 20_001
    assert all(a < b for a, b, _ in runs) and all(runs[i][1] == runs[i + 1][0] for i in range(len(runs) - 1))
    assert (1, 100, False) in runs  # the warm-up: nothing it emits is kept at its line
    assert (100, 100 + scan_split.SPILL_LINES + 1, True) in runs  # the head, merged with the previous spill
    assert (10_000, 20_001, True) in runs  # the spill
    first = scan_split.Range(warm_byte=0, warm_line=1, start_line=1, end_line=500)
    assert list(scan_split._segments(1, 1000, first)) == [(1, 500, False), (500, 1001, True)]


def test_the_workers_encoding_gives_back_every_kind_of_event() -> None:
    from agent import events as ev

    samples = [
        ev.Request(ts=1.5, source="a.log", line=3, raw="r", request_id="x", status=500, duration_ms=2.0, queries=4),
        ev.Sql(ts=2.0, line=4, name="Post Load", sql="SELECT 1", cached=True, source_location="app/x.rb:1"),
        ev.Error(ts=None, origin="rails", error_class="E", backtrace=("a", "b"), endpoint="A#b"),
        ev.Job(state="fail", jid="j", elapsed_s=0.5, backtrace=("f",), retry_count=2),
        ev.Process(component="puma", state="boot"),
        ev.DbStatement(duration_ms=1.0, sql="SELECT 2", tags={"controller": "posts"}),
        ev.Bullet(detection="n_plus_one", associations=("author",), call_stack=("x",)),
        ev.Metric(name="m", labels={"k": "v"}, value=3.0),
        ev.Deploy(revision="abc"),
    ]
    assert {type(e) for e in samples} == set(ev.EVENT_TYPES)
    back = event_spill.decode(event_spill.encode([(i, e) for i, e in enumerate(samples, 7)]))
    assert [at for at, _ in back] == list(range(7, 7 + len(samples)))
    assert [(type(e), repr(e)) for _, e in back] == [(type(e), repr(e)) for e in samples]
