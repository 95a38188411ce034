"""A failing job class judged as a class, and failures still running when the log ends (issue 12).

Every stream here is made of REAL log records re-stamped: one job's attempt (its start, the ActiveJob
``Performing``/``Error performing`` lines, ``fail``, the ``Job raised exception`` JSON, the error and the
whole backtrace, ``Adding dead`` when it died) is cut from the reference app's Sidekiq 6.4 log
(fixtures/logs/e2e/info/sidekiq.log) or from the public Sidekiq 4/5 corpus, then copied with a new
time, jid, tid and ActiveJob job id. Only the schedule (how many jobs, which attempts, when) is
synthetic: it is what operators vary (retry settings, the moment the log ends, other classes).

Each scenario goes through ``scan`` (the real CLI path, on a file) and through the daemon's way of
flushing (``flush(until)`` with the newest event time minus the reorder slack after every line, and
``flush(None)`` only at shutdown); both must give the same (fingerprint, severity) set.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import pytest

from agent.aggregate import merge_findings
from agent.events import Finding
from agent.parsers.sidekiq import SidekiqParser
from agent.pipeline import REORDER_SLACK_S, Pipeline
from agent.scan import scan
from agent.timeparse import to_iso
from detectors.sidekiq_failures import SidekiqFailuresDetector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
E2E_LOG = (FIXTURES / "logs" / "e2e" / "info" / "sidekiq.log").read_text().splitlines()
with gzip.open(FIXTURES / "corpus" / "sidekiq_log_analyzer" / "sidekiq.log.gz", "rt") as _f:
    CORPUS_LOG = _f.read().splitlines()
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
TID = re.compile(r" (?:tid=|TID-)(\S+) ")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Record = List[str]  # a stamped line and its continuation lines (error message, backtrace)


def _records(lines: Sequence[str]) -> List[Record]:
    out: List[Record] = []
    for line in lines:
        if STAMP.match(line) or not out:
            out.append([line])
        else:
            out[-1].append(line)
    return out


def attempt(lines: Sequence[str], jid: str, nth: int = 0) -> List[Record]:
    """The records of the ``nth`` attempt of ``jid``: its thread's records from its start to the next job."""
    recs = _records(lines)
    starts = [i for i, r in enumerate(recs) if jid in r[0] and r[0].rstrip().endswith("start")]
    i = starts[nth]
    tid = TID.search(recs[i][0]).group(1)  # type: ignore[union-attr]
    block = [recs[i]]
    for rec in recs[i + 1:]:
        m = TID.search(rec[0])
        if m is None or m.group(1) != tid:
            continue  # another thread's record, interleaved
        if rec[0].rstrip().endswith("start") or (("jid=" in rec[0] or "JID-" in rec[0]) and jid not in rec[0]):
            break  # the thread's next job
        block.append(rec)
    return block


# real attempts: ActiveJob-wrapped (Sidekiq 6.4 + ActiveJob 6.1), native (6.4), native (Sidekiq 4/5 format)
AJ_JID, NATIVE_JID, FLAKY_JID, OK_JID = "e0731d76794197b4dd40198c", "f1e7b33d4fba0c17800634c2", "439b9e3287148423cac7a34e", "f42bffd39ea12a8b4236dd3e"
AJ_FAIL, AJ_DEAD = attempt(E2E_LOG, AJ_JID, 0), attempt(E2E_LOG, AJ_JID, 1)
NATIVE_FAIL, NATIVE_DEAD = attempt(E2E_LOG, NATIVE_JID, 0), attempt(E2E_LOG, NATIVE_JID, 1)
FLAKY_FAIL, FLAKY_DONE = attempt(E2E_LOG, FLAKY_JID, 0), attempt(E2E_LOG, FLAKY_JID, 1)
OK_DONE = attempt(E2E_LOG, OK_JID, 0)
V5_JID, V5_OK_JID = "b6c2630ba0d895c184e40f3b", "840b3b8c231fefd607945a2b"  # UserStatWorker fails, UpdateCountersWorker succeeds
V5_FAIL, V5_OK = attempt(CORPUS_LOG, V5_JID, 0), attempt(CORPUS_LOG, V5_OK_JID, 0)
TEMPLATE_JID = {id(t): j for ts, j in (((AJ_FAIL, AJ_DEAD), AJ_JID), ((NATIVE_FAIL, NATIVE_DEAD), NATIVE_JID),
                                       ((FLAKY_FAIL, FLAKY_DONE), FLAKY_JID), ((OK_DONE,), OK_JID),
                                       ((V5_FAIL,), V5_JID), ((V5_OK,), V5_OK_JID)) for t in ts}  # template -> its jid


def test_the_templates_are_the_real_attempts():
    assert any("Error performing ReportExportJob" in r[0] for r in AJ_FAIL)
    assert any('"wrapped":"ReportExportJob"' in r[0] for r in AJ_FAIL) and not any("Adding dead" in r[0] for r in AJ_FAIL)
    assert any("Adding dead" in r[0] for r in AJ_DEAD) and any("Adding dead" in r[0] for r in NATIVE_DEAD)
    assert any(r[0].rstrip().endswith("INFO: done") for r in FLAKY_DONE) and any("fail" in r[0] for r in FLAKY_FAIL)
    assert any("INFO: fail: 0.007 sec" in r[0] for r in V5_FAIL) and any("INFO: done" in r[0] for r in V5_OK)
    assert sum(len(r) for r in AJ_FAIL) > 50  # the backtraces came along


class Stream:
    """Real attempts re-stamped onto a schedule; ``text()`` is the log file."""

    def __init__(self) -> None:
        self.blocks: List[Tuple[float, int, List[str]]] = []
        self._n = 0

    def add(self, template: List[Record], t: float, jid: str) -> None:
        old_jid = TEMPLATE_JID[id(template)]
        old_tid = TID.search(template[0][0]).group(1)  # type: ignore[union-attr]
        self._n += 1
        tid = f"x{self._n:x}"
        uuids: Dict[str, str] = {}
        lines: List[str] = []
        for k, rec in enumerate(template):
            for i, line in enumerate(rec):
                if i == 0:
                    line = STAMP.sub(f"{to_iso(T0 + t + k * 0.001)} ", line)
                    line = line.replace(f"tid={old_tid} ", f"tid={tid} ").replace(f"TID-{old_tid} ", f"TID-{tid} ")
                line = line.replace(old_jid, jid)
                line = UUID.sub(lambda m: uuids.setdefault(m.group(0), f"{jid[:8]}-0000-4000-8000-{len(uuids):012x}"), line)
                lines.append(line)
        self.blocks.append((t, self._n, lines))

    def text(self) -> str:
        return "\n".join(line for _, _, lines in sorted(self.blocks) for line in lines) + "\n"


def jid(prefix: str, i: int) -> str:
    return f"{prefix}{i:x}".ljust(24, "0")


def background(stream: Stream, start: float, end: float, template: List[Record] = OK_DONE, every: float = 10.0) -> None:
    """Other work succeeding all along (the process is alive, the log is shared)."""
    t, i = start, 0
    while t < end:
        stream.add(template, t, jid("b0", i))
        t, i = t + every, i + 1


# Sidekiq's retry delays (count**4 + 15 + rand(10) * (count + 1)): four attempts over about two minutes
ATTEMPTS_25 = (0.0, 21.0, 45.0, 110.0)


def storm(stream: Stream, fail: List[Record], start: float, jobs: int = 15, at: Sequence[float] = ATTEMPTS_25,
          last: Optional[List[Record]] = None, prefix: str = "f0") -> None:
    """``jobs`` jobs, one every 2 s, each failing at every attempt; ``last`` is the template of the final one."""
    for i in range(jobs):
        for n, offset in enumerate(at):
            stream.add(last if last is not None and n == len(at) - 1 else fail, start + i * 2.0 + offset, jid(prefix, i))


# ----- the two ways of reading the same lines ---------------------------------------------------------


def scanned(tmp_path: Path, stream: Stream) -> List[Finding]:
    path = tmp_path / "sidekiq.log"
    path.write_text(stream.text())
    result = scan([str(path)], detectors=["sidekiq_failures"])
    assert not result.errors, result.errors
    return result.incidents


def as_the_daemon(stream: Stream) -> Tuple[List[Finding], Optional[float]]:
    """Lines in file order, ``flush(until)`` after each line as the daemon's tick does (event time minus the
    reorder slack), ``flush(None)`` only at shutdown. Returns the findings and when the first critical came out."""
    pipeline = Pipeline([SidekiqFailuresDetector()])
    parser = SidekiqParser("sidekiq.log")
    found: List[Finding] = []
    first_critical: Optional[float] = None
    newest: Optional[float] = None
    for n, line in enumerate(stream.text().splitlines(), 1):
        events = parser.feed(line, n)
        found.extend(pipeline.feed_batch(events))
        newest = max([e.ts for e in events if e.ts is not None] + ([newest] if newest is not None else []), default=None)
        if newest is not None:
            found.extend(pipeline.flush(newest - REORDER_SLACK_S))
        if first_critical is None and any(f.severity == "critical" for f in found):
            first_critical = newest
    found.extend(pipeline.feed_batch(parser.finish()))
    found.extend(pipeline.flush(None))
    return merge_findings(found), first_critical


def decisions(found: List[Finding]) -> Set[Tuple[str, str]]:
    return {(f.fingerprint, f.severity) for f in found}


def judged(tmp_path: Path, stream: Stream) -> Tuple[List[Finding], Optional[float]]:
    """The scan's incidents, checked against the daemon's decision on the same lines."""
    by_scan = scanned(tmp_path, stream)
    by_daemon, first_critical = as_the_daemon(stream)
    assert decisions(by_scan) == decisions(by_daemon)
    return by_scan, first_critical


def only(found: List[Finding], cls: str) -> Finding:
    [f] = [f for f in found if f.subject.get("job_class") == cls]
    return f


# ----- the case, and what operators vary ---------------------------------------------------------


def test_activejob_class_failing_every_attempt_when_the_log_ends_is_critical_in_scan_and_daemon(tmp_path):
    """15 ActiveJob-wrapped jobs, 4 attempts each over 2 minutes, default 25 retries (none dead), no success."""
    stream = Stream()
    background(stream, 0, 200)
    storm(stream, AJ_FAIL, start=30)
    last_line = 30 + 14 * 2.0 + ATTEMPTS_25[-1]
    found, first_critical = judged(tmp_path, stream)
    f = only(found, "ReportExportJob")
    assert f.severity == "critical" and f.subject["error_class"] == "NoMethodError"
    assert "failing_100pct" in f.details["signals"] and f.details["dead"] == 0
    assert f.details["jobs"] == 15 and f.count == 60  # every attempt counted once
    assert [g.subject.get("job_class") for g in found] == ["ReportExportJob"]  # OkJob, succeeding meanwhile, is not blamed
    # the class rule fires in event time, when the 5th job's retry fails: long before the log ends
    # (the parser emits a fail once its error lines are complete: at the next record, within 2 s here)
    assert first_critical is not None and first_critical - T0 <= 30 + 4 * 2.0 + ATTEMPTS_25[1] + 2 < last_line


def test_native_job_class_failing_every_attempt_is_critical_without_waiting_for_each_grace(tmp_path):
    stream = Stream()
    background(stream, 0, 200)
    storm(stream, NATIVE_FAIL, start=30)
    found, first_critical = judged(tmp_path, stream)
    f = only(found, "AlwaysFailsJob")
    assert f.severity == "critical" and "failing_100pct" in f.details["signals"] and f.count == 60
    assert first_critical is not None and first_critical - T0 <= 30 + 4 * 2.0 + ATTEMPTS_25[1] + 2


def test_short_retries_reaching_the_dead_set_are_critical(tmp_path):
    """``retry: 2``: three attempts in about a minute, the last one ``Adding dead``."""
    stream = Stream()
    background(stream, 0, 200)
    storm(stream, NATIVE_FAIL, start=30, jobs=6, at=(0.0, 20.0, 45.0), last=NATIVE_DEAD)
    found, _ = judged(tmp_path, stream)
    f = only(found, "AlwaysFailsJob")
    assert f.severity == "critical" and f.details["dead"] == 6 and f.count == 18
    assert {"failing_100pct", "dead"} <= set(f.details["signals"])
    assert not f.details.get("still_failing_at_end")  # dead jobs are settled, not "still failing"


def test_sidekiq_4_5_format_storm_is_critical(tmp_path):
    stream = Stream()
    background(stream, 0, 200, template=V5_OK)
    storm(stream, V5_FAIL, start=30, jobs=6)
    found, _ = judged(tmp_path, stream)
    f = only(found, "UserStatWorker")
    assert f.severity == "critical" and f.subject["error_class"] == "ActiveRecord::RecordNotFound"


def test_a_storm_whose_first_attempts_only_are_in_the_log_is_still_failing_at_the_end(tmp_path):
    """The log ends 30 s after 15 jobs of a class with no success failed once: reported, not dropped."""
    stream = Stream()
    background(stream, 0, 70)
    storm(stream, AJ_FAIL, start=30, at=(0.0,))
    found, first_critical = judged(tmp_path, stream)
    f = only(found, "ReportExportJob")
    assert f.severity == "critical" and f.details["still_failing_at_end"] is True
    assert "still failing at the end of the log" in f.title and "still failing when the log ended" in f.triage.summary
    assert first_critical is None  # nothing to decide before the end: the retries have not run yet


def test_jobs_that_fail_once_and_succeed_on_retry_are_silent(tmp_path):
    stream = Stream()
    background(stream, 0, 400)
    for i in range(15):  # more than total_failure_min_jobs, all recovering ~20 s later
        stream.add(FLAKY_FAIL, 30 + i * 2.0, jid("f1", i))
        stream.add(FLAKY_DONE, 51 + i * 2.0, jid("f1", i))
    found, _ = judged(tmp_path, stream)
    assert found == []


def test_young_failures_of_a_class_that_succeeds_are_dropped_at_the_end(tmp_path):
    """The log ends before their retries, but the class succeeded minutes before: probably recovering."""
    stream = Stream()
    background(stream, 0, 300)
    stream.add(FLAKY_DONE, 100, jid("f2", 99))
    stream.add(FLAKY_DONE, 200, jid("f2", 98))
    for i in range(6):
        stream.add(FLAKY_FAIL, 280 + i, jid("f2", i))
    found, _ = judged(tmp_path, stream)
    assert found == []


def test_a_single_flaky_job_is_judged_per_job_and_silent(tmp_path):
    stream = Stream()
    background(stream, 0, 400)
    stream.add(FLAKY_FAIL, 30, jid("f3", 0))
    stream.add(FLAKY_FAIL, 52, jid("f3", 0))  # fails twice...
    stream.add(FLAKY_DONE, 90, jid("f3", 0))  # ...and then succeeds
    assert judged(tmp_path, stream)[0] == []


@pytest.mark.parametrize("ends_at", [200.0, 900.0])
def test_three_jobs_failing_every_attempt_are_a_warning_never_critical(tmp_path, ends_at):
    """Below total_failure_min_jobs: a warning (new error, or still failing at the end), never a page."""
    stream = Stream()
    background(stream, 0, ends_at)
    storm(stream, AJ_FAIL, start=30, jobs=3)
    f = only(judged(tmp_path, stream)[0], "ReportExportJob")
    assert f.severity == "warning"
    assert bool(f.details.get("still_failing_at_end")) == (ends_at == 200.0)


def test_a_failing_class_in_a_shared_log_is_neither_masked_nor_blamed_on_the_others(tmp_path):
    """OkJob and UserStatWorker succeed all along in the same file; the ActiveJob class fails at every attempt."""
    stream = Stream()
    background(stream, 0, 400, every=3.0)
    background(stream, 1, 400, template=FLAKY_DONE, every=7.0)  # FlakyOnceJob succeeding: another healthy class
    storm(stream, AJ_FAIL, start=30)
    found, _ = judged(tmp_path, stream)
    assert [(f.subject.get("job_class"), f.severity) for f in found] == [("ReportExportJob", "critical")]


def test_a_class_that_also_succeeds_is_not_found_failing_by_the_class_rule(tmp_path):
    """Its retries fail, but other jobs of the same class succeed: per-job judgement, no instant page."""
    stream = Stream()
    background(stream, 0, 150)
    background(stream, 0, 150, template=FLAKY_DONE, every=5.0)
    storm(stream, FLAKY_FAIL, start=30, jobs=6, at=(0.0, 21.0))
    found, first_critical = judged(tmp_path, stream)
    assert first_critical is None and found == []  # young at the end, and the class works: probably recovering


def test_the_class_rule_lapses_after_a_quiet_window_and_a_later_flaky_failure_is_judged_per_job(tmp_path):
    stream = Stream()
    background(stream, 0, 1400)
    storm(stream, FLAKY_FAIL, start=30)  # FlakyOnceJob failing at every attempt: found failing
    stream.add(FLAKY_FAIL, 1000, jid("f4", 0))  # 15 minutes later, one failure that recovers on its retry
    stream.add(FLAKY_DONE, 1021, jid("f4", 0))
    f = only(judged(tmp_path, stream)[0], "FlakyOnceJob")
    assert f.severity == "critical" and f.count == 60  # the late failure recovered: not counted
