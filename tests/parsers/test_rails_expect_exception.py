"""Rails' exception report opens with a blank FATAL line; the parser remembers, per request,
that an exception header may follow. That memory is bounded (64 requests): overflowing it
used to forget the request that had just logged its blank line, and so lose its exception
(found by comparing a split scan with a one-process scan, issue 18)."""
from __future__ import annotations

from typing import List

from agent.events import Error, Event
from agent.parsers.rails import RailsParser


def report(rid: str, n: int) -> List[str]:
    stamp = f"2024-05-01T00:05:{n % 60:02d}.523016"
    return [
        f"F, [{stamp} #10805] FATAL -- : [{rid}]   ",
        f"[{rid}] ActionView::Template::Error (PG::UndefinedColumn: ERROR:  column series_rounds.name does not exist",
        'LINE 1: ...LECT "series_rounds".* FROM "series_rounds" WHERE "series_ro...',
        "):",
        f"[{rid}] app/views/series/rounds/_endless_table.html.haml:2:in `map'",
        f"I, [{stamp} #10805]  INFO -- : [{rid}] Processing by ErrorsController#internal_server_error as */*",
    ]


def test_every_exception_report_is_read_however_many_blank_fatal_lines_came_before() -> None:
    parser = RailsParser("production.log")
    lines: List[str] = []
    # blank FATAL lines of requests whose report never came (cut logs), then 70 real reports
    for n in range(64):
        lines.append(f"F, [2024-05-01T00:04:{n % 60:02d}.000000 #10805] FATAL -- : [{n:08x}-0000-4000-8000-000000000000]   ")
    for n in range(70):
        lines.extend(report(f"{n:08x}-1111-4111-8111-111111111111", n))
    events: List[Event] = []
    for lineno, line in enumerate(lines, 1):
        events.extend(parser.feed(line, lineno))
    events.extend(parser.finish())
    errors = [e for e in events if isinstance(e, Error)]
    assert len(errors) == 70
    assert all(e.error_class == "ActionView::Template::Error" for e in errors)
