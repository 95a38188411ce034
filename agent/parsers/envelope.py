"""Envelopes: prefixes that a collector, not the app, put in front of each line.

journald / syslog (``May 01 12:00:00 host app[123]: ``), container runtimes
(``2024-05-01T12:00:00.123456789Z stdout F ``, ``docker logs --timestamps``),
Heroku logplex (``2019-03-14T00:22:56+00:00 app[web.1]: ``), foreman
(``21:59:23 worker.1 | ``) and svlogd (``2016-09-07_03:22:10.94361 ``). The scan tries
the bare lines first; only when no format fits them does it try stripping each
envelope. The envelope's time is handed to the parser as ``ts_hint`` for lines (Rails 8
on STDOUT) that carry no time of their own.
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional, Sequence, Tuple

from agent.parsers.base import share
from agent.parsers.numbers import safe_iso
from agent.timeparse import parse_syslog


class Envelope:
    def __init__(self, name: str, pattern: str, ts: Callable[["re.Match[str]", int], Optional[float]]) -> None:
        self.name = name
        self.pattern = re.compile(pattern)
        self._ts = ts

    def split(self, line: str, year: int) -> Tuple[str, Optional[float]]:
        """Return (inner line, envelope time); the line unchanged when it has no envelope."""
        m = self.pattern.match(line)
        if m is None:
            return line, None
        return line[m.end():], self._ts(m, year)

    def share(self, lines: Sequence[str]) -> float:
        return share(lines, self.pattern.match)


ENVELOPES: List[Envelope] = [
    Envelope(
        "logplex",
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) [\w.-]+\[[\w.-]+\]: ",
        lambda m, year: safe_iso(m[1]),
    ),
    Envelope(
        "cri",  # Kubernetes container log files
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (?:stdout|stderr) [FP] ",
        lambda m, year: safe_iso(m[1]),
    ),
    Envelope(
        "syslog",  # also `journalctl` short output
        r"(?:<\d+>)?([A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d) \S+ [\w./@-]+(?:\[\d+\])?: ",
        lambda m, year: parse_syslog(m[1], year),
    ),
    Envelope(
        "journal-iso",  # `journalctl -o short-iso`
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) \S+ [\w./@-]+(?:\[\d+\])?: ",
        lambda m, year: safe_iso(m[1]),
    ),
    Envelope(
        "svlogd",
        r"(\d{4}-\d\d-\d\d_\d\d:\d\d:\d\d\.\d+) ",
        lambda m, year: safe_iso(m[1].replace("_", "T")),
    ),
    Envelope(
        "foreman",  # time of day only: no usable timestamp
        r"\d\d:\d\d:\d\d [\w.-]+\s*\| ",
        lambda m, year: None,
    ),
    Envelope(
        "docker",  # `docker logs --timestamps`: tried last, it is the least specific
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) ",
        lambda m, year: safe_iso(m[1]),
    ),
]
