"""Timeline charts as inline SVG, and a terminal sparkline, written by hand.

No plotting stack: a server agent should not pull in numpy/matplotlib (tens of MB,
native wheels per platform, API churn) to draw a few polylines. SVG is text, renders
in every browser and file viewer, and needs no script or font download.
"""
from __future__ import annotations

from html import escape
from typing import List, Sequence

from agent.timeline import Timeline
from agent.timeparse import to_iso

MAX_DRAWN = 300  # points per polyline; more are averaged down for drawing only
COLOURS = ("#d62728", "#1f77b4", "#7f7f7f", "#2ca02c")
SPARKS = "▁▂▃▄▅▆▇█"

W, H = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 34


def downsample(values: Sequence[float], limit: int = MAX_DRAWN) -> List[float]:
    """Average neighbouring values so at most ``limit`` remain (the shape survives)."""
    if len(values) <= limit:
        return list(values)
    step = len(values) / limit
    out = []
    for i in range(limit):
        chunk = values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)]
        out.append(sum(chunk) / len(chunk))
    return out


def sparkline(values: Sequence[float], width: int = 40) -> str:
    values = downsample(values, width)
    top = max(values) if values else 0
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))] for v in values)


def timeline_svg(tl: Timeline, standalone: bool = False) -> str:
    """One chart: every line of the timeline, the incident window shaded, deploys marked."""
    n = tl.points
    end = tl.start + n * tl.bucket_s
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    top = max([max(line.values) for line in tl.lines if line.values] + [1.0])

    def x(ts: float) -> float:
        return LEFT + (ts - tl.start) / max(end - tl.start, 1e-9) * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - value / top * plot_h

    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    out = [f'<svg{ns} class="timeline" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'data-points="{n}" data-bucket-s="{tl.bucket_s}" data-deploys="{len(tl.deploys)}" '
           f'aria-label="{escape(tl.title)}">']
    out.append(f'<text x="{LEFT}" y="16" font-family="sans-serif" font-size="13" font-weight="bold">{escape(tl.title)}</text>')
    # the incident window
    x0, x1 = x(tl.window[0]), x(tl.window[1] + tl.bucket_s)
    out.append(f'<rect class="window" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 2):.1f}" height="{plot_h}" fill="#fde0dc"/>')
    # axes and labels
    out.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#444"/>')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#444"/>')
    out.append(_text(LEFT - 4, TOP + 4, _num(top), "end"))
    out.append(_text(LEFT - 4, TOP + plot_h, "0", "end"))
    out.append(_text(LEFT, H - 18, to_iso(tl.start), "start"))
    out.append(_text(W - RIGHT, H - 18, to_iso(end), "end"))
    for i, line in enumerate(tl.lines):
        drawn = downsample(line.values)
        step = plot_w / max(len(drawn) - 1, 1)
        pts = " ".join(f"{LEFT + j * step:.1f},{y(v):.1f}" for j, v in enumerate(drawn))
        colour = COLOURS[i % len(COLOURS)]
        width = 2 if i == 0 else 1.2
        out.append(f'<polyline class="series" data-label="{escape(line.label)}" data-points="{len(line.values)}" '
                   f'fill="none" stroke="{colour}" stroke-width="{width}" points="{pts}"/>')
        out.append(f'<rect x="{LEFT + 8 + i * 170}" y="{H - 10}" width="10" height="3" fill="{colour}"/>')
        out.append(_text(LEFT + 22 + i * 170, H - 6, line.label, "start"))
    for ts, revision in tl.deploys:
        label = f"deploy {revision[:7]}".strip()
        if ts < tl.start or ts > end:  # outside the log: say so at the edge it lies beyond
            edge = LEFT if ts < tl.start else W - RIGHT
            where = "before" if ts < tl.start else "after"
            out.append(f'<line class="deploy outside" x1="{edge}" y1="{TOP}" x2="{edge}" y2="{TOP + plot_h}" '
                       f'stroke="#6a3d9a" stroke-dasharray="2,4"/>')
            out.append(_text(edge + (4 if where == "before" else -4), TOP + 12,
                             f"{label} at {to_iso(ts)} ({where} this log)", "start" if where == "before" else "end", "#6a3d9a"))
            continue
        xd = x(ts)
        out.append(f'<line class="deploy" x1="{xd:.1f}" y1="{TOP - 4}" x2="{xd:.1f}" y2="{TOP + plot_h}" '
                   f'stroke="#6a3d9a" stroke-width="1.5" stroke-dasharray="5,3"/>')
        out.append(_text(xd + 3, TOP + 8, label, "start", "#6a3d9a"))
    out.append("</svg>")
    return "\n".join(out)


def _text(x: float, y: float, text: str, anchor: str, fill: str = "#333") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-family="sans-serif" font-size="11" fill="{fill}" '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"
