"""Pick, for one incident, the series that shows the signal its detector decided on.

Matching is by subject: ``error_class`` (pool exhaustion: errors per bucket and the
requests they hit), ``endpoint`` (N+1: queries, else DB ms, per request on that
endpoint) and ``job_class`` (Sidekiq: failures and successes of that class).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from agent.events import Finding
from agent.series import (
    ALL, JOB_DONE, JOB_FAIL, REQ_5XX, REQ_COUNT, REQ_DB_MS, REQ_DB_N, REQ_QUERIES, REQ_QUERIES_N, SeriesCollector,
)


@dataclass
class Line:
    label: str
    values: List[float]


@dataclass
class Timeline:
    title: str
    start: float  # epoch seconds of the first bucket
    bucket_s: int
    lines: List[Line]  # the first one is the deciding signal
    window: Tuple[float, float]  # the incident's first and last occurrence
    deploys: List[Tuple[float, str]] = field(default_factory=list)

    @property
    def points(self) -> int:
        return len(self.lines[0].values) if self.lines else 0

    @property
    def signal(self) -> List[float]:
        return self.lines[0].values if self.lines else []

    def to_dict(self) -> Dict[str, object]:
        return {
            "title": self.title,
            "start": self.start,
            "bucket_s": self.bucket_s,
            "points": self.points,
            "series": {line.label: line.values for line in self.lines},
            "deploys": [{"ts": ts, "revision": rev} for ts, rev in self.deploys],
        }


def timeline_for(finding: Finding, series: SeriesCollector, deploys: List[Tuple[float, str]]) -> Optional[Timeline]:
    start, n = series.axis()
    if n == 0:
        return None
    subject = finding.subject
    lines: List[Line] = []
    unit = _unit(series.width)
    title = ""
    job_class = subject.get("job_class")
    endpoint = subject.get("endpoint")
    error_class = subject.get("error_class")
    if job_class and job_class in series.jobs:
        title = f"{job_class}: failures and successes per {unit}"
        lines = [Line("failures", series.column(series.jobs, job_class, JOB_FAIL) or []),
                 Line("successes", series.column(series.jobs, job_class, JOB_DONE) or [])]
    elif endpoint and endpoint in series.requests:
        by_queries = series.column(series.requests, endpoint, REQ_QUERIES_N) or []
        if any(by_queries):
            title = f"{endpoint}: queries per request"
            first = Line("queries per request", series.column(series.requests, endpoint, REQ_QUERIES, REQ_QUERIES_N) or [])
        else:
            title = f"{endpoint}: DB ms per request"
            first = Line("DB ms per request", series.column(series.requests, endpoint, REQ_DB_MS, REQ_DB_N) or [])
        lines = [first, Line(f"requests per {unit}", series.column(series.requests, endpoint, REQ_COUNT) or [])]
    elif error_class and error_class in series.errors:
        title = f"{error_class} per {unit}, and all requests"
        lines = [Line(f"errors per {unit}", series.column(series.errors, error_class, 0) or [])]
        if ALL in series.requests:
            lines.append(Line(f"requests per {unit}", series.column(series.requests, ALL, REQ_COUNT) or []))
            lines.append(Line(f"5xx per {unit}", series.column(series.requests, ALL, REQ_5XX) or []))
    if not lines:
        return None
    return Timeline(title=title, start=start, bucket_s=series.width, lines=lines,
                    window=(finding.first_seen, finding.last_seen), deploys=list(deploys))


def _unit(width: int) -> str:
    if width % 3600 == 0:
        return "hour" if width == 3600 else f"{width // 3600} h"
    if width % 60 == 0:
        return "minute" if width == 60 else f"{width // 60} min"
    return "second" if width == 1 else f"{width} s"
