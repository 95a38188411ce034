"""The HTML report: one self-contained file (inline CSS and SVG, no script, no fetch)."""
from __future__ import annotations

from html import escape
from typing import List

from agent import __version__
from agent.charts import timeline_svg
from agent.report_view import guessed_facts, log_end, ordered_evidence, relative, share_line, timelines
from agent.scan import ScanResult
from agent.timeparse import to_iso

MAX_EVIDENCE_SHOWN = 12
MAX_EVIDENCE_LINES = 12

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right}
.sev{font-weight:bold;text-transform:uppercase}.critical{color:#b00020}.warning{color:#a66a00}
section.incident{margin-top:2.5em}dl{display:grid;grid-template-columns:9em 1fr;gap:.2em .8em}dt{font-weight:bold}dd{margin:0}
.guessed{background:#fff4ce;padding:0 .3em}pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:.85em;margin:.2em 0}
.role{font-weight:bold}.where{color:#666;font-family:monospace}.more{color:#666}
"""


def render_html(result: ScanResult) -> str:
    tls = timelines(result)
    end = log_end(result)
    out: List[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>railwatch scan report</title><style>{_CSS}</style></head><body>",
        f"<h1>railwatch scan report</h1><p>railwatch {escape(__version__)}; {len(result.files)} file(s); "
        f"log ends {escape(to_iso(end) or 'unknown')}.</p>",
        f'<h2 id="incidents">Incidents ({len(result.incidents)})</h2>',
    ]
    if not result.incidents:
        out.append("<p>None found.</p>")
    else:
        out.append('<table id="summary"><thead><tr><th>severity</th><th>detector</th><th>subject</th>'
                   '<th>first seen</th><th>last seen</th><th class="num">count</th><th>when</th></tr></thead><tbody>')
        for f in result.incidents:
            subject = "<br>".join(f"{escape(k)}: <code>{escape(v)}</code>" for k, v in f.subject.items())
            out.append(
                f'<tr><td class="sev {f.severity}">{f.severity}</td><td><a href="#i-{f.fingerprint}">{escape(f.detector)}</a></td>'
                f"<td>{subject}</td><td>{_short(f.first_seen)}</td><td>{_short(f.last_seen)}</td>"
                f'<td class="num">{f.count}</td><td>{escape(relative(f, end))}</td></tr>'
            )
        out.append("</tbody></table>")
    out.append('<h2 id="files">Files</h2><table><thead><tr><th>file</th><th>format</th>'
               '<th class="num">lines</th><th class="num">unparsed</th></tr></thead><tbody>')
    for fr in result.files:
        fmt = fr.format + (f"+{fr.envelope}" if fr.envelope else "")
        out.append(f'<tr><td><code>{escape(fr.path)}</code></td><td>{escape(fmt)}</td>'
                   f'<td class="num">{fr.lines:,}</td><td class="num">{fr.unparsed:,}</td></tr>')
    out.append("</tbody></table>")
    if result.errors:
        out.append("<h2>Problems reading the input</h2><ul>" + "".join(f"<li>{escape(e)}</li>" for e in result.errors) + "</ul>")
    for f in result.incidents:
        out.append(f'<section class="incident" id="i-{f.fingerprint}" data-detector="{escape(f.detector)}">')
        out.append(f'<h2><span class="sev {f.severity}">{f.severity}</span>: {escape(f.title)}</h2>')
        tl = tls.get(f.fingerprint)
        if tl is not None:
            out.append(timeline_svg(tl))
        out.append("<dl>")
        out.append(f"<dt>detector</dt><dd><code>{escape(f.detector)}</code> (id <code>{f.fingerprint}</code>)</dd>")
        out.append(f"<dt>when</dt><dd>{escape(relative(f, end))}: {to_iso(f.first_seen)} → {to_iso(f.last_seen)}, "
                   f"{f.count} occurrence(s)</dd>")
        share = share_line(f)
        if share:
            out.append(f"<dt>share</dt><dd>{escape(share)}</dd>")
        out.append(f"<dt>summary</dt><dd>{escape(f.triage.summary)}</dd>")
        if f.triage.likely_cause:
            out.append(f"<dt>likely cause</dt><dd>{escape(f.triage.likely_cause)}</dd>")
        for guess in guessed_facts(f, result.facts.notes):
            out.append(f'<dt>guessed</dt><dd class="guessed">{escape(guess)}: figures from it are assumptions</dd>')
        out.append("</dl>")
        if f.triage.containment:
            out.append("<h3>Contain now</h3><ol>" + "".join(f"<li>{escape(s)}</li>" for s in f.triage.containment) + "</ol>")
        if f.triage.prevention:
            out.append("<h3>Prevent</h3><ul>" + "".join(f"<li>{escape(s)}</li>" for s in f.triage.prevention) + "</ul>")
        out.append("<h3>Evidence, in time order</h3>")
        shown = ordered_evidence(f)
        for item in shown[:MAX_EVIDENCE_SHOWN]:
            e = item.evidence
            more = f' <span class="more">× {item.more_like_this} more like this</span>' if item.more_like_this else ""
            text = "\n".join(e.text.splitlines()[:MAX_EVIDENCE_LINES])
            out.append(f'<div class="evidence"><span class="role">{escape(item.role)}</span> '
                       f'<span class="where">{escape(e.path)}:{e.line}</span>{more}<pre>{escape(text)}</pre></div>')
        if len(shown) > MAX_EVIDENCE_SHOWN:
            out.append(f"<p>… {len(shown) - MAX_EVIDENCE_SHOWN} more in <code>--format json</code></p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _short(ts: float) -> str:
    """Date on one line, time on the next: keeps the summary table narrow."""
    iso = to_iso(ts) or ""
    return f'<span title="{iso}">{iso[:10]}<br>{iso[11:]}</span>'
