"""A production.log written by Puma and Sidekiq processes alike is read line by line by both parsers."""
from __future__ import annotations

from pathlib import Path

from agent.events import Job, Request
from agent.parsers.choose import SNIFF_LINES, choose_format
from agent.parsers.rails import LogrageParser, RailsParser
from agent.parsers.sidekiq import SidekiqParser
from agent.sources.replay import FileReport, iter_file_events

SHARED = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "accuracy" / "shared_log_storm_and_n_plus_one" / "production.log"
PLAIN_RAILS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e" / "info" / "production.log"
LOGRAGE = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e" / "lograge" / "production.log"


def _head(path: Path):  # type: ignore[no-untyped-def]
    return [l for l in path.read_text().splitlines()[:SNIFF_LINES] if l.strip()]


def test_a_shared_log_is_read_by_both_parsers() -> None:
    parser, envelope = choose_format(_head(SHARED), None)
    assert envelope is None and parser is not None and parser.name == "rails+sidekiq"
    report = FileReport(str(SHARED))
    events = list(iter_file_events(str(SHARED), report))
    jobs = [e for e in events if isinstance(e, Job)]
    requests = [e for e in events if isinstance(e, Request)]
    text = SHARED.read_text()
    # every Sidekiq `fail` line and every Rails `Completed` line became an event
    assert sum(1 for j in jobs if j.state == "fail") == text.count(" INFO: fail")
    assert len([r for r in requests if r.status is not None]) == text.count("] Completed ")
    assert report.unparsed == 0


def test_single_format_logs_stay_single() -> None:
    assert choose_format(_head(PLAIN_RAILS), None)[0] is RailsParser
    # lograge is Rails with one-line requests: its stray Rails lines are its own, not a second format
    assert choose_format(_head(LOGRAGE), None)[0] is LogrageParser


def test_a_few_stray_lines_do_not_make_a_file_mixed() -> None:
    rails = _head(PLAIN_RAILS)
    sidekiq = [l for l in SHARED.read_text().splitlines() if SidekiqParser.sniff([l]) >= 1.0][:2]
    parser, _ = choose_format(rails[:40] + sidekiq, None)
    assert parser is RailsParser
