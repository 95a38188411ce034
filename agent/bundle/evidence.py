"""A bundle's evidence files: each evidence line marked ``>`` with ±N lines of context
read from its source (plain, .gz or .bz2), or the line as recorded if the source is gone
or changed. Nothing here scrubs: the builder scrubs everything it writes.
"""
from __future__ import annotations

import bz2
import gzip
import os
from typing import IO, Any, Dict, List, Sequence, Tuple

from agent.scrub import recorded_in

MAX_LINE_CHARS = 4000  # same cap as Evidence text


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
