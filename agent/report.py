"""Render a scan result as text (terminal), JSON (the public contract) or Markdown."""
from __future__ import annotations

import json
from typing import Dict, List

from agent import __version__
from agent.events import Finding
from agent.scan import ScanResult
from agent.timeparse import to_iso

MAX_EVIDENCE_SHOWN = 5
MAX_EVIDENCE_LINES = 6  # lines of one multi-line evidence record shown in text reports


def to_json_dict(result: ScanResult) -> Dict[str, object]:
    """The JSON report. Keys named in the README are a public contract: only add."""
    return {
        "railwatch_version": __version__,
        "files": [
            {"path": f.path, "format": f.format, "lines": f.lines, "unparsed": f.unparsed, "envelope": f.envelope or None}
            for f in result.files
        ],
        "detectors": result.detectors,
        "errors": result.errors,
        "incidents": [_incident(f) for f in result.incidents],
    }


def _incident(f: Finding) -> Dict[str, object]:
    return {
        "id": f.fingerprint,
        "detector": f.detector,
        "severity": f.severity,
        "title": f.title,
        "first_seen": to_iso(f.first_seen),
        "last_seen": to_iso(f.last_seen),
        "count": f.count,
        "subject": f.subject,
        "evidence": [{"path": e.path, "line": e.line, "text": e.text} for e in f.evidence],
        "triage": {
            "summary": f.triage.summary,
            "likely_cause": f.triage.likely_cause,
            "containment": list(f.triage.containment),
            "prevention": list(f.triage.prevention),
        },
        "details": f.details,
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(to_json_dict(result), indent=2, ensure_ascii=False, default=str) + "\n"


_COLOURS = {"critical": "\x1b[1;31m", "warning": "\x1b[1;33m", "ok": "\x1b[1;32m", "dim": "\x1b[2m", "bold": "\x1b[1m"}
_RESET = "\x1b[0m"


def render_text(result: ScanResult, colour: bool = False) -> str:
    def c(style: str, text: str) -> str:
        return f"{_COLOURS[style]}{text}{_RESET}" if colour else text

    out: List[str] = []
    total = sum(f.lines for f in result.files)
    out.append(c("bold", f"railwatch {__version__} scan") + f": {len(result.files)} file(s), {total:,} lines, {result.seconds:.1f} s")
    out.append("")
    if result.files:
        width = max(len(f.path) for f in result.files)
        for f in result.files:
            fmt = f.format + (f"+{f.envelope}" if f.envelope else "")
            out.append(f"  {f.path:<{width}}  {fmt:<14} {f.lines:>11,} lines  {f.unparsed:>9,} unparsed")
        out.append("")
    crit = sum(1 for i in result.incidents if i.severity == "critical")
    warn = len(result.incidents) - crit
    if not result.incidents:
        out.append(c("ok", "No incidents found") + f" by {', '.join(result.detectors) or 'no detector'}.")
    else:
        out.append(c("bold", f"{len(result.incidents)} incident(s): {crit} critical, {warn} warning"))
    for f in result.incidents:
        out.append("")
        out.append(c(f.severity, f"[{f.severity.upper()}]") + " " + c("bold", f.title))
        subject = "  ".join(f"{k}={v}" for k, v in f.subject.items())
        out.append(f"  detector   {f.detector}   id {f.fingerprint}")
        out.append(f"  where      {subject}")
        out.append(f"  when       {to_iso(f.first_seen)} → {to_iso(f.last_seen)}  ({f.count} occurrence(s))")
        out.append(f"  summary    {f.triage.summary}")
        if f.triage.likely_cause:
            out.append(f"  cause      {f.triage.likely_cause}")
        if f.triage.containment:
            out.append("  contain now:")
            out.extend(f"    - {step}" for step in f.triage.containment)
        if f.triage.prevention:
            out.append("  prevent:")
            out.extend(f"    - {step}" for step in f.triage.prevention)
        out.append("  evidence:")
        for e in f.evidence[:MAX_EVIDENCE_SHOWN]:
            lines = e.text.splitlines() or [""]
            out.append("    " + c("dim", f"{e.path}:{e.line}") + "  " + lines[0][:200])
            for extra in lines[1:MAX_EVIDENCE_LINES]:
                out.append("        " + extra[:200])
        if len(f.evidence) > MAX_EVIDENCE_SHOWN:
            out.append(f"    … {len(f.evidence) - MAX_EVIDENCE_SHOWN} more in --format json")
    return "\n".join(out) + "\n"


def render_markdown(result: ScanResult) -> str:
    out: List[str] = [f"# railwatch scan report", "", f"railwatch {__version__}; {len(result.files)} file(s) scanned.", ""]
    out += ["| file | format | lines | unparsed |", "|---|---|---:|---:|"]
    out += [f"| `{f.path}` | {f.format} | {f.lines:,} | {f.unparsed:,} |" for f in result.files]
    out.append("")
    if result.errors:
        out += ["## Problems reading the input", ""] + [f"- {e}" for e in result.errors] + [""]
    out += [f"## Incidents ({len(result.incidents)})", ""]
    if not result.incidents:
        out.append("None found.")
    for f in result.incidents:
        out += [
            f"### {f.severity.upper()}: {f.title}",
            "",
            f"- **detector**: `{f.detector}` (id `{f.fingerprint}`)",
            "- **subject**: " + ", ".join(f"{k} `{v}`" for k, v in f.subject.items()),
            f"- **window**: {to_iso(f.first_seen)} → {to_iso(f.last_seen)}, {f.count} occurrence(s)",
            f"- **summary**: {f.triage.summary}",
        ]
        if f.triage.likely_cause:
            out.append(f"- **likely cause**: {f.triage.likely_cause}")
        if f.triage.containment:
            out += ["", "Contain now:", ""] + [f"1. {s}" for s in f.triage.containment]
        if f.triage.prevention:
            out += ["", "Prevent:", ""] + [f"- {s}" for s in f.triage.prevention]
        out += ["", "Evidence:", "", "```"]
        for e in f.evidence[:MAX_EVIDENCE_SHOWN]:
            out.append(f"{e.path}:{e.line}")
            out.extend(e.text.splitlines()[:MAX_EVIDENCE_LINES])
        out += ["```", ""]
    return "\n".join(out) + "\n"
