"""Render a scan result as text (terminal), JSON (the public contract) or Markdown."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

from agent import __version__
from agent.charts import sparkline
from agent.events import Finding
from agent.report_view import (
    ShownEvidence, guessed_facts, log_end, ordered_evidence, relative, role_of, share_line, timelines,
)
from agent.scan import ScanResult
from agent.timeline import Timeline
from agent.timeparse import to_iso

MAX_EVIDENCE_SHOWN = 5
MAX_EVIDENCE_LINES = 6  # lines of one multi-line evidence record shown in text reports


def to_json_dict(result: ScanResult) -> Dict[str, object]:
    """The JSON report. Keys named in the README are a public contract: only add."""
    tls = timelines(result)
    return {
        "railwatch_version": __version__,
        "files": [
            {"path": f.path, "format": f.format, "lines": f.lines, "unparsed": f.unparsed, "envelope": f.envelope or None}
            for f in result.files
        ],
        "detectors": result.detectors,
        "errors": result.errors,
        "log_end": to_iso(log_end(result)),
        "incidents": [_incident(f, result, tls.get(f.fingerprint)) for f in result.incidents],
    }


def _incident(f: Finding, result: ScanResult, tl: Optional[Timeline]) -> Dict[str, object]:
    details = dict(f.details)
    guessed = guessed_facts(f, result.facts.notes)
    if guessed:
        details["guessed"] = guessed
    return {
        "id": f.fingerprint,
        "detector": f.detector,
        "severity": f.severity,
        "title": f.title,
        "first_seen": to_iso(f.first_seen),
        "last_seen": to_iso(f.last_seen),
        "count": f.count,
        "subject": f.subject,
        "evidence": [
            {"path": e.path, "line": e.line, "text": e.text, "ts": to_iso(e.ts) if e.ts is not None else None,
             "role": role_of(f, e)} for e in f.evidence
        ],
        "triage": {
            "summary": f.triage.summary,
            "likely_cause": f.triage.likely_cause,
            "containment": list(f.triage.containment),
            "prevention": list(f.triage.prevention),
        },
        "details": details,
        "when": relative(f, log_end(result)),
        "timeline": tl.to_dict() if tl is not None else None,
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(to_json_dict(result), indent=2, ensure_ascii=False, default=str) + "\n"


_COLOURS = {"critical": "\x1b[1;31m", "warning": "\x1b[1;33m", "ok": "\x1b[1;32m", "dim": "\x1b[2m", "bold": "\x1b[1m"}
_RESET = "\x1b[0m"


def summary_line(f: Finding, result: ScanResult) -> str:
    """One line per incident: severity, detector, subject, count, and when relative to the log's end."""
    subject = " ".join(f"{k}={v}" for k, v in f.subject.items())
    return f"{f.severity.upper():<8} {f.detector:<17} {subject}  ×{f.count}  {relative(f, log_end(result))}"


def _evidence_lines(item: ShownEvidence, max_lines: int) -> List[str]:
    return (item.evidence.text.splitlines() or [""])[:max_lines]


def render_text(result: ScanResult, colour: bool = False) -> str:
    def c(style: str, text: str) -> str:
        return f"{_COLOURS[style]}{text}{_RESET}" if colour else text

    tls = timelines(result) if colour else {}
    out: List[str] = []
    total = sum(f.lines for f in result.files)
    out.append(c("bold", f"railwatch {__version__} scan") + f": {len(result.files)} file(s), {total:,} lines, {result.seconds:.1f} s")
    crit = sum(1 for i in result.incidents if i.severity == "critical")
    warn = len(result.incidents) - crit
    if not result.incidents:
        out.append(c("ok", "No incidents found") + f" by {', '.join(result.detectors) or 'no detector'}.")
    else:
        out.append(c("bold", f"{len(result.incidents)} incident(s): {crit} critical, {warn} warning"))
        for f in result.incidents:
            line = summary_line(f, result)
            out.append("  " + c(f.severity, line[:8]) + line[8:])
    out.append("")
    if result.files:
        width = max(len(f.path) for f in result.files)
        for f in result.files:
            fmt = f.format + (f"+{f.envelope}" if f.envelope else "")
            out.append(f"  {f.path:<{width}}  {fmt:<14} {f.lines:>11,} lines  {f.unparsed:>9,} unparsed")
    for f in result.incidents:
        out.append("")
        out.append(c(f.severity, f"[{f.severity.upper()}]") + " " + c("bold", f.title))
        subject = "  ".join(f"{k}={v}" for k, v in f.subject.items())
        out.append(f"  detector   {f.detector}   id {f.fingerprint}")
        out.append(f"  where      {subject}")
        out.append(f"  when       {relative(f, log_end(result))}: {to_iso(f.first_seen)} → {to_iso(f.last_seen)}  ({f.count} occurrence(s))")
        tl = tls.get(f.fingerprint)
        if tl is not None:
            out.append(f"  signal     {sparkline(tl.signal)}  {tl.lines[0].label}")
        share = share_line(f)
        if share:
            out.append(f"  share      {share}")
        out.append(f"  summary    {f.triage.summary}")
        if f.triage.likely_cause:
            out.append(f"  cause      {f.triage.likely_cause}")
        for guess in guessed_facts(f, result.facts.notes):
            out.append("  " + c("warning", "guessed") + f"    {guess}: figures from it above are assumptions")
        if f.triage.containment:
            out.append("  contain now:")
            out.extend(f"    - {step}" for step in f.triage.containment)
        if f.triage.prevention:
            out.append("  prevent:")
            out.extend(f"    - {step}" for step in f.triage.prevention)
        out.append("  evidence (in time order):")
        shown = ordered_evidence(f)
        for item in shown[:MAX_EVIDENCE_SHOWN]:
            lines = _evidence_lines(item, MAX_EVIDENCE_LINES)
            e = item.evidence
            out.append(f"    {c('bold', item.role)}  " + c("dim", f"{e.path}:{e.line}"))
            out.extend("        " + extra[:200] for extra in lines)
            if item.more_like_this:
                out.append(f"        × {item.more_like_this} more like this")
        if len(shown) > MAX_EVIDENCE_SHOWN:
            out.append(f"    … {len(shown) - MAX_EVIDENCE_SHOWN} more in --format json")
    return "\n".join(out) + "\n"


def render_markdown(result: ScanResult) -> str:
    out: List[str] = ["# railwatch scan report", "", f"railwatch {__version__}; {len(result.files)} file(s) scanned.", ""]
    out += [f"## Incidents ({len(result.incidents)})", ""]
    if not result.incidents:
        out.append("None found.")
    else:
        out += ["| severity | detector | subject | count | when |", "|---|---|---|---:|---|"]
        for f in result.incidents:
            subject = ", ".join(f"{k} `{v}`" for k, v in f.subject.items())
            out.append(f"| {f.severity} | `{f.detector}` | {subject} | {f.count} | {relative(f, log_end(result))} |")
    out.append("")
    out += ["| file | format | lines | unparsed |", "|---|---|---:|---:|"]
    out += [f"| `{f.path}` | {f.format} | {f.lines:,} | {f.unparsed:,} |" for f in result.files]
    out.append("")
    if result.errors:
        out += ["## Problems reading the input", ""] + [f"- {e}" for e in result.errors] + [""]
    for f in result.incidents:
        out += [
            f"### {f.severity.upper()}: {f.title}",
            "",
            f"- **detector**: `{f.detector}` (id `{f.fingerprint}`)",
            "- **subject**: " + ", ".join(f"{k} `{v}`" for k, v in f.subject.items()),
            f"- **window**: {relative(f, log_end(result))}: {to_iso(f.first_seen)} → {to_iso(f.last_seen)}, {f.count} occurrence(s)",
        ]
        share = share_line(f)
        if share:
            out.append(f"- **share**: {share}")
        out.append(f"- **summary**: {f.triage.summary}")
        if f.triage.likely_cause:
            out.append(f"- **likely cause**: {f.triage.likely_cause}")
        for guess in guessed_facts(f, result.facts.notes):
            out.append(f"- **guessed**: {guess} (figures from it are assumptions)")
        if f.triage.containment:
            out += ["", "Contain now:", ""] + [f"1. {s}" for s in f.triage.containment]
        if f.triage.prevention:
            out += ["", "Prevent:", ""] + [f"- {s}" for s in f.triage.prevention]
        out += ["", "Evidence, in time order:", ""]
        shown = ordered_evidence(f)
        for item in shown[:MAX_EVIDENCE_SHOWN]:
            e = item.evidence
            more = f" (× {item.more_like_this} more like this)" if item.more_like_this else ""
            out += [f"- **{item.role}** `{e.path}:{e.line}`{more}", "", "  ```"]
            out += ["  " + line for line in _evidence_lines(item, MAX_EVIDENCE_LINES)]
            out += ["  ```"]
        if len(shown) > MAX_EVIDENCE_SHOWN:
            out.append(f"- … {len(shown) - MAX_EVIDENCE_SHOWN} more in `--format json`")
        out.append("")
    return "\n".join(out) + "\n"
