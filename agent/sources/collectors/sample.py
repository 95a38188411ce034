"""One collector sample as a ``Metric`` event, with a Prometheus-style ``raw`` text for evidence."""
from __future__ import annotations

from typing import Dict, Optional

from agent.events import Metric


def metric(source: str, name: str, value: float, ts: float, labels: Optional[Dict[str, str]] = None) -> Metric:
    labels = labels or {}
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    raw = f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}"
    return Metric(ts=ts, source=source, line=0, raw=raw, name=name, labels=labels, value=float(value))
