"""What goes into a bundle: evidence with context, the triage page, process snapshots.

Kept apart from ``agent.bundle`` (which assembles, bounds and writes the archive) so
each stays small. Nothing here scrubs: the builder scrubs everything it writes.
"""
from __future__ import annotations

import bz2
import gzip
import os
from typing import Any, Callable, Dict, IO, List, Optional, Sequence, Tuple

from agent.clock import Clock
from agent.incidents.model import Incident, IncidentUpdate
from agent.scrub import recorded_in, scrub_cmdline
from agent.timeparse import to_iso
from detectors.base import AppFacts

MAX_LINE_CHARS = 4000  # same cap as Evidence text
DB_PORTS = {5432: "postgres", 6432: "pgbouncer", 6379: "redis"}


# ---------------------------------------------------------------------- evidence with context


def _open_text(path: str) -> IO[str]:
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if magic == b"BZh":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _windows(evidence: Sequence[Dict[str, Any]], n: int) -> List[Tuple[int, int, int, str]]:
    """(start, end, evidence line, recorded text) per evidence item, 1-based inclusive."""
    out = []
    for e in evidence:
        line = int(e.get("line") or 0)
        text = str(e.get("text") or "")
        span = max(1, text.count("\n") + 1)
        if line > 0:
            out.append((max(1, line - n), line + span - 1 + n, line, text))
    return out


def _read_windows(path: str, windows: List[Tuple[int, int, int, str]], max_bytes: int) -> Tuple[Dict[int, str], str]:
    """The lines the windows need, in one pass over the file; and a note if the pass stopped early."""
    wanted_until = max(w[1] for w in windows)
    wanted = set()
    for start, end, _, _ in windows:
        wanted.update(range(start, end + 1))
    lines: Dict[int, str] = {}
    read = 0
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno in wanted:
                text = raw.rstrip("\r\n")
                lines[lineno] = text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + " …[cut]"
            read += len(raw)
            if lineno >= wanted_until:
                return lines, ""
            if read > max_bytes:
                return lines, f"stopped reading after {max_bytes} bytes"
    return lines, ""


def evidence_files(evidence: Sequence[Dict[str, Any]], context: int, max_scan_bytes: int,
                   errors: List[str]) -> List[Tuple[str, str]]:
    """One text file per evidence source: each evidence line marked ``>`` with ±context lines."""
    by_path: Dict[str, List[Dict[str, Any]]] = {}
    for e in evidence:
        by_path.setdefault(str(e.get("path") or "<unknown>"), []).append(e)
    files = []
    for index, (path, items) in enumerate(by_path.items(), 1):
        windows = sorted(_windows(items, context))
        out = [f"# source: {path}", f"# {len(items)} evidence line(s), ±{context} lines of context", ""]
        lines: Dict[int, str] = {}
        note = ""
        if windows and os.path.isfile(path):
            try:
                lines, note = _read_windows(path, windows, max_scan_bytes)
            except (OSError, EOFError, ValueError) as exc:
                note = f"cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        elif windows:
            note = "source not readable here"
        if note:
            errors.append(f"{path}: {note}; evidence shown as recorded")
        for start, end, at, text in windows:
            # the recorded text may be cut (Evidence caps it) or lack an envelope prefix: compare a probe
            probe = text.split("\n", 1)[0].replace(" …[cut]", "")[:200].strip()
            got = lines.get(at, "")
            if got and probe and not recorded_in(probe, got):  # recorded text is scrubbed, the file is not
                out.append(f"## line {at}: the file changed since (rotated or truncated?); evidence as recorded:")
                out += [f"> {at:>7} | {t}" for t in text.split("\n")]
            elif start in lines or at in lines:
                out.append(f"## lines {start}-{end}")
                span = text.count("\n") + 1
                for ln in range(start, end + 1):
                    if ln in lines:
                        mark = ">" if at <= ln < at + span else " "
                        out.append(f"{mark} {ln:>7} | {lines[ln]}")
            else:
                out.append(f"## line {at} (as recorded)")
                out += [f"> {at:>7} | {t}" for t in text.split("\n")]
            out.append("")
        for e in items:
            if not int(e.get("line") or 0):
                out += ["## (no line number)", f">         | {e.get('text', '')}", ""]
        files.append((f"evidence/{index:02d}-{_base(path)}.txt", "\n".join(out)))
    return files


def _base(path: str) -> str:
    name = os.path.basename(path) or "source"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


# ---------------------------------------------------------------------- triage.md


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
        "- **Resolution**: _what was done, by whom, when_",
        "- **What went well / what did not**: _fill in_",
        "",
        "### Action items",
        "",
    ] + [f"- [ ] {s}" for s in t.get("prevention") or []] + ["- [ ] _owner, due date_", ""]


# ---------------------------------------------------------------------- process snapshot


def _role(cmdline: str) -> Optional[str]:
    low = cmdline.lower()
    if "sidekiq" in low and "railwatch" not in low:
        return "sidekiq"
    if "puma" in low and "railwatch" not in low:
        return "puma"
    return None


def _connections(proc: Any) -> Optional[Dict[str, int]]:
    get: Callable[..., Any] = getattr(proc, "net_connections", None) or proc.connections
    counts = {name: 0 for name in DB_PORTS.values()}
    for c in get(kind="tcp"):
        port = c.raddr.port if c.raddr else None
        if port in DB_PORTS and c.status == "ESTABLISHED":
            counts[DB_PORTS[port]] += 1
    return counts


def snapshot_processes(clock: Optional[Clock] = None, sample_seconds: float = 0.25) -> Dict[str, Any]:
    """Puma and Sidekiq processes (matched by command line) and host load/memory, via psutil."""
    import psutil

    clock = clock or Clock()
    errors: List[str] = []
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        cmd = " ".join(scrub_cmdline(p.info.get("cmdline") or [])) or (p.info.get("name") or "")
        role = _role(cmd)
        if role:
            try:
                p.cpu_percent(None)  # prime: the next call measures over the sample interval
            except psutil.Error:
                continue
            found.append((p, role, cmd))
    if found:
        clock.sleep(sample_seconds)
    processes = []
    for p, role, cmd in found:
        entry: Dict[str, Any] = {"pid": p.pid, "role": role, "cmdline": cmd[:500]}
        try:
            with p.oneshot():
                entry.update(threads=p.num_threads(), rss_bytes=p.memory_info().rss, cpu_percent=p.cpu_percent(None),
                             ppid=p.ppid(), create_time=to_iso(p.create_time()))
        except psutil.Error as exc:
            errors.append(f"pid {p.pid}: {type(exc).__name__}")
            continue
        try:
            entry["db_connections"] = _connections(p)
        except (psutil.Error, OSError) as exc:
            entry["db_connections"] = None
            errors.append(f"pid {p.pid}: connections unreadable ({type(exc).__name__}; run as the app's user or root)")
        processes.append(entry)
    vm = psutil.virtual_memory()
    host: Dict[str, Any] = {
        "cpus": psutil.cpu_count(),
        "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
        "swap": {"total": psutil.swap_memory().total, "used": psutil.swap_memory().used},
    }
    try:
        host["load_average"] = list(os.getloadavg())
    except (OSError, AttributeError):
        host["load_average"] = None
    return {"processes": processes, "host": host, "errors": errors}
