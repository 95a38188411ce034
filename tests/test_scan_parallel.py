"""scan --jobs: logs parsed in worker processes, detected once, give the report one process gives."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import scan_parallel, scan_split
from agent.cli import cli
from agent.event_spill import SpillWriter
from agent.scan import UsageError, scan
from agent.sources.files import InputFile

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
RAILS_POOL = LOGS / "pool_exhaustion" / "rails61_pool_timeouts.log"
SIDEKIQ = LOGS / "sidekiq_failures" / "sidekiq_log_analyzer.sidekiq.log.gz"
HEALTHY = LOGS / "rails" / "rails52_production.log"
ACCURACY = LOGS / "accuracy"
SCENARIOS = sorted(p.name for p in ACCURACY.iterdir() if p.is_dir())


def _summary(result):  # type: ignore[no-untyped-def]
    """Everything a report is made of: files, every incident whole, events, the timelines' buckets."""
    files = [(f.path, f.format, f.envelope, f.lines, f.unparsed, f.problems) for f in result.files]
    incidents = [json.dumps(i.to_dict(), sort_keys=True, default=repr) for i in result.incidents]
    series = {k: v for k, v in vars(result.series).items() if not k.startswith("_cached")}
    return files, incidents, result.events, result.errors, repr(series)


def test_two_jobs_report_the_same_files_incidents_and_events_as_one_job():
    paths = [str(RAILS_POOL), str(SIDEKIQ), str(HEALTHY)]
    one = scan(paths, jobs=1)
    two = scan(paths, jobs=2)
    assert one.incidents, "the fixtures must yield incidents, or this test proves nothing"
    assert {i.detector for i in one.incidents} >= {"pool_exhaustion", "sidekiq_failures"}
    assert _summary(two) == _summary(one)
    assert [f.path for f in two.files] == paths  # reports keep the order the files were given in


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_logs_that_correlate_give_the_same_incidents_with_two_jobs(scenario: str):
    """Rails, Puma, Sidekiq (and a tagged Postgres log) of one app: the detectors see them as one
    timeline whichever process parsed them. (A pipeline per log lost this: with a worker per log the
    N+1 detector, not seeing the Rails requests beside the Postgres statements, called a known
    endpoint's N+1 "new endpoint".)"""
    paths = sorted(str(p) for p in (ACCURACY / scenario).glob("*.log"))
    assert len(paths) >= 2
    assert _summary(scan(paths, jobs=2)) == _summary(scan(paths, jobs=1))


def test_more_logs_than_workers_and_a_time_window():
    """Five logs on two workers (a log waits for a free worker while the others spill), inside --since/--until."""
    paths = sorted(str(p) for p in (ACCURACY / "n_plus_one_info_tagged_pg_log").glob("*.log")) + [str(HEALTHY)]
    one = scan(paths, jobs=1)
    times = sorted(i.first_seen for i in one.incidents)
    assert times, "the scenario must yield an incident"
    window = {"since": times[0] - 30, "until": times[0] + 30}
    assert _summary(scan(paths, jobs=2, **window)) == _summary(scan(paths, jobs=1, **window))
    assert _summary(scan(paths, jobs=2)) == _summary(one)


@pytest.mark.parametrize("path, here", [(RAILS_POOL, False), (SIDEKIQ, True)])
def test_one_log_too_small_to_split(path: Path, here: bool):
    """A Rails log is parsed in a worker beside the detectors; a Sidekiq log (gzipped here) in this
    process, its events costing as much to ship as to parse. The same report either way."""
    assert scan_parallel._parsed_here([InputFile(str(path), "log")], None) is here
    assert _summary(scan([str(path)], jobs=2)) == _summary(scan([str(path)], jobs=1))


def test_progress_is_reported_from_the_workers():
    seen = []
    scan([str(RAILS_POOL), str(HEALTHY)], jobs=2, on_bytes=seen.append)
    assert sum(seen) == RAILS_POOL.stat().st_size + HEALTHY.stat().st_size


def test_jobs_below_one_is_a_usage_error():
    with pytest.raises(UsageError):
        scan([str(HEALTHY)], jobs=0)


def test_cli_accepts_jobs_and_exits_as_without_it():
    args = ["scan", "--format", "json", str(RAILS_POOL), str(HEALTHY)]
    plain = CliRunner().invoke(cli, args)
    jobs = CliRunner().invoke(cli, args[:1] + ["--jobs", "2"] + args[1:])
    assert plain.exit_code == jobs.exit_code == 1, jobs.output  # a critical pool incident
    bad = CliRunner().invoke(cli, ["scan", "--jobs", "0", str(HEALTHY)])
    assert bad.exit_code == 2


def _die(*args, **kwargs):  # type: ignore[no-untyped-def]
    os._exit(1)  # a worker killed mid-scan (OOM killer, kill -9)


def _dying_in_workers(real):  # type: ignore[no-untyped-def]
    parent = os.getpid()
    return lambda *args, **kwargs: _die() if os.getpid() != parent else real(*args, **kwargs)


@pytest.mark.parametrize("split", [False, True])
def test_a_worker_that_dies_is_one_line_and_exit_status_2(monkeypatch: pytest.MonkeyPatch, split: bool):
    """No traceback and no report: an incomplete scan must not read as "all clear". The pools fork
    after the patch, so the workers run it."""
    if split:  # one file in byte ranges: this process reads the first range itself
        monkeypatch.setattr(scan_split, "SPLIT_MIN_BYTES", 0)
        monkeypatch.setattr(scan_split, "parse_range", _dying_in_workers(scan_split.parse_range))
        args = [str(RAILS_POOL)]
    else:
        monkeypatch.setattr(scan_parallel, "_group_batches", _die)
        args = [str(RAILS_POOL), str(HEALTHY)]
    result = CliRunner().invoke(cli, ["scan", "--jobs", "2"] + args)
    assert result.exit_code == 2, result.output
    assert "worker process ended abruptly" in result.output and "Traceback" not in result.output


def _disk_full(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_temporary_directory_is_one_line_and_exit_status_2(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(SpillWriter, "_frame", _disk_full)
    result = CliRunner().invoke(cli, ["scan", "--jobs", "2", str(RAILS_POOL), str(HEALTHY)])
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output and "TMPDIR" in result.output and "Traceback" not in result.output
