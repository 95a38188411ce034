"""Remove secrets and personal data from text before it is stored, bundled or sent.

Everything railwatch writes outside the process (the incident store, bundles, reports,
sink payloads) passes through ``scrub``; process command lines go through
``scrub_cmdline`` first. The shapes are a table of named rules with their own positive
and negative samples (``agent.scrub_rules``); each rule has cheap *hints* (substrings,
checked on the lower-cased text) so a clean evidence line costs a few ``in`` tests, not
two dozen regex scans (the shape of Datadog's hinted replacers). Redactions are counted
per rule *kind*; the bundle manifest reports those counts.

Rails' own ``[FILTERED]`` and values already redacted are left alone.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from agent.scrub_rules import CARD, CARD_HINT, EMAIL, NOT_SECRET_KEYS, REDACTED, RULES, SECRET_FLAG, Rule, card_like, is_inert, luhn_ok

__all__ = ["REDACTED", "RULES", "Scrubber", "scrub", "scrub_obj", "scrub_finding", "scrub_cmdline", "recorded_in",
           "luhn_ok", "card_like"]


class Scrubber:
    """A configured scrubber; ``emails=False`` keeps e-mail addresses (some teams need them)."""

    def __init__(self, emails: bool = True, cards: bool = True) -> None:
        self.rules: List[Rule] = list(RULES)
        if emails:
            self.rules.append(EMAIL)
        self.cards = cards

    def scrub(self, text: str) -> Tuple[str, Dict[str, int]]:
        """Return the text with secrets replaced by ``[REDACTED]``, and counts per kind."""
        counts: Dict[str, int] = {}
        if not text:
            return text, counts
        lower = text.lower()
        for rule in self.rules:
            if not any(h in lower for h in rule.hints):
                continue
            text, n = _apply(rule, text)
            if n:
                counts[rule.kind] = counts.get(rule.kind, 0) + n
                lower = text.lower()
        if self.cards and CARD_HINT.search(text):
            text, n = _apply(CARD, text)
            if n:
                counts["card_number"] = n
        return text, counts

    def scrub_obj(self, obj: Any) -> Tuple[Any, Dict[str, int]]:
        """Scrub every string in nested dicts/lists/tuples; values under secret-named keys are dropped whole."""
        counts: Counter = Counter()
        return self._walk(obj, counts), dict(counts)

    def _walk(self, obj: Any, counts: Counter) -> Any:
        if isinstance(obj, str):
            text, c = self.scrub(obj)
            counts.update(c)
            return text
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                key = self._walk(k, counts) if isinstance(k, str) else k
                if isinstance(k, str) and _SENSITIVE_KEY.search(k) and not NOT_SECRET_KEYS.match(k) and v not in (None, "", {}, []):
                    if not (isinstance(v, str) and is_inert(v)):
                        counts["secret"] += 1
                        v = REDACTED
                out[key] = self._walk(v, counts)
            return out
        if isinstance(obj, (list, tuple)):
            items = [self._walk(v, counts) for v in obj]
            return items if isinstance(obj, list) else tuple(items)
        return obj


_SENSITIVE_KEY = re.compile(r"(?i)(?:passw|passphrase|secret|token|api_?key|private_key|access_key|routing_key|integration_key|authorization|^cookie$|^set-cookie$|credential)")


def _apply(rule: Rule, text: str) -> Tuple[str, int]:
    n = 0

    def sub(m: "re.Match[str]") -> str:
        nonlocal n
        replaced = rule.replace(m)
        if replaced is None:
            return m.group(0)
        n += 1
        return replaced

    return rule.regex.sub(sub, text), n


DEFAULT = Scrubber()


def scrub(text: str) -> Tuple[str, Dict[str, int]]:
    """Scrub with the default settings (e-mails and card numbers redacted)."""
    return DEFAULT.scrub(text)


def scrub_obj(obj: Any) -> Tuple[Any, Dict[str, int]]:
    """Scrub a JSON-like object with the default settings; returns (copy, counts)."""
    return DEFAULT.scrub_obj(obj)


def scrub_finding(finding: Any, scrubber: Optional[Scrubber] = None) -> Tuple[Any, Dict[str, int]]:
    """A scrubbed copy of a ``Finding`` (title, subject values, evidence, triage, details).

    The fingerprint is taken from the original subject first and kept in ``details``
    (``fingerprint``) so a redaction in a subject value never splits an incident.
    """
    from agent.events import Evidence, Finding, Triage

    s = scrubber or DEFAULT
    counts: Counter = Counter()

    def t(value: Any) -> Any:
        return s._walk(value, counts)

    copy = Finding(
        detector=finding.detector, severity=finding.severity, title=t(finding.title), subject=t(dict(finding.subject)),
        first_seen=finding.first_seen, last_seen=finding.last_seen, count=finding.count,
        evidence=[Evidence(path=e.path, line=e.line, text=t(e.text), ts=e.ts, role=e.role) for e in finding.evidence],
        triage=Triage(summary=t(finding.triage.summary), likely_cause=t(finding.triage.likely_cause),
                      containment=t(list(finding.triage.containment)), prevention=t(list(finding.triage.prevention))),
        details=t(dict(finding.details)),
    )
    return copy, dict(counts)


# ---------------------------------------------------------------------- command lines

_SECRET_FLAG = re.compile(r"(?i)" + SECRET_FLAG)
# short flags that take a password, per program (redis-cli -a; mysql -pSECRET is attached)
_SHORT_SECRET_FLAGS = {"redis-cli": ("-a",), "redis-benchmark": ("-a",), "mysql": ("-p",), "mysqldump": ("-p",),
                       "mysqladmin": ("-p",)}
_ATTACHED = ("mysql", "mysqldump", "mysqladmin")


def scrub_cmdline(argv: List[str]) -> List[str]:
    """A process's argv with secret flag values redacted, then every argument scrubbed as text.

    ``--control-token VALUE``, ``--redis-password=VALUE``, ``redis-cli -a VALUE``,
    ``mysql -pVALUE``; a flag followed by another ``--flag`` (or ``--no-…``) takes no value.
    """
    prog = os.path.basename(argv[0]) if argv else ""
    shorts = _SHORT_SECRET_FLAGS.get(prog, ())
    out: List[str] = []
    take_next = False
    for arg in argv:
        if take_next:
            take_next = False
            if not arg.startswith("--"):
                out.append(REDACTED)
                continue
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and not arg.startswith("--no-") and (_SECRET_FLAG.fullmatch(name) or name in shorts):
            if eq:
                out.append(name + "=" + (REDACTED if value else ""))
            else:
                out.append(arg)
                take_next = True
            continue
        if prog in _ATTACHED and arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            out.append("-p" + REDACTED)
            continue
        out.append(scrub(arg)[0])
    return out


# ---------------------------------------------------------------------- comparing with the source


def recorded_in(recorded: str, raw: str) -> bool:
    """Could ``recorded`` (scrubbed text) have come from ``raw`` (the source line, secrets and all)?

    Each ``[REDACTED]`` in the recorded text stands for a non-empty run of the raw line;
    the pieces between must appear in order. A recorded text cut inside a marker counts too.
    """
    for n in range(len(REDACTED) - 1, 0, -1):
        if recorded.endswith(REDACTED[:n]):
            recorded = recorded[:-n] + REDACTED
            break
    pieces = recorded.split(REDACTED)
    if len(pieces) == 1:
        return recorded in raw
    at = raw.find(pieces[0])
    if at < 0:
        return False
    at += len(pieces[0])
    for piece in pieces[1:]:
        found = raw.find(piece, at + 1) if piece else (at + 1 if at < len(raw) else -1)
        if found < 0:
            return False
        at = found + len(piece)
    return True
