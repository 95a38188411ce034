"""Events handed from parsing workers to the detecting process (``agent.event_spill``): a spill
never runs more than MAX_AHEAD_BYTES ahead of its reader, ends with a mark its reader stops at,
and waiting on it changes no result of ``scan --jobs``."""
from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import List

import pytest

from agent import event_spill, scan_split
from agent.events import Job
from agent.scan import scan

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
SCENARIO = LOGS / "accuracy" / "n_plus_one_info_tagged_pg_log"


def _jobs(n: int) -> List[tuple]:  # type: ignore[type-arg]
    return [(i, Job(ts=float(i), line=i, raw="x" * 50, state="start", jid=str(i))) for i in range(n)]


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """This process as both sides: the shared array, and a reader that never dies."""
    read_upto = multiprocessing.get_context().Array("q", 2)
    monkeypatch.setattr(event_spill, "_read_upto", read_upto)
    monkeypatch.setattr(event_spill, "_reader", os.getppid())
    return read_upto


def test_a_writer_far_ahead_of_its_reader_waits_and_the_reader_stops_at_the_end_mark(
    reader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_spill, "MAX_AHEAD_BYTES", 500)
    spill = str(tmp_path / "s")
    writer = event_spill.SpillWriter(spill, 1)
    writer.write(_jobs(20))
    assert writer.written > 500 and writer.blocked()

    def write_rest() -> None:  # blocks until the reader has taken the first frame
        writer.write_when_read(_jobs(5))
        writer.close()

    thread = threading.Thread(target=write_rest)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive(), "the second frame must wait for the reader"
    got = list(event_spill.follow(spill, lambda: False, reader, 1))  # never "finished": only the end mark stops it
    thread.join(5)
    assert not thread.is_alive()
    assert [label for label, _ in got] == list(range(20)) + list(range(5))
    assert reader[1] == os.path.getsize(spill) - 8  # read up to the end mark


def test_without_an_end_mark_the_reader_stops_when_the_writer_has_ended(tmp_path: Path) -> None:
    spill = str(tmp_path / "s")
    writer = event_spill.SpillWriter(spill, 0)
    writer.write(_jobs(3))
    writer.fh.close()  # a worker that died before close()
    assert [label for label, _ in event_spill.follow(spill, lambda: True)] == [0, 1, 2]


def _report(result):  # type: ignore[no-untyped-def]
    return ([i.to_dict() for i in result.incidents], result.events,
            [(f.path, f.lines, f.unparsed) for f in result.files])


def test_logs_held_back_by_a_slow_reader_give_the_same_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame waits for the reader (a budget of one byte): five logs on two workers,
    each worker taking turns between its logs, and nothing changes."""
    paths = sorted(str(p) for p in SCENARIO.glob("*.log")) + [str(LOGS / "rails" / "rails52_production.log")]
    one = scan(paths)
    monkeypatch.setattr(event_spill, "MAX_AHEAD_BYTES", 1)  # the pool forks after this: workers see it
    monkeypatch.setattr(event_spill, "WAIT_POLL_S", 0.001)
    assert one.incidents
    assert _report(scan(paths, jobs=2)) == _report(one)


def test_ranges_held_back_by_a_slow_reader_give_the_same_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One Rails log in four ranges, each several frames long, every frame waiting for the reader."""
    body = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in sorted((LOGS / "e2e").glob("*/production.log")))
    log = tmp_path / "production.log"
    log.write_bytes(body * 6)
    monkeypatch.setattr(scan_split, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(scan_split, "WARMUP_BYTES", 16 << 10)
    one = scan([str(log)])
    monkeypatch.setattr(event_spill, "MAX_AHEAD_BYTES", 1)
    monkeypatch.setattr(event_spill, "WAIT_POLL_S", 0.001)
    assert one.incidents and log.stat().st_size > 4 * 2 * (128 << 10), "each range must span several chunks (frames)"
    assert _report(scan([str(log)], jobs=4)) == _report(one)
