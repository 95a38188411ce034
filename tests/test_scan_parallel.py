"""scan --jobs: logs scanned in worker processes give the report one process gives."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.scan import UsageError, scan

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
RAILS_POOL = LOGS / "pool_exhaustion" / "rails61_pool_timeouts.log"
SIDEKIQ = LOGS / "sidekiq_failures" / "sidekiq_log_analyzer.sidekiq.log.gz"
HEALTHY = LOGS / "rails" / "rails52_production.log"


def _summary(result):  # type: ignore[no-untyped-def]
    files = [(f.path, f.format, f.lines, f.unparsed) for f in result.files]
    incidents = sorted((i.fingerprint, i.severity, i.count, i.first_seen, i.last_seen) for i in result.incidents)
    return files, incidents, result.events


def test_two_jobs_report_the_same_files_incidents_and_events_as_one_job():
    paths = [str(RAILS_POOL), str(SIDEKIQ), str(HEALTHY)]
    one = scan(paths, jobs=1)
    two = scan(paths, jobs=2)
    assert one.incidents, "the fixtures must yield incidents, or this test proves nothing"
    assert {i.detector for i in one.incidents} >= {"pool_exhaustion", "sidekiq_failures"}
    assert _summary(two) == _summary(one)
    assert [f.path for f in two.files] == paths  # reports keep the order the files were given in


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
