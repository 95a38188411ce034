"""SidekiqParser.feed_lines (its own hot loop) gives exactly what feed() per line gives.

Every fixture file (tests/fixtures/logs and the corpus, compressed ones included, read as
the scan reads them) is fed to a Sidekiq parser per line and in chunks of 1, 7, 1000 lines
and whole: every field of every event, their order, ``unparsed`` and the carried time must
agree. Files of other formats go through too (their lines are the parser's unusual
lines); the Sidekiq ones are counted so the test cannot pass on an empty selection.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List

import pytest

from agent.events import Job
from agent.parsers.choose import choose_format
from agent.parsers.sidekiq import SidekiqParser
from agent.sources.files import ReadStats, read_batches
from sidekiq_same import Outcome, first_difference, in_chunks, per_line
from support import CORPUS, FIXTURES

CHUNKS = {"1": [1], "7": [7], "1000": [1000], "whole": [10**9], "mixed": [3, 1, 64, 1000, 2]}


@lru_cache(maxsize=None)
def fixture_files() -> Dict[str, List[str]]:
    """Lines of every fixture log, by path relative to tests/fixtures."""
    out: Dict[str, List[str]] = {}
    for root in (FIXTURES, CORPUS):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".log", ".gz", ".bz2", ".jsonl", ".txt")):
            lines = [line for batch in read_batches(str(path), ReadStats()) for line in batch]
            if lines:
                out[str(path.relative_to(root.parent))] = lines
    return out


@lru_cache(maxsize=None)
def reference(name: str) -> Outcome:
    return per_line(fixture_files()[name])


def sidekiq_files() -> List[str]:
    return [name for name, lines in fixture_files().items() if choose_format(lines[:200], None)[0] is SidekiqParser]


def test_the_fixtures_hold_sidekiq_logs_of_every_layout() -> None:
    names = sidekiq_files()
    assert len(names) >= 10, names
    joined = "\n".join(line for name in names for line in fixture_files()[name])
    for shape in (" TID-", " pid=", "INFO: done: ", " elapsed=", "INFO: fail", '{"ts":'):
        assert shape in joined, shape


@pytest.mark.parametrize("chunk", sorted(CHUNKS))
def test_feed_lines_equals_feed_on_every_fixture(chunk: str) -> None:
    checked_jobs = 0
    for name, lines in fixture_files().items():
        expected = reference(name)
        problem = first_difference(expected, in_chunks(lines, CHUNKS[chunk]))
        assert not problem, f"{name}, chunks of {chunk}: {problem}"
        checked_jobs += sum(1 for e in expected[0] if e[0] == "Job")
    assert checked_jobs > 10_000  # the corpus' Sidekiq log alone has more


def test_a_difference_is_seen() -> None:
    """The comparison can fail: a changed field, a missing event, another count."""
    lines = fixture_files()[sidekiq_files()[0]]
    expected = per_line(lines)
    events, unparsed, ts = expected
    changed = [events[0][:5] + ("other",) + events[0][6:]] + events[1:]
    assert first_difference(expected, (changed, unparsed, ts))
    assert first_difference(expected, (events[:-1], unparsed, ts))
    assert first_difference(expected, (events, unparsed + 1, ts))


def test_the_hot_loop_carries_the_state_feed_would_leave() -> None:
    """After fast lines, a line without a time of its own gets theirs, and their pid."""
    parser = SidekiqParser("x.log")
    lines = [
        "2024-05-01T00:00:00.017Z 17595 TID-15w2ye MailerJob JID-3bfd1d338d0038ec42650644 INFO: start",
        "2024-05-01T00:00:01.250Z pid=7 tid=co2mc class=LoadJob jid=38d0 elapsed=0.045 INFO: done",
        "bundler: failed to load command: sidekiq (/app/bin/sidekiq)",
    ]
    events = parser.feed_lines(lines, 1) + parser.finish()
    assert [type(e).__name__ for e in events] == ["Job", "Job", "Process"]
    assert isinstance(events[1], Job) and events[1].elapsed_s == 0.045 and events[1].pid == "7"
    assert events[2].ts == events[1].ts and getattr(events[2], "pid") == "7"


def test_lines_the_hot_loop_leaves_to_feed() -> None:
    """Near misses of the hot shape: each must come out as feed makes it."""
    good7 = "2024-05-01T00:00:00.008Z pid=17469 tid=co2mc class=LoadJob jid=38d0 elapsed=0.045 INFO: done"
    good4 = "2024-05-01T00:00:00.017Z 17595 TID-15w2ye MailerJob JID-3bfd INFO: done: 0.023 sec"
    near = [
        good7.replace("tid=co2mc", "tid=co_2mc"), good7.replace("tid=co2mc", "tid=co-2mc"), good4.replace("TID-15w2ye", "TID-15w-2ye"),
        good4.replace("MailerJob", "INFO:x"), good7.replace("LoadJob", "Load\x1b[31mJob"), good7.replace("LoadJob", "Load\nJob"),
        good7.replace("2024-05-01", "2024-13-01"), good7.replace("2024-05-01", "2024-02-30"), good7.replace("2024", "1999"),
        good7.replace(".008Z", "Z"), good7.replace(".008Z", ".0081234Z"), good7.replace("00:00:00", "00:00:0٣"),
        good7.replace("0.045", "1e999"), good7.replace("0.045", "nan"), good7.replace("0.045", "9" * 41), good7.replace("0.045", "0_5"),
        good7.replace("0.045", "007"), good7.replace("0.045", "999999999999999.99999999999999999999"), good7.replace("0.045", "1e5"),
        good7.replace("0.045", "1234567890123456"), good7.replace("0.045", "٣"), good4.replace("0.023", "1000000000000000"),
        good7.replace("17469", "١٧"), good4.replace("0.023", "-0"), good7.replace(" INFO:", " WARN:"), good7 + " ",
        good7.replace("INFO: done", "INFO: done: 0.5 sec"), good7.replace(" elapsed=0.045 INFO: done", " INFO: done: 0.5 sec"),
        good7.replace("pid=", "pid= "), good4.replace("done: 0.023 sec", "done:  sec"), good7.replace("class=LoadJob ", "class= "),
    ]
    lines: List[str] = []
    for line in near:
        lines += [good7, line, good4, line]
    # what the hot loop leaves behind: a boot seen (its pid's next boot line is a new boot only after a
    # job line), a multi-line warning running (its next unprefixed line is not counted as unparsed)
    boot = "2024-05-01T00:00:00.001Z pid=17469 tid=x INFO: Booting Sidekiq 7.2.0 with Sidekiq::RedisConnection::RedisClientAdapter"
    warning = "2024-05-01T00:00:00.002Z pid=17469 tid=x WARN: WARNING: Your Redis instance will evict Sidekiq data"
    lines += [boot, good7, boot, warning, good7, "  an unprefixed line", warning, "  its text"]
    for chunk in (1, 2, 1000):
        assert not first_difference(per_line(lines), in_chunks(lines, [chunk])), chunk


def test_held_records_and_stale_releases_match_across_chunk_edges() -> None:
    """A failure held for one thread while others run, released on the 64th-line check or when stale."""
    # t9's failure is released as stale (400 lines later, on a 64th line); t2's by t2's next line
    fail = ["2024-05-01T00:00:00.469Z pid=1 tid=t9 class=J jid=99 elapsed=0.029 INFO: fail"]
    fail2 = ["2024-05-01T00:00:00.470Z pid=1 tid=t2 class=J jid=98 elapsed=0.029 INFO: fail"]
    busy = [f"2024-05-01T00:00:{i // 1000 % 60:02d}.{i % 1000:03d}Z pid=1 tid=t{i % 5} class=J jid={i} INFO: start" for i in range(900)]
    stream = busy[:100] + fail + fail2 + busy[100:] + fail + busy[:3]
    expected = per_line(stream)
    failed = [e for e in expected[0] if e[0] == "Job" and e[5] == "fail"]
    assert len(failed) == 3 and failed[0] != expected[0][-1]  # the first is released before the end
    for sizes in ([1], [63], [64], [65], [1000]):
        assert not first_difference(expected, in_chunks(stream, sizes)), sizes

