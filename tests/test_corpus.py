"""Every file of the real-log corpus is recognised as its format, or reported unknown.

The corpus (tests/fixtures/corpus: real logs of public projects, copied from the maintainers'
shared/corpus with each licence beside its logs; PROVENANCE.md there is the record) ships
with the repository, so a missing or altered file is a failure, never a skip.
"""
from __future__ import annotations

import gzip
import hashlib

import pytest

from agent.scan import scan
from support import CORPUS, CORPUS_FORMATS as EXPECTED, require

#: corpus files the copy leaves out on purpose (PROVENANCE.md says why)
NOT_COPIED = {"ISSUE_QUOTES.md", "PROVENANCE.md"}
#: corpus files stored gzipped here: the name in SHA256SUMS -> the stored copy
GZIPPED = {"sidekiq_log_analyzer/sidekiq.log": "sidekiq_log_analyzer/sidekiq.log.gz"}


@pytest.fixture(scope="module")
def corpus_scan():
    return scan([str(require(CORPUS / name)) for name in EXPECTED])


def upstream_sums():
    for line in require(CORPUS / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(None, 1)
        yield name, digest


@pytest.mark.parametrize("name,digest", sorted(upstream_sums()))
def test_copied_file_matches_the_corpus_checksum(name, digest):
    if name in NOT_COPIED:
        return
    if name in GZIPPED:
        data = gzip.decompress(require(CORPUS / GZIPPED[name]).read_bytes())
    else:
        data = require(CORPUS / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, f"{name} differs from the corpus"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_recognised_as_its_format(corpus_scan, name):
    report = next(f for f in corpus_scan.files if f.path.endswith(name))
    assert report.format == EXPECTED[name]
    assert report.lines > 0
    if report.format != "unknown":
        # a recognised file is mostly understood; unknown lines are counted, not fatal
        assert report.unparsed <= report.lines * 0.2, f"{report.unparsed} of {report.lines} lines unparsed"


def test_every_corpus_log_is_listed_here():
    logs = {
        str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "PROVENANCE", "SHA256SUMS"))
    }
    assert logs == set(EXPECTED)


def test_no_critical_incident_on_the_corpus(corpus_scan):
    # none of these logs shows an outage a human would page for
    assert [i.title for i in corpus_scan.incidents if i.severity == "critical"] == []
    assert not any("Traceback" in e for e in corpus_scan.errors)
