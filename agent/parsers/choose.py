"""Which parser (and which envelope) reads a file, told from its first lines.

``scan`` (replaying files) and ``run`` (tailing them) both call ``choose_format``, so a
file is read the same way by either driver.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type

from agent.parsers import BY_NAME, MIN_SNIFF_SCORE, Parser, sniff
from agent.parsers.envelope import ENVELOPES, Envelope

SNIFF_LINES = 64  # lines of a file's head the choice is made from
MIN_ENVELOPE_SHARE = 0.6  # share of sample lines an envelope (syslog, journald…) must wrap


def choose_format(sample: Sequence[str], forced: Optional[str]) -> Tuple[Optional[Type[Parser]], Optional[Envelope]]:
    """Pick the parser (and envelope) for a file from its first lines."""
    if forced:
        parser = BY_NAME[forced]
        if parser.sniff(sample) >= MIN_SNIFF_SCORE:
            return parser, None
        for env in ENVELOPES:
            if env.share(sample) >= MIN_ENVELOPE_SHARE and parser.sniff([env.split(l, 1970)[0] for l in sample]) >= MIN_SNIFF_SCORE:
                return parser, env
        return parser, None
    parser, _ = sniff(sample)
    if parser is not None:
        return parser, None
    for env in ENVELOPES:
        if env.share(sample) >= MIN_ENVELOPE_SHARE:
            parser, _ = sniff([env.split(l, 1970)[0] for l in sample])
            if parser is not None:
                return parser, env
    return None, None
