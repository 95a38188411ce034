"""Property: SidekiqParser.feed_lines over any chunking gives what feed() per line gives.

Streams are random mixes of the line shapes a Sidekiq log holds (start/done of 4.x-7.x, the
failure records, backtraces, boot and warning lines, 8.x and JSON records), with random
times, threads and numbers, near misses of the hot shape (another thread spelling, ANSI
codes, a newline, odd digits, invalid dates) and junk; cut into random chunks. Every field
of every event, ``unparsed`` and the carried time must agree (tests/sidekiq_same.py).
``RAILWATCH_FUZZ_EXAMPLES`` raises the number of examples, as in test_parsers_total.py.
"""
from __future__ import annotations

import os
import random
from typing import Any, Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parsers.sidekiq_lines import JOB_LINE
from sidekiq_same import first_difference, in_chunks, per_line

EXAMPLES = int(os.environ.get("RAILWATCH_FUZZ_EXAMPLES") or 0)
FUZZ = settings(
    max_examples=EXAMPLES or 300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DAYS = ["2024-05-01", "2024-05-02", "2024-12-31", "2024-13-01", "2024-02-30", "2023-02-29", "1999-05-01", "2024-0٥-01"]
HOURS = ["00:00", "00:01", "23:59", "12:00", "24:00", "1٢:00"]
SECONDS = ["00.000", "59.999", "07.5", "08", "60.000", "00.0001234", "1x.000", "٣0.000", "00.00"]
THREADS = ["co2mc", "t1", "t2", "co2mc", "t1", "t2", "15w2ye", "ab_c", "a-b", "TID", "x" * 30, "é1", "٣", "t\x1b[31m1"]
PIDS = ["1", "17469", "2", "٣", "0" * 30]
CLASSES = ["HardJob", "Foo::BarJob", "INFO:x", "WARN:", "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "A\x1b[0mB"]
JIDS = ["b4a5", "3bfd1d338d0038ec42650644", "", "J"]
ELAPSED = ["0.045", "12", "-0", "1e999", "nan", "9" * 41, "0_5", "1.2.3", "inf", "٣.٣", "0.0"]
MESSAGES = [
    "start", "done", "done: {e} sec", "start", "done", "done: {e} sec", "start", "done", "done: {e} sec",  # the hot shapes, often
    "start", "done", "fail", "done: {e} sec", "fail: {e} sec", "Booting Sidekiq 7.2", "Running in ruby 3.2", "Starting processing, hit Ctrl-C to stop",
    "Terminating quiet threads", "Terminating 2 busy threads", "Shutting down", "Bye!", "Adding dead HardJob job {j}",
    "WARNING: Your Redis instance will evict Sidekiq data", "", "Redis is online, 1.5 sec downtime", "hello from the app",
    '{{"context":"Job raised exception","job":{{"class":"HardJob","queue":"default","jid":"{j}","retry_count":2}}}}',
    "ActiveRecord::RecordNotFound: Couldn't find User", "/app/jobs/x.rb:12:in `perform'",
]
LEVELS = ["INFO", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"]
NEAR_MISS = [" ", "\n", "\x1b[1m", "_", "-", "٣", "Z", ":", ".", "x"]
JUNK = st.sampled_from([
    "/app/jobs/hard_job.rb:3:in `perform'", "\tfrom /gems/sidekiq/processor.rb:1:in `x'", "", "   ", "random text", "\x1b[31m",
    "bundler: failed to load command: sidekiq (/app/bin/sidekiq)", "SignalException: SIGHUP", "2024-05-01T00:00:00.000Z",
    '{"ts":"2024-05-01T00:00:00.000Z","pid":1,"tid":"t1","lvl":"INFO","msg":"done","ctx":{"class":"J","jid":"1","elapsed":0.5}}',
    "INFO  2025-04-01T12:00:00.123Z pid=1 tid=t1 class=HardJob jid=b4a5 elapsed=0.5: done",
    "INFO  2025-04-01T12:00:00.123Z pid=1 tid=t1 context=Job raised exception job={\"jid\":\"1\"}: boom (RuntimeError)",
])


def build_line(pick: Callable[[Sequence[Any]], Any]) -> str:
    """One Sidekiq-like line, every choice made by ``pick`` (hypothesis' draw, or a seeded random)."""
    stamp = f"{pick(DAYS)}T{pick(HOURS)}:{pick(SECONDS)}Z"
    jid = pick(JIDS)
    msg = pick(MESSAGES).format(e=pick(ELAPSED), j=jid or "x")
    level, tid, pid, cls = pick(LEVELS), pick(THREADS), pick(PIDS), pick(CLASSES)
    if pick([True, False]):  # 6.x/7.x
        ctx = "" if pick(range(6)) == 0 else f" class={cls} jid={jid}"
        if ctx and pick([True, False]):
            ctx += f" elapsed={pick(ELAPSED)}"
        line = f"{stamp} pid={pid} tid={tid}{ctx} {level}: {msg}"
    else:  # 4.x/5.x
        ctx = "" if pick(range(6)) == 0 else f" {cls} JID-{jid}"
        line = f"{stamp} {pid} TID-{tid}{ctx} {level}: {msg}"
    if pick(range(10)) == 0:  # a near miss: a character replaced, inserted or dropped
        at = pick(range(len(line) + 1))
        how = pick(range(3))
        extra = pick(NEAR_MISS)
        line = line[:at] + extra + line[at + (how == 0):] if how < 2 else line[:at] + line[at + 1:]
    if pick([True, False]):
        line = line.replace("\x1b[31m", "").replace("\x1b[0m", "")
    return line


@st.composite
def sidekiq_line(draw: st.DrawFn) -> str:
    return build_line(lambda options: draw(st.sampled_from(options)))


STREAM = st.lists(
    st.one_of(sidekiq_line(), sidekiq_line(), sidekiq_line(), JUNK, st.text(max_size=40)),
    min_size=1, max_size=160,
)


@FUZZ
@given(lines=STREAM, sizes=st.lists(st.integers(1, 70), min_size=1, max_size=6))
def test_feed_lines_in_any_chunks_equals_feed(lines: list, sizes: list) -> None:
    expected = per_line(lines)
    assert not first_difference(expected, in_chunks(lines, sizes))
    assert not first_difference(expected, in_chunks(lines, [len(lines)]))


# drawing hundreds of lines per example is slow: long runs pick from lines built once
POOL = [build_line(random.Random(seed).choice) for seed in range(2000)]
HOT = [l for l in POOL if JOB_LINE.match(l) and "\x1b" not in l]


@FUZZ
@given(
    picks=st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.integers(0, max(0, len(HOT) - 1)), st.integers(0, 2)), min_size=60, max_size=600),
    size=st.integers(1, 600),
)
def test_long_runs_of_job_lines_equal_feed(picks: list, size: int) -> None:
    """Long enough for held records to go stale (400 lines) and for the 64th-line checks."""
    lines = [POOL[i] if k == 0 or not HOT else HOT[j] for i, j, k in picks]
    assert not first_difference(per_line(lines), in_chunks(lines, [size]))
