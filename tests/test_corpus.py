"""Every file of the shared corpus is recognised as its format, or reported unknown.

The corpus (shared/corpus, beside the repository; real logs of public projects) is
read in place rather than copied: it is large, and its PROVENANCE.md is the record.
Outside CI the test skips when the corpus is absent; in CI it must be there.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.scan import scan

CORPUS = Path(os.environ.get("RAILWATCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))

EXPECTED = {
    "chatwoot/bullet.log": "bullet",
    "pgbadger/anonymize.log": "postgres",
    "pgbadger/begin_end.log": "postgres",
    "pgbadger/cloudsql.log.gz": "postgres",
    "pgbadger/cnpg.log.gz": "postgres",
    "pgbadger/light.postgres.log.bz2": "postgres",
    "pgbadger/logplex.gz": "postgres",
    "pgbadger/pg-syslog.1.bz2": "postgres",
    "pgbadger/pg_rawcsv.log": "postgres",
    "pgbadger/pgbouncer.1.21.log.gz": "pgbouncer",
    "pgbadger/postgresql_param_range.log": "postgres",
    "pgbadger/queryid.log.gz": "postgres",
    "pgbadger/rds.log.bz2": "postgres",
    "pgbadger/tempfile_only.log.gz": "postgres",
    "production_log_analyzer/test.syslog.0.14.x.log": "unknown",  # Rails 0.14
    "production_log_analyzer/test.syslog.1.2.shortname.log": "unknown",  # Rails 1.2
    "production_log_analyzer/test.syslog.log": "unknown",  # Rails 0.10
    "rails_log_parser/example.log": "rails",
    "rails_log_parser/example2.log": "rails",
    "request-log-analyzer/merb.log": "unknown",
    "request-log-analyzer/merb_prefixed.log": "unknown",
    "request-log-analyzer/mysql_slow_query.log": "unknown",
    "request-log-analyzer/oink_22.log": "unknown",  # Rails 2.2
    "request-log-analyzer/oink_22_failure.log": "unknown",
    "request-log-analyzer/postgresql.log": "postgres",
    "request-log-analyzer/rails3_failure.log": "rails",
    "request-log-analyzer/rails3_success.log": "rails",
    "request-log-analyzer/rails_1x.log": "unknown",
    "request-log-analyzer/rails_22.log": "unknown",
    "request-log-analyzer/rails_22_cached.log": "unknown",
    "request-log-analyzer/rails_3_partials.log": "rails",
    "request-log-analyzer/rails_unordered.log": "unknown",  # Rails 2.x
    "request-log-analyzer/sinatra.log": "unknown",
    "request-log-analyzer/syslog_1x.log": "unknown",
    "select_rails_log/overlapped.log": "rails",
    "select_rails_log/simple.log": "rails",
    "sidekiq_log_analyzer/sidekiq.log": "sidekiq",
}


@pytest.fixture(scope="module")
def corpus_scan():
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared corpus is missing at {CORPUS}")
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return scan([str(CORPUS / name) for name in EXPECTED])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_recognised_as_its_format(corpus_scan, name):
    report = next(f for f in corpus_scan.files if f.path.endswith(name))
    assert report.format == EXPECTED[name]
    assert report.lines > 0
    if report.format != "unknown":
        # a recognised file is mostly understood; unknown lines are counted, not fatal
        assert report.unparsed <= report.lines * 0.2, f"{report.unparsed} of {report.lines} lines unparsed"


def test_every_corpus_log_is_listed_here():
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not found")
    logs = {
        str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "PROVENANCE", "SHA256SUMS", "ISSUE_QUOTES"))
    }
    assert logs == set(EXPECTED)


def test_no_critical_incident_on_the_corpus(corpus_scan):
    # none of these logs shows an outage a human would page for
    assert [i.title for i in corpus_scan.incidents if i.severity == "critical"] == []
    assert not any("Traceback" in e for e in corpus_scan.errors)
