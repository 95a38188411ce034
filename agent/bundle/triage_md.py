"""A bundle's ``triage.md``: summary, timeline, evidence, likely cause, containment,
prevention, and a post-incident review pre-filled with what is known.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from agent.incidents.model import Incident, IncidentUpdate
from agent.timeparse import to_iso
from detectors.base import AppFacts


def render_triage(inc: Incident, updates: Sequence[IncidentUpdate], facts: AppFacts) -> str:
    f = inc.finding
    t = f.get("triage") or {}
    evidence = list(f.get("evidence", []))
    subject = ", ".join(f"{k} `{v}`" for k, v in inc.subject.items())
    out = [
        f"# [{inc.severity.upper()}] {inc.title}",
        "",
        f"Incident `{inc.id}` · detector `{inc.detector}` · host `{inc.host}` · status **{inc.status}**",
        f"Subject: {subject or '-'}",
        "",
        "## Summary",
        "",
        t.get("summary") or "-",
        "",
        "## Timeline (UTC)",
        "",
        f"- {to_iso(inc.first_seen)}: first occurrence in the logs",
    ]
    if facts.revision and facts.revision_time:
        out.append(f"- {to_iso(facts.revision_time)}: deploy of revision `{facts.revision}`")
    for u in updates:
        out.append(f"- {to_iso(u.at)}: {u.kind} ({u.incident.severity})")
    if not updates:
        out.append(f"- {to_iso(inc.opened_at)}: incident opened by railwatch")
    out.append(f"- {to_iso(inc.last_seen)}: last occurrence seen ({inc.count} in all)")
    if inc.resolved_at:
        out.append(f"- {to_iso(inc.resolved_at)}: resolved ({inc.resolved_reason or 'quiet'})")
    if inc.recurrence > 1:
        out.append(f"- recurrence #{inc.recurrence}; previous incident `{inc.previous_id}`")
    out += ["", "## Evidence", "", "Full context in `evidence/`.", "", "```"]
    for e in evidence[:10]:
        out.append(f"{e.get('path')}:{e.get('line')}")
        out += [str(x)[:300] for x in str(e.get("text", "")).splitlines()[:6]]
    out += ["```", "", "## Likely cause", "", t.get("likely_cause") or "Not determined by the detector.", ""]
    out += ["## Containment (now)", ""] + [f"{i}. {s}" for i, s in enumerate(t.get("containment") or [], 1)] + [""]
    out += ["## Prevention", ""] + [f"- {s}" for s in t.get("prevention") or []] + [""]
    out += ["## Deploy", "", f"Revision: `{facts.revision or 'unknown'}`" + (
        f", deployed {to_iso(facts.revision_time)}" if facts.revision_time else ""), ""]
    out += _review_template(inc, t, facts)
    return "\n".join(out) + "\n"


def _review_template(inc: Incident, t: Dict[str, Any], facts: AppFacts) -> List[str]:
    end = inc.resolved_at or inc.last_seen
    minutes = max(0.0, (end - inc.first_seen) / 60.0)
    deploy = "none known"
    if facts.revision_time and facts.revision_time <= inc.first_seen:
        deploy = f"revision `{facts.revision}` deployed {(inc.first_seen - facts.revision_time) / 60:.0f} min before the first occurrence"
    return [
        "---",
        "",
        "## Post-incident review (pre-filled; edit before sharing)",
        "",
        f"- **Title**: {inc.title}",
        f"- **Incident**: `{inc.id}` (fingerprint `{inc.fingerprint}`)",
        f"- **Duration**: {to_iso(inc.first_seen)} → {to_iso(end)} (~{minutes:.0f} min)",
        f"- **Severity**: {inc.severity}",
        f"- **Impact**: {inc.count} occurrence(s) of the problem; _add users/requests/jobs affected_",
        f"- **Detection**: railwatch `{inc.detector}` opened the incident at {to_iso(inc.opened_at)}",
        f"- **Trigger**: {deploy}",
        f"- **Root cause**: {t.get('likely_cause') or '_to determine_'} _(confirm)_",
        f"- **Resolution**: {_resolution(inc)}",
        f"- **Fix verification**: {_verification(inc)}",
        "- **What went well / what did not**: _fill in_",
        "",
        "### Action items",
        "",
    ] + [f"- [ ] {s}" for s in t.get("prevention") or []] + ["- [ ] _owner, due date_", ""]


def _resolution(inc: Incident) -> str:
    v = inc.verification or {}
    if v.get("status") == "fixed":
        return f"fixed in `{v.get('revision') or '?'}` (verified by railwatch); _what was changed, by whom_"
    return "_what was done, by whom, when_"


def _verification(inc: Incident) -> str:
    """The state of the fix verification after a deploy (agent.incidents.verify), in one line."""
    v = inc.verification or {}
    if not v:
        return "_no deploy verified yet: railwatch checks the next deploy (`railwatch deploy --revision R`)_"
    text = str(v.get("summary") or f"{v.get('status')} on {v.get('revision')}")
    since = v.get("since")
    return text + (f" (traffic since the deploy marker at {to_iso(float(since))})" if since else "")
