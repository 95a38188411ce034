"""What every report format shows about an incident, computed once.

Evidence in time order with a role label and near-duplicates folded, facts that were
guessed (an ENV default, a framework default), times relative to the end of the log,
the share of failed requests in plain words, and the incident's timeline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from agent.events import Evidence, Finding
from agent.timeline import Timeline, timeline_for

# line text -> role, tried in order; the fallback while detectors do not set Evidence.role
_ROLE_PATTERNS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = (
    ("deploy", re.compile(r"^deploy\b")),
    ("pool error", re.compile(r"ConnectionTimeoutError|could not obtain a connection|too many clients|remaining connection slots")),
    ("N+1 warning (Bullet)", re.compile(r"USE eager loading|N\+1 [Qq]uery")),
    ("repeated query", re.compile(r"\b(?:Load|SELECT)\b.*\(\d")),
    ("job sent to the dead set", re.compile(r"Adding dead|moved to the dead set|\bdead\b")),
    ("failing job", re.compile(r"\bINFO: fail\b|Job raised exception|\bfail\b")),
    ("failed request", re.compile(r"Completed 5\d\d")),
)
_CONNECTION_HOLDER = re.compile(r"Completed [1-4]\d\d .* in (\d+)ms")
_VOLATILE = re.compile(r"\b(?:[0-9a-f]{8,}|[0-9a-f-]{36})\b|\d+(?:\.\d+)?|\b(?:tid|pid|jid)=\S+")
GUESS_MARKERS = ("took the default", "default is", "unset here")


@dataclass
class ShownEvidence:
    evidence: Evidence
    role: str
    more_like_this: int = 0  # folded near-duplicates


def role_of(finding: Finding, e: Evidence) -> str:
    if e.role:
        return e.role
    text = e.text
    for role, pattern in _ROLE_PATTERNS:
        if pattern.search(text):
            return role
    if finding.detector == "pool_exhaustion" and _CONNECTION_HOLDER.search(text):
        return "connection holder (slow request overlapping the pool errors)"
    return "evidence"


def ordered_evidence(finding: Finding) -> List[ShownEvidence]:
    """Evidence by time (items without a time sit after the line before them in their file), duplicates folded."""
    last_ts_in_file: Dict[str, float] = {}
    keyed = []
    for e in sorted(finding.evidence, key=lambda e: (e.path, e.line)):
        ts = e.ts if e.ts is not None else last_ts_in_file.get(e.path, 0.0)
        last_ts_in_file[e.path] = ts
        keyed.append((ts, e.path, e.line, e))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    shown: List[ShownEvidence] = []
    by_shape: Dict[Tuple[str, str], ShownEvidence] = {}
    for _, _, _, e in keyed:
        role = role_of(finding, e)
        shape = (role, _VOLATILE.sub("#", e.text))
        if shape in by_shape:
            by_shape[shape].more_like_this += 1
            continue
        item = ShownEvidence(e, role)
        by_shape[shape] = item
        shown.append(item)
    return shown


def guessed_facts(finding: Finding, notes: Tuple[str, ...]) -> List[str]:
    """The --app notes behind this detector's triage that are defaults, not read values."""
    topics = {
        "pool_exhaustion": ("database.yml", "puma", "DATABASE_URL", "WEB_CONCURRENCY", "RAILS_MAX_THREADS"),
        "sidekiq_failures": ("sidekiq",),
    }.get(finding.detector, ())
    return [n for n in notes if any(m in n for m in GUESS_MARKERS) and any(t.lower() in n.lower() for t in topics)]


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(seconds // 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def relative(finding: Finding, log_end: Optional[float]) -> str:
    """"for 6 min, ending 2 min before the end of the log"."""
    span = f"for {duration(finding.last_seen - finding.first_seen)}"
    if log_end is None:
        return span
    before = log_end - finding.last_seen
    if before < 1:
        return span + ", still going at the end of the log"
    return span + f", ending {duration(before)} before the end of the log"


def share_line(finding: Finding) -> str:
    """"12 of 18 requests in the window failed (67 %)" when the detector gave those numbers."""
    d = finding.details
    failed, total = d.get("errors"), d.get("requests_in_window")
    if isinstance(failed, int) and isinstance(total, int) and total > 0 and failed <= total:
        return f"{failed} of {total} requests in the window failed ({round(failed * 100 / total)} %)"
    fails, jobs = d.get("window_fails"), d.get("window_jobs")
    if isinstance(fails, int) and isinstance(jobs, int) and jobs > 0:
        return f"{fails} failed run(s) of {jobs} job(s) in the window (retries count again)"
    return ""


def deploy_marks(result) -> List[Tuple[float, str]]:  # type: ignore[no-untyped-def]
    marks: List[Tuple[float, str]] = []
    if result.series is not None:
        marks.extend(result.series.deploys)
    facts = result.facts
    if facts.revision_time is not None and not any(abs(ts - facts.revision_time) < 1 for ts, _ in marks):
        marks.append((facts.revision_time, facts.revision))
    return sorted(marks)


def timelines(result) -> Dict[str, Timeline]:  # type: ignore[no-untyped-def]
    """fingerprint -> timeline, for the incidents whose signal was collected."""
    if result.series is None:
        return {}
    marks = deploy_marks(result)
    out: Dict[str, Timeline] = {}
    for f in result.incidents:
        tl = timeline_for(f, result.series, marks)
        if tl is not None:
            out[f.fingerprint] = tl
    return out


def log_end(result) -> Optional[float]:  # type: ignore[no-untyped-def]
    return result.series.last_ts if result.series is not None else None
