"""Which parser (and which envelope) reads a file, told from its first lines.

``scan`` (replaying files) and ``run`` (tailing them) both call ``choose_format``, so a
file is read the same way by either driver.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type

from agent.parsers import BY_NAME, FORMATS, MIN_SNIFF_SCORE, Parser, sniff
from agent.parsers.envelope import ENVELOPES, Envelope
from agent.parsers.mixed import mixed_parser, second_format

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
        return _with_second(parser, sample), None
    for env in ENVELOPES:
        if env.share(sample) >= MIN_ENVELOPE_SHARE:
            inner = [env.split(l, 1970)[0] for l in sample]
            parser, _ = sniff(inner)
            if parser is not None:
                return _with_second(parser, inner), env
    return None, None


def _with_second(parser: Type[Parser], sample: Sequence[str]) -> Type[Parser]:
    """``parser``, or a mixed parser when another format owns a fair share of the other lines
    (web and worker processes writing one production.log)."""
    second = second_format(sample, parser, FORMATS)
    return parser if second is None else mixed_parser(parser, second)
