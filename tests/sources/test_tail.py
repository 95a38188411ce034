"""Tailing real files on disk: rotation, truncation, deletion, restarts, long lines, globs.

Each test writes numbered request lines (the lograge format of rails-signals.md A.6 in a
Rails Logger prefix) and checks that the numbers come out exactly once, in order.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from agent.sources.replay import iter_events
from agent.sources.checkpoint import FileIdentity, MemoryCheckpoints, checkpoint_key
from agent.sources.tail import ROTATE_GRACE_S, Tailer, TailSpec
from agent.sources.watch import Waker
from agent.testing import FakeClock

RAILS52 = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "rails" / "rails52_production.log"


def line(n: int) -> str:
    return (
        f"I, [2021-11-26T00:04:{n % 60:02d}.000000 #22988]  INFO -- : method=GET path=/items/{n} format=html "
        f"controller=ItemsController action=show status=200 duration=1.00 view=0.50 db=0.20\n"
    )


def write(path, numbers, mode="a") -> None:
    with open(path, mode) as fh:
        fh.write("".join(line(n) for n in numbers))


class Seen:
    def __init__(self) -> None:
        self.events = []

    def __call__(self, event) -> None:
        self.events.append(event)

    @property
    def numbers(self):
        return [int(e.path.rsplit("/", 1)[1]) for e in self.events if getattr(e, "path", "").startswith("/items/")]


def tailer(specs, store=None, clock=None, **kw):
    seen = Seen()
    t = Tailer(specs, store if store is not None else MemoryCheckpoints(), clock or FakeClock(), seen, use_watchdog=False, **kw)
    return t, seen


def drain(t: Tailer, rounds: int = 5) -> None:
    for _ in range(rounds):
        t.poll()


def test_a_file_followed_from_its_end_yields_only_new_lines(tmp_path):
    log = tmp_path / "production.log"
    write(log, range(1, 11))
    t, seen = tailer([TailSpec(str(log))])
    drain(t)
    assert seen.numbers == []
    write(log, range(11, 14))
    drain(t)
    assert seen.numbers == [11, 12, 13]
    assert seen.events[0].line == 11  # line numbers count the lines that were skipped


def test_start_beginning_reads_what_is_already_there(tmp_path):
    log = tmp_path / "production.log"
    write(log, range(1, 6))
    t, seen = tailer([TailSpec(str(log), start="beginning")])
    drain(t)
    assert seen.numbers == [1, 2, 3, 4, 5]


def test_a_line_being_written_is_read_once_its_newline_arrives(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    t, seen = tailer([TailSpec(str(log))])
    text = line(1)
    with open(log, "a") as fh:
        fh.write(text[:40])
        fh.flush()
        drain(t)
        assert seen.numbers == []
        fh.write(text[40:])
    drain(t)
    assert seen.numbers == [1]


def test_rename_rotation_finishes_the_old_file_first_and_loses_nothing(tmp_path):
    log = tmp_path / "production.log"
    clock = FakeClock()
    log.write_text("")
    t, seen = tailer([TailSpec(str(log))], clock=clock)
    app = open(log, "a")  # the app keeps writing to its open handle after logrotate renames the file
    app.write("".join(line(n) for n in range(1, 51)))
    app.flush()
    t.poll()
    app.write("".join(line(n) for n in range(51, 61)))  # unread when the rotation happens
    app.flush()
    os.rename(log, tmp_path / "production.log.1")
    drain(t)
    app.write("".join(line(n) for n in range(61, 66)))  # late writes before the app reopens its log
    app.close()
    write(log, range(66, 80))  # the reopened log
    drain(t)
    clock.advance(ROTATE_GRACE_S + 1)
    drain(t)
    assert seen.numbers == list(range(1, 80))
    assert len(t.logs[str(log)].draining) == 0  # the rotated file was closed after its grace period


def test_copytruncate_takes_unread_lines_from_the_copy(tmp_path):
    log = tmp_path / "production.log"
    clock = FakeClock()
    log.write_text("")
    t, seen = tailer([TailSpec(str(log))], clock=clock)
    write(log, range(1, 21))
    t.poll()
    write(log, range(21, 31))  # written after our last read, before logrotate copied the file
    shutil.copyfile(log, tmp_path / "production.log.1")
    with open(log, "r+") as fh:
        fh.truncate(0)
    write(log, range(31, 36))
    drain(t)
    clock.advance(ROTATE_GRACE_S + 1)
    drain(t)
    assert seen.numbers == list(range(1, 36))


def test_truncation_that_outgrew_the_old_offset_is_noticed_by_the_first_bytes(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    t, seen = tailer([TailSpec(str(log))])
    write(log, range(1, 4))
    drain(t)
    write(log, range(100, 110), mode="w")  # truncated and rewritten longer between two polls
    drain(t)
    assert seen.numbers == [1, 2, 3] + list(range(100, 110))


def test_a_deleted_and_recreated_file_is_read_from_its_start(tmp_path):
    log = tmp_path / "production.log"
    clock = FakeClock()
    write(log, [1])
    t, seen = tailer([TailSpec(str(log))], clock=clock)
    write(log, [2, 3])
    drain(t)
    os.unlink(log)
    drain(t)
    write(log, [4, 5])
    drain(t)
    clock.advance(ROTATE_GRACE_S + 1)
    drain(t)
    assert seen.numbers == [2, 3, 4, 5]


def test_a_restart_resumes_at_the_checkpoint_without_repeating_a_line(tmp_path):
    log = tmp_path / "production.log"
    store = MemoryCheckpoints()
    write(log, range(1, 101))
    t, seen = tailer([TailSpec(str(log), start="beginning")], store=store)
    drain(t)
    store.set_checkpoints(t.positions())
    t.close()
    write(log, range(101, 121))
    t2, seen2 = tailer([TailSpec(str(log), start="beginning")], store=store)
    drain(t2)
    assert seen.numbers + seen2.numbers == list(range(1, 121))
    assert t2.stats()[0].lines == 20  # the quietly re-read window is not counted again


def test_a_rotation_while_stopped_finishes_the_rotated_file_then_reads_the_new_one(tmp_path):
    log = tmp_path / "production.log"
    store = MemoryCheckpoints()
    clock = FakeClock()
    write(log, range(1, 11))
    t, seen = tailer([TailSpec(str(log))], store=store, clock=clock)
    write(log, range(11, 21))
    drain(t)
    store.set_checkpoints(t.positions())
    t.close()
    write(log, range(21, 31))
    os.rename(log, tmp_path / "production.log.1")
    write(log, range(31, 41))
    t2, seen2 = tailer([TailSpec(str(log))], store=store, clock=clock)
    drain(t2)
    clock.advance(ROTATE_GRACE_S + 1)
    drain(t2)
    assert seen.numbers + seen2.numbers == list(range(11, 41))


def test_a_reused_inode_with_other_content_is_not_resumed_at_the_old_offset(tmp_path):
    log = tmp_path / "production.log"
    store = MemoryCheckpoints()
    write(log, range(1, 31))
    t, seen = tailer([TailSpec(str(log), start="beginning")], store=store)
    drain(t)
    store.set_checkpoints(t.positions())
    t.close()
    ino = os.stat(log).st_ino
    write(log, range(500, 540), mode="w")  # same inode, new file: as if the number had been reused
    assert os.stat(log).st_ino == ino
    t2, seen2 = tailer([TailSpec(str(log))], store=store)
    drain(t2)
    assert seen2.numbers == list(range(500, 540))


def test_a_backtrace_straddling_the_checkpoint_is_delivered_once_and_whole(tmp_path):
    lines = RAILS52.read_text().splitlines(keepends=True)
    fatal = next(i for i, l in enumerate(lines) if "ActionController::UnfilteredParameters" in l)
    cut = fatal + 2  # inside the FATAL block: the parser holds the record here
    log = tmp_path / "production.log"
    log.write_text("".join(lines[:cut]))
    store = MemoryCheckpoints()
    t, seen = tailer([TailSpec(str(log), start="beginning")], store=store)
    drain(t)
    store.set_checkpoints(t.positions())
    t.close()
    with open(log, "a") as fh:
        fh.write("".join(lines[cut:]))
    t2, seen2 = tailer([TailSpec(str(log))], store=store)
    drain(t2)
    got = [(e.kind, e.line, e.raw) for e in seen.events + seen2.events]
    expected = [(e.kind, e.line, e.raw) for e in iter_events(str(RAILS52)) if e.line <= len(lines) - 30]
    assert got[: len(expected)] == expected
    errors = [e for e in seen.events + seen2.events if e.kind == "error"]
    assert len(errors) == len([e for e in iter_events(str(RAILS52)) if e.kind == "error"])


def test_an_overlong_line_is_cut_and_the_next_line_still_parses(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    t, seen = tailer([TailSpec(str(log))], max_line=4096)
    write(log, [1])
    drain(t)
    with open(log, "a") as fh:
        fh.write("I, [2021-11-26T00:04:44.294207 #22988]  INFO -- : method=GET path=/huge " + "x" * 300_000)
        fh.flush()
        drain(t)
        assert t.logs[str(log)].current.pending == b""  # not buffered while the line is still growing
        fh.write("y" * 300_000 + "\n")
    write(log, [2])
    drain(t)
    assert seen.numbers == [1, 2]
    stats = t.stats()[0]
    assert stats.cut_lines == 1 and stats.lines == 3
    assert all(len(e.raw) <= 4096 for e in seen.events)


def test_a_glob_picks_up_new_files_but_not_a_followed_file_under_its_rotated_name(tmp_path):
    clock = FakeClock()
    write(tmp_path / "production.log", [1])
    t, seen = tailer([TailSpec(str(tmp_path / "*"))], clock=clock)
    write(tmp_path / "production.log", [2])
    drain(t)
    write(tmp_path / "sidekiq.log", [3])  # a new file: read from its start
    clock.advance(2)
    drain(t)
    os.rename(tmp_path / "production.log", tmp_path / "production.log.1")
    write(tmp_path / "production.log", [4])
    clock.advance(2)
    drain(t)
    clock.advance(ROTATE_GRACE_S + 2)
    drain(t)
    clock.advance(2)
    drain(t)
    assert sorted(seen.numbers) == [2, 3, 4]
    assert str(tmp_path / "production.log.1") in t.logs  # followed from where it was finished


def test_a_file_of_unknown_format_is_counted_not_parsed(tmp_path):
    log = tmp_path / "weird.log"
    log.write_text("".join(f"just some words {i}\n" for i in range(80)))
    t, seen = tailer([TailSpec(str(log), start="beginning")])
    drain(t)
    stats = t.stats()[0]
    assert seen.events == [] and stats.format == "unknown" and stats.lines == 80 and stats.unparsed == 80


def test_a_burst_bigger_than_the_read_budget_is_reported_as_lag(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    clock = FakeClock()
    t, seen = tailer([TailSpec(str(log))], clock=clock, stall_after_s=30)
    write(log, range(1, 3001))
    n, caught_up = t.poll(budget=64 * 1024)
    assert not caught_up and 0 < n < os.path.getsize(log)
    clock.advance(5)
    stats = t.stats()[0]
    assert stats.lag_bytes > 0 and stats.lag_seconds >= 5 and not stats.stalled
    while not t.poll(budget=64 * 1024)[1]:
        pass
    stats = t.stats()[0]
    assert stats.lag_bytes == 0 and stats.lag_seconds == 0 and seen.numbers == list(range(1, 3001))


def test_a_missing_file_is_followed_once_it_appears(tmp_path):
    log = tmp_path / "production.log"
    t, seen = tailer([TailSpec(str(log))])
    drain(t)
    write(log, [1, 2])
    drain(t)
    assert seen.numbers == [1, 2]  # created after we started: all of it is new


def test_checkpoints_name_the_file_by_inode_and_first_bytes(tmp_path):
    log = tmp_path / "production.log"
    write(log, range(1, 4))
    t, _ = tailer([TailSpec(str(log), start="beginning")])
    drain(t)
    pos = t.positions()[checkpoint_key(str(log))]
    ident = FileIdentity.of_path(str(log))
    assert (pos["dev"], pos["ino"], pos["fp"]) == (ident.dev, ident.ino, ident.fp)
    assert pos["offset"] == os.path.getsize(log) and pos["lineno"] == 3


def test_inotify_events_wake_the_waiting_loop(tmp_path):
    waker = Waker()
    waker.watch([str(tmp_path)])
    try:
        if not waker.available:
            return  # no inotify here: the poll interval covers it (the fallback path)
        woke = threading.Event()

        def wait() -> None:
            waker.wait(30)
            woke.set()

        thread = threading.Thread(target=wait)
        thread.start()
        deadline = time.monotonic() + 10
        while not woke.is_set() and time.monotonic() < deadline:
            write(tmp_path / "production.log", [1])
            woke.wait(0.05)
        thread.join(5)
        assert woke.is_set() and waker.created
    finally:
        waker.stop()


def test_inotify_wakes_for_rotation_not_for_every_write(tmp_path):
    # a line-at-a-time writer (Ruby's Logger) must not wake the loop per line: growth is found
    # by the poll; a rename (rotation) still wakes it at once
    log = tmp_path / "production.log"
    write(log, [1])
    waker = Waker()
    waker.watch([str(tmp_path)])
    try:
        if not waker.available:
            return  # no inotify here: polling covers both
        time.sleep(0.3)  # the observer settles; the creation above came before the watch
        waker.event.clear()
        for n in range(20):
            write(log, [n])
            time.sleep(0.02)
        assert not waker.event.wait(0.5), "a write woke the loop"
        log.rename(tmp_path / "production.log.1")
        assert waker.event.wait(10) and waker.created
    finally:
        waker.stop()


def test_a_held_backtrace_is_delivered_once_the_log_goes_quiet_and_not_again_after_a_restart(tmp_path):
    lines = RAILS52.read_text().splitlines(keepends=True)
    fatal = next(i for i, l in enumerate(lines) if "ActionController::UnfilteredParameters" in l)
    end = next(i for i in range(fatal, len(lines)) if not lines[i].startswith("F, "))  # the end of the FATAL block
    log = tmp_path / "production.log"
    log.write_text("".join(lines[:end]))
    clock, store = FakeClock(), MemoryCheckpoints()
    t, seen = tailer([TailSpec(str(log), start="beginning")], store=store, clock=clock)
    drain(t)
    assert [e.kind for e in seen.events].count("error") == 0  # held: the parser cannot know the block is over
    clock.advance(1.0)
    drain(t)
    errors = [e for e in seen.events if e.kind == "error"]
    assert len(errors) == 1 and "UnfilteredParameters" in errors[0].raw
    store.set_checkpoints(t.positions())
    t.close()
    with open(log, "a") as fh:
        fh.write("".join(lines[end:end + 3]))
    t2, seen2 = tailer([TailSpec(str(log))], store=store, clock=clock)
    drain(t2)
    assert [e for e in seen2.events if e.kind == "error"] == []


def test_two_rotations_while_stopped_read_the_file_in_between_whole(tmp_path):
    log = tmp_path / "production.log"
    store = MemoryCheckpoints()
    clock = FakeClock(time.time())  # file times and checkpoint times must be comparable here
    write(log, range(1, 11))
    t, seen = tailer([TailSpec(str(log), start="beginning")], store=store, clock=clock)
    drain(t)
    store.set_checkpoints(t.positions())
    t.close()
    time.sleep(0.02)  # a later mtime than the checkpoint, whatever the filesystem's resolution
    write(log, range(11, 16))
    os.rename(log, tmp_path / "production.log.1")
    write(log, range(16, 21))  # rotated again before we come back: .1 -> .2, the new file -> .1
    os.rename(tmp_path / "production.log.1", tmp_path / "production.log.2")
    os.rename(log, tmp_path / "production.log.1")
    write(log, range(21, 26))
    write(tmp_path / "production.log.3", [999])  # an old rotation: written before the checkpoint
    os.utime(tmp_path / "production.log.3", (clock.now() - 3600, clock.now() - 3600))
    t2, seen2 = tailer([TailSpec(str(log))], store=store, clock=clock)
    drain(t2)
    clock.advance(ROTATE_GRACE_S + 1)
    drain(t2)
    assert seen.numbers + sorted(seen2.numbers) == list(range(1, 26))


def test_without_inotify_the_tailer_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    import watchdog.observers

    class Exhausted:
        def __init__(self, *args, **kwargs):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", Exhausted)
    log = tmp_path / "production.log"
    log.write_text("")
    seen = Seen()
    t = Tailer([TailSpec(str(log))], MemoryCheckpoints(), FakeClock(), seen, use_watchdog=True)
    try:
        assert not t.waker.available
        assert "polling the logs instead" in caplog.text
        write(log, [1, 2])
        t.wait(0.01)  # no event will come: the wait simply times out
        drain(t)
        assert seen.numbers == [1, 2]
    finally:
        t.close()
