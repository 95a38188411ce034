"""Format sniffing: every parser stays well below the bar on every other format's real logs.

One table of real files (the shared corpus, tests/support.py) instead of a copy of this
test in each parser's module.
"""
from __future__ import annotations

import itertools

import pytest

from agent.parsers import FORMATS, MIN_SNIFF_SCORE
from support import CORPUS, CORPUS_FORMATS, require

# a lograge file is a Rails logger file too: the Rails parser reading one is by design
RELATED = {("rails", "lograge"), ("lograge", "rails")}


def head(path, n=64):
    import gzip
    import bz2

    opener = gzip.open if path.suffix == ".gz" else bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return [l.rstrip("\n") for l in itertools.islice(f, n) if l.strip()]


@pytest.mark.parametrize("name", sorted(CORPUS_FORMATS))
@pytest.mark.parametrize("parser", FORMATS, ids=lambda p: p.name)
def test_a_parser_scores_low_on_other_formats(parser, name):
    expected = CORPUS_FORMATS[name]
    if expected == parser.name or (parser.name, expected) in RELATED:
        return
    score = parser.sniff(head(require(CORPUS / name)))
    assert score < MIN_SNIFF_SCORE, f"{parser.name} scores {score:.2f} on {name} ({expected})"
