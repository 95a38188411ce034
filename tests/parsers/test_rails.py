"""The Rails parser on real Rails 3.0 to 7.x logs (fixtures/logs/rails, from the corpus).

Lines for shapes no permissively licensed log in the corpus has (Rails 7.2 query
counts, Rails 8 bare STDOUT lines, lograge) are built from the format strings cited in
shared/reference/rails-signals.md and say so; the reference app's captured logs cover
the same shapes for real in tests/e2e.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from agent.events import Error, Event, Request, Sql
from agent.parsers.rails import LogrageParser, RailsParser
from agent.sources.replay import iter_events
from agent.timeparse import to_iso
from support import feed_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "rails"


def parse_lines(lines: List[str], parser=None) -> List[Event]:
    return feed_lines(parser or RailsParser("test.log"), lines)


def events_of(name: str) -> List[Event]:
    return list(iter_events(str(FIXTURES / name)))


def test_rails52_production_log_yields_every_completed_request_with_its_endpoint():
    events = events_of("rails52_production.log")
    requests = [e for e in events if isinstance(e, Request)]
    assert len(requests) == 10
    first = next(r for r in requests if r.line == 4)
    assert first.endpoint == "Public::CentersController#index"
    assert first.status == 500 and first.duration_ms == 1.0 and first.db_ms == 0.0
    assert first.method == "GET" and first.path.startswith("/centers?")
    assert first.request_id == "55cd4db0-7439-468a-8613-0065179df175"
    assert to_iso(first.ts) == "2021-11-26T00:04:44.294Z"


def test_fatal_blocks_become_one_error_each_with_class_message_backtrace_and_endpoint():
    errors = [e for e in events_of("rails52_production.log") if isinstance(e, Error)]
    classes = [e.error_class for e in errors]
    assert classes == [
        "ActionController::UnfilteredParameters",
        "ActiveRecord::RecordNotFound",
        "ActionController::RoutingError",
        "ActiveModel::MissingAttributeError",
        "ActionController::InvalidAuthenticityToken",
        "URI::InvalidURIError",
        "ActionView::Template::Error",
    ]
    unfiltered = errors[0]
    assert unfiltered.message == "unable to convert unpermitted parameters to hash"
    assert unfiltered.endpoint == "Public::CentersController#index"
    assert unfiltered.backtrace == ("app/controllers/public/centers_controller.rb:23:in `set_page_tabs'",)
    assert unfiltered.line == 6  # the header line, so evidence points at it
    # Rails 5.2 prints framework frames as separately prefixed FATAL records: one error still
    routing = errors[2]
    assert len(routing.backtrace) == 20 and routing.backtrace[0].startswith("actionpack (5.2.5)")
    assert "\n" in routing.raw


def test_multi_line_exception_message_is_kept_whole_and_its_frames_follow():
    errors = [e for e in events_of("rails6_production.log") if isinstance(e, Error)]
    assert len(errors) == 1
    err = errors[0]
    assert err.error_class == "ActionView::Template::Error"
    assert err.message.startswith("PG::UndefinedColumn: ERROR:  column series_rounds.name does not exist")
    assert "LINE 1:" in err.message
    assert err.backtrace[0] == "app/views/series/rounds/_endless_table.html.haml:2:in `map'"
    assert err.endpoint == "Series::RoundsController#show"


def test_rails6_completed_lines_carry_allocations():
    requests = [e for e in events_of("rails6_production.log") if isinstance(e, Request)]
    assert len(requests) == 12
    slow = max(requests, key=lambda r: r.duration_ms or 0)
    assert slow.duration_ms == 1620.0 and slow.allocations is not None


def test_debug_sql_lines_keep_name_binds_cache_flag_and_source_line():
    events = events_of("rails7_development.log")
    sql = [e for e in events if isinstance(e, Sql)]
    assert len(sql) == 61
    user = sql[0]
    assert user.name == "User Load"
    assert user.sql == 'SELECT "users".* FROM "users" WHERE "users"."email" = ? LIMIT ?'
    assert user.binds == '[["email", "test@example.com"], ["LIMIT", 1]]'
    assert user.source_location == "app/controllers/sessions_controller.rb:7:in `create'"
    assert user.request_id and not user.cached
    assert any(s.cached and s.name == "User Load" for s in sql)
    assert {s.name for s in sql} >= {"TRANSACTION", "ActiveStorage::Attachment Load", "ActiveStorage::Blob Load"}
    requests = {r.request_id: r for r in events if isinstance(r, Request)}
    assert all(s.request_id in requests for s in sql if s.request_id)


def test_ansi_colours_are_stripped_and_interleaved_requests_stay_apart():
    events = events_of("rails7_overlapped_ansi.log")
    assert not any("\x1b" in e.raw for e in events)
    sql = [e for e in events if isinstance(e, Sql)]
    assert sql[0].name == "User Load" and sql[0].sql.startswith('SELECT "users".*')
    requests = [e for e in events if isinstance(e, Request)]
    assert [r.endpoint for r in requests] == ["SessionsController#new", "SessionsController#new", "SessionsController#create"]
    assert len({r.request_id for r in requests}) == 3


def test_rails30_untagged_log_with_old_completed_footer():
    events = events_of("rails30_success.log")
    (request,) = [e for e in events if isinstance(e, Request)]
    assert request.endpoint == "QueriesController#index" and request.status == 200
    assert request.view_ms == 4.9 and request.db_ms == 0.5
    assert [e.name for e in events if isinstance(e, Sql)] == ["SQL", "Query Load"]


def test_rails30_template_error_with_source_excerpt():
    (err,) = [e for e in events_of("rails30_failure.log") if isinstance(e, Error)]
    assert err.error_class == "ActionView::Template::Error"
    assert err.message == "undefined local variable or method `field' for #<Class>"
    assert err.endpoint == "QueriesController#execute"
    assert err.backtrace[-1] == "app/controllers/queries_controller.rb:34:in `execute'"


def test_rails72_query_counts_are_read_from_the_completed_line():
    # built from the 7.2 format string "ActiveRecord: %.1fms (%d %s, %d cached)" (rails-signals.md A.2)
    lines = [
        'I, [2026-11-26T10:00:00.100000 #7]  INFO -- : [a1b2c3d4-0000-4000-8000-000000000001] Started GET "/posts" for 10.0.0.1 at 2026-11-26 10:00:00 +0000',
        "I, [2026-11-26T10:00:00.101000 #7]  INFO -- : [a1b2c3d4-0000-4000-8000-000000000001] Processing by PostsController#index as HTML",
        "I, [2026-11-26T10:00:00.160000 #7]  INFO -- : [a1b2c3d4-0000-4000-8000-000000000001] Completed 200 OK in 58ms (Views: 40.4ms | ActiveRecord: 15.3ms (12 queries, 3 cached) | GC: 1.2ms)",
    ]
    (request,) = parse_lines(lines)
    assert (request.queries, request.cached, request.db_ms, request.view_ms) == (12, 3, 15.3, 40.4)
    single = parse_lines([lines[2].replace("(12 queries, 3 cached)", "(1 query, 0 cached)")])
    assert single[0].queries == 1


def test_rails8_bare_lines_take_their_time_from_the_started_line():
    # Rails 8 TaggedLogging.logger(STDOUT): "[request-id] message", no time (rails-signals.md A.1)
    rid = "3f2c9a0e-8b1d-4e7a-9c55-2b8f0d6e1a77"
    lines = [
        f'[{rid}] Started GET "/posts" for 203.0.113.7 at 2024-05-01 12:00:00 +0000',
        f"[{rid}] Processing by PostsController#index as HTML",
        f"[{rid}] Completed 500 Internal Server Error in 5004ms (ActiveRecord: 0.0ms (0 queries, 0 cached) | GC: 0.4ms)",
        f"[{rid}]   ",
        f"[{rid}] ActiveRecord::ConnectionTimeoutError (could not obtain a connection from the pool within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use):",
        f"[{rid}]   ",
        f"[{rid}] app/controllers/posts_controller.rb:7:in `index'",
    ]
    events = parse_lines(lines)
    request, error = events
    assert isinstance(request, Request) and isinstance(error, Error)
    assert to_iso(request.ts) == "2024-05-01T12:00:00.000Z" and error.ts == request.ts
    assert request.status == 500 and request.duration_ms == 5004.0
    assert error.error_class == "ActiveRecord::ConnectionTimeoutError"
    assert error.message.startswith("could not obtain a connection from the pool within 5.000 seconds")
    assert error.endpoint == "PostsController#index" and error.request_id == rid
    assert error.backtrace == ("app/controllers/posts_controller.rb:7:in `index'",)


def test_bare_lines_use_the_envelope_time_when_a_collector_added_one(tmp_path):
    # docker logs --timestamps in front of Rails 8 STDOUT lines
    rid = "9d1e0000-1111-4222-8333-444455556666"
    log = tmp_path / "web.log"
    log.write_text(
        f'2026-11-26T10:00:00.500000000Z [{rid}] Started GET "/up" for 10.0.0.9 at 2026-11-26 10:00:00 +0000\n'
        f"2026-11-26T10:00:00.510000000Z [{rid}] Processing by Rails::HealthController#show as HTML\n"
        f"2026-11-26T10:00:00.530000000Z [{rid}] Completed 200 OK in 20ms (Views: 1.0ms | ActiveRecord: 0.0ms (0 queries, 0 cached) | GC: 0.0ms)\n"
    )
    (request,) = list(iter_events(str(log)))
    assert request.endpoint == "Rails::HealthController#show"
    assert to_iso(request.ts) == "2026-11-26T10:00:00.000Z"  # the Started time rules the request


def test_lograge_key_value_and_json_lines_become_requests():
    # lograge 0.15 KeyValue / Json formatters (roidrage/lograge lib/lograge/formatters, rails-signals.md A.6)
    kv = (
        "I, [2026-11-26T10:00:01.000000 #9]  INFO -- : [c0ffee00-0000-4000-8000-000000000002] method=GET path=/posts "
        "format=html controller=PostsController action=index status=500 "
        "error='ActiveRecord::ConnectionTimeoutError: could not obtain a connection from the pool within 5.000 seconds' "
        "allocations=1805 duration=5004.12 view=0.00 db=0.00"
    )
    js = '{"method":"GET","path":"/posts","format":"html","controller":"PostsController","action":"index","status":200,"allocations":25210,"duration":58.33,"view":40.43,"db":15.26}'
    a, b = parse_lines([kv, js], LogrageParser("x.log"))
    assert a.endpoint == "PostsController#index" and a.status == 500 and a.duration_ms == 5004.12
    assert a.error.startswith("ActiveRecord::ConnectionTimeoutError:")
    assert a.request_id == "c0ffee00-0000-4000-8000-000000000002"
    assert b.status == 200 and b.db_ms == 15.26 and b.view_ms == 40.43
    assert LogrageParser.sniff([kv, js]) > RailsParser.sniff([kv, js]) or LogrageParser.sniff([kv, js]) == 1.0


def test_sniff_accepts_rails_and_rejects_lookalikes():
    rails = (FIXTURES / "rails52_production.log").read_text().splitlines()[:64]
    assert RailsParser.sniff(rails) == 1.0
    assert LogrageParser.sniff(rails) == 0.0
    sidekiq = ["2016-08-17T08:43:03.200Z 5207 TID-9s4zo UpdateCountersWorker JID-0d8c7bc9d2d1f1f0b1fbb1a4 INFO: start"]
    pg = ["2010-10-10 13:50:24 GMT [38626]: [1-1] LOG:  00000: database system was shut down at 2010-10-10 13:49:33 GMT"]
    rails1 = ["Processing DashboardController#index (for 1.1.1.1 at 2008-08-14 21:16:25) [GET]"]
    assert RailsParser.sniff(sidekiq) == RailsParser.sniff(pg) == RailsParser.sniff(rails1) == 0.0


def test_a_held_sql_line_is_released_at_end_of_input():
    events = parse_lines(['  Post Load (0.5ms)  SELECT "posts".* FROM "posts" WHERE "posts"."author_id" = $1  [["author_id", 7]]'])
    (sql,) = events
    assert sql.sql == 'SELECT "posts".* FROM "posts" WHERE "posts"."author_id" = $1' and sql.binds == '[["author_id", 7]]'
