"""Log formats: one parser module per format, sniffed per file from its first lines.

``FORMATS`` is the one place to add a format. Order breaks ties in ``sniff``: the
more specific formats come first.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type

from agent.parsers.base import Parser
from agent.parsers.rails import LogrageParser, RailsParser
from agent.parsers.postgres import PostgresParser
from agent.parsers.pgbouncer import PgBouncerParser
from agent.parsers.puma import PumaParser
from agent.parsers.bullet import BulletParser
from agent.parsers.semantic import SemanticLoggerParser
from agent.parsers.sidekiq import SidekiqParser

FORMATS: Tuple[Type[Parser], ...] = (
    LogrageParser,
    RailsParser,
    PostgresParser,
    PgBouncerParser,
    PumaParser,
    BulletParser,
    SemanticLoggerParser,
    SidekiqParser,
)

BY_NAME: Dict[str, Type[Parser]] = {p.name: p for p in FORMATS}

#: below this share of recognised sample lines a file is "unknown format"
MIN_SNIFF_SCORE = 0.3


def _sample(lines: Sequence[str]) -> List[str]:
    # logger.rb writes this header at the top of every new file; it says nothing about the format
    return [l for l in lines if l.strip() and not l.startswith("# Logfile created on")]


def sniff(lines: Sequence[str]) -> Tuple[Optional[Type[Parser]], float]:
    """Best format for these sample lines, with its score; (None, best score) below the bar."""
    sample = _sample(lines)
    best: Optional[Type[Parser]] = None
    best_score = 0.0
    for parser in FORMATS:
        score = parser.sniff(sample)
        if score > best_score:
            best, best_score = parser, score
    if best_score < MIN_SNIFF_SCORE:
        return None, best_score
    return best, best_score


__all__ = ["BY_NAME", "FORMATS", "MIN_SNIFF_SCORE", "Parser", "sniff"]
