"""Lines from issue 13 that used to stop the agent with a traceback: each parses, or is skipped.

Numbers are read with bounds (agent/parsers/numbers.py): a field that is not a finite
number within bounds is dropped (None); the event itself is still emitted.
"""
from __future__ import annotations

import pytest

from agent.events import Process, Request
from agent.parsers.lograge import looks_like
from agent.parsers.rails import LogrageParser, RailsParser
from agent.parsers.sidekiq import SidekiqParser
from agent.timeparse import parse_iso
from support import feed_lines

HUGE = "9" * 400
REQ = "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77"


def test_a_logger_prefix_with_a_zone_offset_parses_and_honours_the_offset():
    lines = [
        f'I, [2024-05-01T12:00:00.500000+01:00 #1]  INFO -- : [{REQ}] Started GET "/posts" for 1.2.3.4 at 2024-05-01 12:00:00 +0100',
        f"I, [2024-05-01T12:00:00.750000+01:00 #1]  INFO -- : [{REQ}] Completed 200 OK in 5ms (Views: 1.0ms | ActiveRecord: 1.0ms)",
    ]
    (request,) = feed_lines(RailsParser("production.log"), lines)
    assert isinstance(request, Request) and request.status == 200
    assert request.ts == parse_iso("2024-05-01T11:00:00.75Z")


def test_the_same_second_with_and_without_an_offset_does_not_reuse_the_cached_second():
    lines = [
        "I, [2024-05-01T12:00:00.100000 #1]  INFO -- : Completed 200 OK in 5ms",
        "I, [2024-05-01T12:00:00.200000+02:00 #1]  INFO -- : Completed 200 OK in 5ms",
    ]
    first, second = feed_lines(RailsParser("production.log"), lines)
    assert first.ts is not None and second.ts is not None
    assert round(first.ts - second.ts, 3) == 2 * 3600 - 0.1


def test_a_completed_line_with_400_digit_allocations_keeps_the_request_and_drops_the_number():
    line = f"Completed 200 OK in 5ms (Views: 1.0ms | ActiveRecord: 1.0ms | Allocations: {HUGE})"
    (request,) = feed_lines(RailsParser("production.log"), [line])
    assert request.status == 200 and request.duration_ms == 5.0 and request.db_ms == 1.0
    assert request.allocations is None


def test_a_completed_line_with_a_huge_duration_has_no_duration():
    (request,) = feed_lines(RailsParser("production.log"), [f"Completed 500 Internal Server Error in {HUGE}ms"])
    assert request.status == 500 and request.duration_ms is None


def test_a_lograge_line_with_a_400_nine_status_has_no_status():
    line = f"method=GET path=/posts format=html controller=PostsController action=index status={HUGE} duration=58.33 allocations=1e999"
    assert looks_like(line)
    (request,) = feed_lines(LogrageParser("production.log"), [line])
    assert request.endpoint == "PostsController#index" and request.duration_ms == 58.33
    assert request.status is None and request.allocations is None


def test_lograge_json_with_infinite_numbers_drops_them():
    line = '{"method":"GET","path":"/p","controller":"P","action":"i","status":1e999,"duration":-1e999,"db":NaN}'
    (request,) = feed_lines(LogrageParser("production.log"), [line])
    assert request.status is None and request.duration_ms is None and request.db_ms is None


def test_sidekiq_redis_online_with_an_unreadable_downtime_keeps_the_event_without_the_number():
    line = "2024-05-01T12:00:00.000Z pid=1 tid=abc INFO: Redis is online, 1.2.3 sec downtime"
    (event,) = feed_lines(SidekiqParser("sidekiq.log"), [line])
    assert isinstance(event, Process) and event.state == "redis_online"
    # detectors/sidekiq_failures_health.py reads "([\d.]+) sec downtime" back out of the message
    assert event.message == "Redis is online" and event.raw == line


def test_sidekiq_redis_online_with_a_readable_downtime_keeps_it():
    line = "2024-05-01T12:00:00.000Z pid=1 tid=abc INFO: Redis is online, 12.5 sec downtime"
    (event,) = feed_lines(SidekiqParser("sidekiq.log"), [line])
    assert event.message == "Redis is online, 12.5 sec downtime"


def test_a_stamp_with_a_5000_digit_fraction_is_read_to_the_nanosecond_rather_than_an_exception():
    line = "I, [2024-05-01T12:00:00." + "1" * 5000 + " #1]  INFO -- : Completed 200 OK in 5ms"
    (request,) = feed_lines(RailsParser("production.log"), [line])
    assert request.status == 200 and request.ts == pytest.approx(1714564800.111111111)
