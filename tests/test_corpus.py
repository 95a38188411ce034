"""Every file of the shared corpus is recognised as its format, or reported unknown.

The corpus (shared/corpus, beside the repository; real logs of public projects) is
read in place rather than copied: it is large, and its PROVENANCE.md is the record.
Outside CI the test skips when the corpus is absent; in CI it must be there.
"""
from __future__ import annotations

import os

import pytest

from agent.scan import scan
from support import CORPUS, CORPUS_FORMATS as EXPECTED




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
