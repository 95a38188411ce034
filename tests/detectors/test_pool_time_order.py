"""pool_exhaustion's time-order rule (module docstring "Time order"): a pool-timeout
record stamped far earlier than its open episode is dropped and counted, never drags the
episode start back, and no episode spans more than ``max_episode_s``.

Real lines: the e2e fixture's production.log with one FATAL block re-stamped a year (or
decades) early, inserted among the real pool timeouts, as a skewed host clock writes it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

import pytest

from agent.events import Error, Event
from agent.scan import scan
from agent.sources.replay import iter_events
from detectors.base import DetectorContext
from detectors.pool_exhaustion import PoolExhaustionDetector, PoolExhaustionSettings

E2E_PRODUCTION = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e" / "info" / "production.log"
SKEWED_RID = "deadbeef-0000-4000-8000-000000000001"


def skewed_log(tmp_path: Path, year: str) -> Path:
    """production.log with a pool-timeout FATAL block stamped ``year`` after the 4th real one."""
    lines = E2E_PRODUCTION.read_text().split("\n")
    fourth = [n for n, line in enumerate(lines) if "ConnectionTimeoutError" in line][3]
    timeout = lines[fourth].split("] ", 1)[1]  # the real error text, without its request id
    block = [
        f"F, [{year}-11-26T23:39:41.888212 #18574] FATAL -- : [{SKEWED_RID}]   ",
        f"[{SKEWED_RID}] {timeout}",
        f"[{SKEWED_RID}]   ",
    ]
    path = tmp_path / "production.log"
    path.write_text("\n".join(lines[: fourth + 3] + block + lines[fourth + 3 :]))
    return path


def pool_incident(path: Path):  # type: ignore[no-untyped-def]
    incidents = [i for i in scan([str(path)], detectors=["pool_exhaustion"]).incidents if i.severity == "critical"]
    assert len(incidents) == 1
    return incidents[0]


@pytest.mark.parametrize("year", ["2025", "1970"])
def test_an_error_stamped_years_early_does_not_stretch_the_episode(tmp_path: Path, year: str) -> None:
    clean = pool_incident(E2E_PRODUCTION)
    skewed = pool_incident(skewed_log(tmp_path, year))
    assert skewed.first_seen == clean.first_seen  # not dragged back to the skewed stamp
    assert skewed.last_seen == clean.last_seen
    assert skewed.count == clean.count  # the late error is not counted in the incident
    assert skewed.details["requests_in_window"] == clean.details["requests_in_window"]


def feed_all(detector: PoolExhaustionDetector, events: List[Event]) -> None:
    for e in events:
        detector.feed(e)


def test_late_errors_are_counted_and_episodes_never_span_more_than_max(tmp_path: Path) -> None:
    events = list(iter_events(str(skewed_log(tmp_path, "2025"))))
    detector = PoolExhaustionDetector(PoolExhaustionSettings(), DetectorContext())
    feed_all(detector, events)
    assert detector.late_dropped == 1
    findings = detector.flush(None)
    assert findings and all(f.last_seen - f.first_seen <= detector.s.max_episode_s for f in findings)


def test_errors_walking_back_in_small_steps_cannot_stretch_an_episode_past_max() -> None:
    # each error is within episode_gap_s of the episode start, so each may join; together
    # they would stretch the episode back for hours: the span cap stops them
    template = next(e for e in iter_events(str(E2E_PRODUCTION)) if isinstance(e, Error) and "pool" in e.message)
    settings = PoolExhaustionSettings(max_episode_s=3600.0)
    detector = PoolExhaustionDetector(settings, DetectorContext())
    t0 = template.ts or 0.0
    walk = [dataclasses.replace(template, ts=t0 - step * (settings.episode_gap_s - 1), request_id=f"walk-{step}") for step in range(100)]
    feed_all(detector, walk)
    findings = detector.flush(None)
    assert findings and all(f.last_seen - f.first_seen <= settings.max_episode_s for f in findings)
    assert detector.late_dropped == 100 - 1 - int(settings.max_episode_s // (settings.episode_gap_s - 1))


def test_a_long_outage_is_reported_as_successive_findings() -> None:
    template = next(e for e in iter_events(str(E2E_PRODUCTION)) if isinstance(e, Error) and "pool" in e.message)
    settings = PoolExhaustionSettings(max_episode_s=3600.0)
    detector = PoolExhaustionDetector(settings, DetectorContext())
    t0 = template.ts or 0.0
    feed_all(detector, [dataclasses.replace(template, ts=t0 + 60.0 * i, request_id=f"outage-{i}") for i in range(3 * 60)])  # 3 h, one a minute
    findings = detector.flush(None)
    assert len(findings) >= 3
    assert sum(f.count for f in findings) == 3 * 60  # split, nothing lost
    assert all(f.last_seen - f.first_seen <= settings.max_episode_s for f in findings)
    assert detector.late_dropped == 0
