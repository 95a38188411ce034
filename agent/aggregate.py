"""Merge findings that describe the same problem (same fingerprint) into one.

Detectors report as evidence accumulates; a long input can yield several findings
for one bug (a second burst an hour later, an escalation from warning to critical).
A report shows one incident per fingerprint: counts add up, the window widens,
severity is the highest seen, and triage comes from the most severe, latest finding.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

from agent.events import Evidence, Finding, severity_rank

MAX_EVIDENCE = 25


def merge_findings(findings: Iterable[Finding]) -> List[Finding]:
    merged: Dict[str, Finding] = {}
    for f in findings:
        key = f.fingerprint
        have = merged.get(key)
        if have is None:
            merged[key] = Finding(
                detector=f.detector, severity=f.severity, title=f.title, subject=dict(f.subject),
                first_seen=f.first_seen, last_seen=f.last_seen, count=f.count, evidence=list(f.evidence),
                triage=f.triage, details=dict(f.details),
            )
            continue
        have.count += f.count
        have.first_seen = min(have.first_seen, f.first_seen)
        have.last_seen = max(have.last_seen, f.last_seen)
        if severity_rank(f.severity) >= severity_rank(have.severity):
            have.severity, have.title, have.triage = f.severity, f.title, f.triage
            have.details.update(f.details)
        have.evidence = _union(have.evidence, f.evidence)
    return sorted(merged.values(), key=lambda f: (-severity_rank(f.severity), f.first_seen, f.detector))


def _union(a: List[Evidence], b: List[Evidence]) -> List[Evidence]:
    seen = {(e.path, e.line) for e in a}
    out = list(a)
    for e in b:
        if len(out) >= MAX_EVIDENCE:
            break
        if (e.path, e.line) not in seen:
            seen.add((e.path, e.line))
            out.append(e)
    return out
