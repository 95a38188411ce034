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

from agent import scan_split
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
