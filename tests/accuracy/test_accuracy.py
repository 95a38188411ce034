"""Accuracy benchmark as tests: every labelled scenario under tests/accuracy/scenarios must score
with no miss, wrong subject or severity, false critical or broken silence (see score.py).

Scenarios today's detectors get wrong are listed in KNOWN_GAPS with the reason (issue 12);
they run as strict xfails, so fixing a gap turns the test into a loud XPASS failure: then
delete the entry.
"""
from __future__ import annotations

import copy
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import score  # noqa: E402  (tests/accuracy/score.py)

KNOWN_GAPS: dict = {}  # scenario -> why it fails today (strict xfail: it flips loudly once fixed)


def _params():
    out = []
    for name in score.scenario_names():
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name])] if name in KNOWN_GAPS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_scenario_scores_clean(name):
    outcome = score.run_scenario(name)
    assert outcome.passed, "\n".join(outcome.failures)


def test_known_gaps_name_existing_scenarios():
    assert set(KNOWN_GAPS) <= set(score.scenario_names())


def test_every_scenario_has_logs_and_a_complete_truth():
    for name in score.scenario_names():
        truth = score.load_truth(name)
        assert truth["description"] and isinstance(truth["setup"], dict), name
        assert truth["max_severity_elsewhere"] in ("warning", "none"), name
        for want in truth["expect"]:
            assert want["severity"] in ("warning", "critical") and want["detector"], (name, want)
        paths = score.log_paths(truth)
        assert paths and all(os.path.getsize(p) > 0 for p in paths), name


@pytest.fixture(scope="module")
def info_incidents():
    from agent.scan import scan

    truth = score.load_truth("e2e_info")
    return truth, scan(score.log_paths(truth)).incidents


def test_scorer_sees_a_miss_a_wrong_subject_and_a_wrong_severity(info_incidents):
    truth, incidents = info_incidents
    truth = copy.deepcopy(truth)
    truth["expect"][1]["subject"] = {"job_class": "NoSuchJob"}  # AlwaysFailsJob then counts as wrong subject
    truth["expect"][2]["severity"] = "critical"  # ReportExportJob is a warning
    truth["expect"].append({"detector": "n_plus_one", "subject": {"endpoint": "CommentsController#index"},
                            "severity": "warning"})
    outcome = score.score("mutated", truth, incidents)
    assert len(outcome.found) == 2
    assert len(outcome.wrong_subject) == 1 and "AlwaysFailsJob" in outcome.wrong_subject[0]
    assert len(outcome.wrong_severity) == 1 and "ReportExportJob" in outcome.wrong_severity[0]
    assert len(outcome.missed) == 1 and "CommentsController#index" in outcome.missed[0]
    assert not outcome.passed


def test_scorer_sees_false_criticals_and_broken_silences(info_incidents):
    truth, incidents = info_incidents
    truth = dict(truth, expect=[], max_severity_elsewhere="warning",
                 silent=[{"detector": "n_plus_one", "subject": {"endpoint": "PostsController#index"}}])
    outcome = score.score("silent", truth, incidents)
    assert len(outcome.false_critical) == 2  # pool exhaustion and AlwaysFailsJob
    assert len(outcome.silence_broken) == 1 and "PostsController#index" in outcome.silence_broken[0]
    assert len(outcome.unexpected_warnings) == 1 and "ReportExportJob" in outcome.unexpected_warnings[0]
    assert not outcome.passed


def test_table_lists_every_scenario_and_a_total(info_incidents):
    truth, incidents = info_incidents
    text = score.table([score.score("e2e_info", truth, incidents)])
    assert text.splitlines()[2].startswith("e2e_info ") and text.splitlines()[2].rstrip().endswith("pass")
    assert text.splitlines()[-1].startswith("TOTAL (1 scenarios, 0 failing)")
