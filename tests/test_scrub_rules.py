"""Every rule in the scrubber's table proves itself on its own samples.

Generated from ``agent.scrub_rules``: each positive sample loses its secret (through the
whole default scrubber, so a rule earlier in the table may be the one that catches it,
but the rule itself must match it too); each negative sample comes through unchanged.
"""
from __future__ import annotations

import pytest

from agent.scrub import REDACTED, Scrubber, scrub
from agent.scrub_rules import CARD, EMAIL, RULES, Rule

ALL: list = RULES + [EMAIL, CARD]
POSITIVES = [pytest.param(r, text, secret, id=f"{r.name}+{i}") for r in ALL for i, (text, secret) in enumerate(r.positives)]
NEGATIVES = [pytest.param(r, text, id=f"{r.name}-{i}") for r in ALL for i, text in enumerate(r.negatives)]


def apply_alone(rule: Rule, text: str) -> str:
    return rule.regex.sub(lambda m: rule.replace(m) or m.group(0), text)


def test_every_rule_has_a_unique_name_and_samples_both_ways():
    assert len({r.name for r in ALL}) == len(ALL)
    assert [r.name for r in ALL if not r.positives or not r.negatives] == []
    assert all(secret in text for r in ALL for text, secret in r.positives)


@pytest.mark.parametrize("rule, text, secret", POSITIVES)
def test_positive_sample_loses_its_secret(rule, text, secret):
    assert secret not in apply_alone(rule, text)  # the rule itself catches it
    out, counts = scrub(text)
    assert secret not in out and REDACTED in out
    assert sum(counts.values()) >= 1


@pytest.mark.parametrize("rule, text", NEGATIVES)
def test_negative_sample_is_left_alone(rule, text):
    assert apply_alone(rule, text) == text
    assert Scrubber().scrub(text) == (text, {})
