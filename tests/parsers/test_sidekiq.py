"""The Sidekiq parser on real Sidekiq 4.x/5.x logs (fixtures/logs/sidekiq, from the corpus).

Sidekiq 7, 8 and the JSON formatter are absent from the corpus: their fixtures are built
from the format strings in shared/reference/rails-signals.md section D and Sidekiq's source
(see fixtures/logs/sidekiq/PROVENANCE.md). Lines quoted from GitHub issues
(shared/corpus/ISSUE_QUOTES.md) are used inline, in small tests, with their URL.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from agent.events import Error, Event, Job, Process
from agent.parsers import sniff
from agent.parsers.sidekiq import SidekiqParser, split_sk8
from agent.sources.replay import iter_events
from agent.timeparse import parse_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
SIDEKIQ = FIXTURES / "sidekiq"
CORPUS_GZ = FIXTURES / "sidekiq_failures" / "sidekiq_log_analyzer.sidekiq.log.gz"


def parse_lines(lines: List[str]) -> List[Event]:
    parser = SidekiqParser("test.log")
    out: List[Event] = []
    for n, line in enumerate(lines, 1):
        out.extend(parser.feed(line, n))
    out.extend(parser.finish())
    return out


def parse_file(name: str) -> List[Event]:
    return parse_lines((SIDEKIQ / name).read_text(encoding="utf-8").splitlines())


def jobs(events: List[Event], state: str) -> List[Job]:
    return [e for e in events if isinstance(e, Job) and e.state == state]


def processes(events: List[Event], state: str) -> List[Process]:
    return [e for e in events if isinstance(e, Process) and e.state == state]


# ----- Sidekiq 4.x / 5.x (real) -----------------------------------------------------------


def test_sidekiq5_failure_becomes_one_fail_event_with_error_queue_and_backtrace():
    events = parse_file("sidekiq5_failure.log")
    [fail] = jobs(events, "fail")
    assert (fail.line, fail.job_class, fail.jid) == (12, "UserStatWorker", "b6c2630ba0d895c184e40f3b")
    assert fail.error_class == "ActiveRecord::RecordNotFound"
    assert fail.error_message.startswith("Couldn't find User with 'id'=12")
    assert fail.queue == "default" and fail.retry_count is None and fail.elapsed_s == 0.007
    assert fail.backtrace[0].endswith("finder_methods.rb:346:in `raise_record_not_found_exception!'")
    assert any("app/workers/user_stat_worker.rb:6" in f for f in fail.backtrace)
    assert '"context":"Job raised exception"' in fail.raw and fail.raw.count("\n") >= 40


def test_sidekiq5_interleaved_threads_keep_every_start_and_done():
    events = parse_file("sidekiq5_failure.log")
    lines = (SIDEKIQ / "sidekiq5_failure.log").read_text().splitlines()
    assert len(jobs(events, "start")) == sum(1 for l in lines if l.endswith("INFO: start"))
    assert len(jobs(events, "done")) == sum(1 for l in lines if " INFO: done: " in l)
    done = jobs(events, "done")[0]
    assert done.job_class == "UserStatWorker" and done.elapsed_s is not None and done.tid.startswith("1ej")


def test_sidekiq4_each_process_start_is_one_boot_and_bye_is_stopped():
    events = parse_file("sidekiq4_lifecycle.log")
    boots = processes(events, "boot")
    assert [b.pid for b in boots] == ["5207", "1406", "21517", "25086", "14629"]
    assert len(processes(events, "stopped")) == 5 and len(processes(events, "shutdown")) == 5
    assert len(processes(events, "quiet")) == 5  # "Received USR1" + "Terminating quiet workers" is one quiet
    assert all(p.component == "sidekiq" for p in boots)


def test_bundler_crash_line_is_a_crash_of_the_running_process_with_its_exception():
    events = parse_file("sidekiq4_crash.log")
    [crash] = processes(events, "crash")
    assert crash.pid == "23994" and crash.message == "SignalException: SIGHUP" and crash.line == 15
    assert crash.ts is not None and "scheduled.rb:59" in crash.raw
    assert processes(events, "boot")[0].pid == "16784"  # the next process, after the Raven/Rails noise


def test_rails_boot_noise_in_a_sidekiq_log_is_counted_unparsed():
    parser = SidekiqParser("x.log")
    lines = (SIDEKIQ / "sidekiq4_crash.log").read_text().splitlines()
    for n, line in enumerate(lines, 1):
        parser.feed(line, n)
    assert parser.unparsed == 2  # the Raven logger line and the OpenSSL warning; the backtrace belongs to the crash


def test_whole_corpus_log_counts_match_the_log():
    events = list(iter_events(str(CORPUS_GZ)))
    assert len(jobs(events, "start")) == 11889 and len(jobs(events, "done")) == 11888
    assert len(jobs(events, "fail")) == 1 and not jobs(events, "dead")
    assert len(processes(events, "crash")) == 3 and len(processes(events, "stopped")) == 361
    assert len(processes(events, "boot")) == 366
    assert not [e for e in events if isinstance(e, Error)]


# ----- Sidekiq 4.2 lines quoted in issues (ISSUE_QUOTES.md) ----------------------------------


def test_fail_then_warn_pool_error_is_one_fail_event():
    # https://github.com/sidekiq/sidekiq/issues/2903
    events = parse_lines([
        "2016-03-28T15:32:56.167Z 2839 TID-ow54a682o ChangeAwayStatusWorker JID-462f59a3632454ab7061741e INFO: fail: 5.001 sec",
        "2016-03-28T15:32:56.168Z 2839 TID-ow54a682o WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)",
    ])
    [fail] = events
    assert fail.error_class == "ActiveRecord::ConnectionTimeoutError" and fail.elapsed_s == 5.001
    assert fail.job_class == "ChangeAwayStatusWorker" and "waited 5.000 seconds" in fail.error_message


def test_ruby_hash_job_context_of_sidekiq4_gives_queue_and_retry_count():
    # shape of the 4.x WARN line described in https://github.com/sidekiq/sidekiq/issues/2903 (a Ruby Hash#inspect)
    events = parse_lines([
        "2016-03-28T15:32:56.167Z 2839 TID-ow54a682o ChangeAwayStatusWorker JID-462f59a3632454ab7061741e INFO: fail: 5.001 sec",
        '2016-03-28T15:32:56.168Z 2839 TID-ow54a682o WARN: {:context=>"Job raised exception", :job=>{"class"=>"ChangeAwayStatusWorker", "args"=>[{"queue"=>"x"}], "retry"=>true, "queue"=>"low", "jid"=>"462f59a3632454ab7061741e", "error_message"=>"could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)", "error_class"=>"ActiveRecord::ConnectionTimeoutError", "failed_at"=>1459179176.1673794, "retry_count"=>0}, :jobstr=>"{\\"class\\":\\"ChangeAwayStatusWorker\\"}"}',
        "2016-03-28T15:32:56.168Z 2839 TID-ow54a682o WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited 5.000 seconds)",
    ])
    [fail] = events
    assert fail.retry_count == 0 and fail.queue == "x"  # first occurrence wins: args may shadow a key
    assert fail.error_class == "ActiveRecord::ConnectionTimeoutError"


def test_foreman_and_svlogd_envelopes_are_stripped_before_the_parser(tmp_path):
    # https://github.com/sidekiq/sidekiq/issues/2769 (foreman) and /3126 (svlogd, with the line break as pasted)
    foreman = tmp_path / "foreman.log"
    foreman.write_text(
        "21:59:23 worker.1 | 2016-01-14T05:59:23.653Z 42480 TID-ov6c4r79k DripContentJob JID-9cd3d4c8b1cfe2d050229ae1 INFO: start\n"
        "21:59:28 worker.1 | 2016-01-14T05:59:28.655Z 42480 TID-ov6c4r79k DripContentJob JID-9cd3d4c8b1cfe2d050229ae1 INFO: fail: 5.002 sec\n"
        "21:59:28 worker.1 | 2016-01-14T05:59:28.655Z 42480 TID-ov6c4r79k WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited 5.001 seconds)\n"
    )
    events = list(iter_events(str(foreman)))
    assert [type(e).__name__ + ":" + getattr(e, "state", "") for e in events] == ["Job:start", "Job:fail"]
    assert events[1].error_class == "ActiveRecord::ConnectionTimeoutError"
    svlogd = tmp_path / "sidekiq.log"
    svlogd.write_text(
        # the first line is made up (same thread, a minute earlier) so that most lines carry the envelope
        "2016-09-07_03:21:10.94361 2016-09-07T03:21:10.943Z 9614 TID-gnofc4fis INFO: Booting Sidekiq 4.1.2 with redis options {}\n"
        "2016-09-07_03:22:10.94361 2016-09-07T03:22:10.943Z 9614 TID-gnofc4fis WARN: ActiveRecord::ConnectionTimeoutError: could not obtain a database connection within 5.000 seconds (waited\n"
        " 5.000 seconds)\n"
    )
    boot, error = list(iter_events(str(svlogd)))
    assert isinstance(boot, Process) and boot.state == "boot"
    assert isinstance(error, Error) and error.origin == "sidekiq" and error.message.endswith("(waited\n 5.000 seconds)")


# ----- Sidekiq 6/7 (synthetic), 8 (synthetic), JSON (synthetic) ------------------------------


def test_sidekiq7_activejob_failure_names_the_wrapped_class_and_dead_follows_its_fail():
    events = parse_file("sidekiq7_synthetic.log")
    fail = next(e for e in jobs(events, "fail") if e.jid == "0b1c2d3e4f5a6b7c8d9e0f1a")
    [dead] = jobs(events, "dead")
    assert fail.job_class == dead.job_class == "ReportExportJob"
    assert fail.queue == "reports" and fail.retry_count == 0 and fail.error_class == "NoMethodError"
    assert dead.error_class == "NoMethodError" and events.index(dead) == events.index(fail) + 1


def test_sidekiq7_plain_failure_keeps_its_backtrace_head():
    fail = next(e for e in jobs(parse_file("sidekiq7_synthetic.log"), "fail") if e.job_class == "HardJob")
    assert (fail.error_class, fail.error_message) == ("RuntimeError", "boom")
    assert fail.backtrace[0] == "/srv/app/releases/20240501115500/app/jobs/hard_job.rb:5:in `perform'"
    assert len(fail.backtrace) == 3 and fail.elapsed_s == 0.012


def test_redis_fetch_error_is_a_process_redis_error_plus_a_standalone_error_and_recovery():
    events = parse_file("sidekiq7_synthetic.log")
    [down] = processes(events, "redis_error")
    [online] = processes(events, "redis_online")
    [error] = [e for e in events if isinstance(e, Error)]
    assert down.message.startswith("Error fetching job: Connection refused")
    assert error.error_class == "RedisClient::CannotConnectError" and not error.job_class
    assert online.message == "Redis is online, 12.3 sec downtime"


def test_fail_after_terminating_busy_threads_is_marked_as_a_shutdown_interruption():
    events = parse_file("sidekiq7_synthetic.log")
    [killed] = [e for e in jobs(events, "fail") if e.job_class == "LongJob"]
    assert killed.error_class == "Sidekiq::Shutdown" and killed.elapsed_s == 60.123
    assert processes(events, "terminate_busy")[0].message == "Terminating 1 busy threads"


def test_sidekiq8_colour_lines_and_info_error_report_make_one_fail():
    events = parse_file("sidekiq8_synthetic.log")
    first = jobs(events, "fail")[0]
    assert (first.job_class, first.error_class, first.error_message) == ("HardJob", "RuntimeError", "boom")
    assert first.queue == "critical" and first.retry_count == 2
    [dead] = jobs(events, "dead")
    assert dead.job_class == "ReportExportJob" and dead.error_class == "NoMethodError"


def test_sidekiq8_full_message_backtrace_is_read_from_from_lines():
    last = jobs(parse_file("sidekiq8_synthetic.log"), "fail")[-1]
    assert last.error_class == "RuntimeError" and last.error_message == "boom"
    assert last.backtrace[0] == "/srv/app/app/jobs/hard_job.rb:5:in 'HardJob#perform'" and len(last.backtrace) == 3


def test_sidekiq8_context_with_spaces_and_hash_is_split_at_the_right_colon():
    ctx, msg = split_sk8(' context=Job raised exception job={"error_message" => "a: b", "jid" => "x"}: boom (RuntimeError)')
    assert ctx["context"] == "Job raised exception" and ctx["job"].startswith('{"error_message"')
    assert msg == "boom (RuntimeError)"


def test_json_formatter_records_make_the_same_events():
    events = parse_file("sidekiq_json_synthetic.log")
    [fail] = jobs(events, "fail")
    assert fail.error_class == "Net::ReadTimeout" and fail.retry_count == 3 and fail.elapsed_s == 0.02
    assert fail.backtrace == ("/app/app/jobs/hard_job.rb:5:in `perform'", "/usr/local/bundle/gems/sidekiq-7.2.4/lib/sidekiq/processor.rb:220:in `execute_job'")
    assert jobs(events, "done")[0].elapsed_s == 0.5 and len(processes(events, "boot")) == 1


def test_a_fail_held_at_the_end_of_input_is_not_lost():
    events = parse_lines(["2024-05-01T12:00:01.012Z pid=1 tid=3kq class=HardJob jid=abc elapsed=0.012 INFO: fail"])
    assert [e.state for e in events if isinstance(e, Job)] == ["fail"]


def test_a_fail_without_error_lines_is_released_when_its_thread_starts_the_next_job():
    events = parse_lines([
        "2024-05-01T12:00:01.012Z pid=1 tid=3kq class=HardJob jid=abc elapsed=0.012 INFO: fail",
        "2024-05-01T12:00:02.000Z pid=1 tid=3kq class=HardJob jid=def INFO: start",
    ])
    assert [e.state for e in events] == ["fail", "start"]


def test_a_pid_1_container_restart_is_a_second_boot():
    events = parse_lines([
        "2024-05-01T12:00:00.000Z pid=1 tid=a INFO: Booted Rails 7.1.3 application in production environment",
        "2024-05-01T12:00:00.001Z pid=1 tid=a INFO: Running in ruby 3.3.0",
        "2024-05-01T12:00:01.000Z pid=1 tid=b class=A jid=1 INFO: start",
        "2024-05-01T12:05:00.000Z pid=1 tid=a INFO: Booted Rails 7.1.3 application in production environment",
    ])
    assert len(processes(events, "boot")) == 2


# ----- sniffing -----------------------------------------------------------------------------


def test_sniff_scores_every_sidekiq_variant_high():
    for name in ("sidekiq4_lifecycle.log", "sidekiq4_crash.log", "sidekiq5_failure.log", "sidekiq7_synthetic.log",
                 "sidekiq8_synthetic.log", "sidekiq_json_synthetic.log"):
        lines = (SIDEKIQ / name).read_text().splitlines()[:64]
        assert SidekiqParser.sniff(lines) >= 0.7, name
        assert sniff(lines)[0] is SidekiqParser, name


def test_sniff_rejects_a_rails_log():
    lines = (FIXTURES / "rails" / "rails52_production.log").read_text().splitlines()[:64]
    assert SidekiqParser.sniff(lines) < 0.3


# ----- the reference app's Sidekiq 6.4 logs (real) ---------------------------------------------

E2E_SETUPS = sorted(p.parent.name for p in (FIXTURES / "e2e").glob("*/sidekiq.log"))


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_sidekiq64_log_parses_completely_with_dead_jobs_after_their_fails(setup):
    events = list(iter_events(str(FIXTURES / "e2e" / setup / "sidekiq.log")))
    fails, deads = jobs(events, "fail"), jobs(events, "dead")
    assert len(fails) == 45 and len(deads) == 22  # phases.jsonl: 1 flaky + 44 failed executions, 22 dead
    assert all(f.error_class for f in fails)
    assert {d.job_class for d in deads} == {"AlwaysFailsJob", "ReportExportJob"}  # not the ActiveJob wrapper
    for dead in deads:  # 6.4 logs "Adding dead" *before* its fail: the parser puts it after
        before = events[events.index(dead) - 1]
        assert isinstance(before, Job) and before.state == "fail" and before.jid == dead.jid
        assert dead.error_class == before.error_class and dead.queue == "default"


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_activejob_error_lines_and_their_backtraces_are_not_noise(setup):
    parser = SidekiqParser("sidekiq.log")
    lines = (FIXTURES / "e2e" / setup / "sidekiq.log").read_text().splitlines()
    events: List[Event] = []
    for n, line in enumerate(lines, 1):
        events.extend(parser.feed(line, n))
    events.extend(parser.finish())
    assert parser.unparsed == 0
    report = [f for f in jobs(events, "fail") if f.job_class == "ReportExportJob"]
    assert report and all(f.error_class == "NoMethodError" and f.retry_count in (None, 0) for f in report)


# ----- more 6.x/7.x shapes (built from the format strings of sidekiq 6.4.1's source) ----------


def test_dead_logged_after_its_fail_is_still_emitted_after_the_fail():
    events = parse_lines([
        "2024-05-01T12:00:01.000Z pid=1 tid=3kq class=HardJob jid=abc INFO: start",
        "2024-05-01T12:00:01.012Z pid=1 tid=3kq class=HardJob jid=abc elapsed=0.012 INFO: fail",
        "2024-05-01T12:00:01.013Z pid=1 tid=3kq class=HardJob jid=abc INFO: Adding dead HardJob job abc",
        '2024-05-01T12:00:01.013Z pid=1 tid=3kq WARN: {"context":"Job raised exception","job":{"class":"HardJob","jid":"abc","queue":"low"}}',
        "2024-05-01T12:00:01.013Z pid=1 tid=3kq WARN: NameError: uninitialized constant HardJob",
    ])
    assert [(e.state, e.error_class) for e in events] == [("start", ""), ("fail", "NameError"), ("dead", "NameError")]


def test_redis_heartbeat_flush_and_rtt_lines_are_redis_errors_and_pool_timeouts_are_errors():
    events = parse_lines([
        "2024-05-01T12:00:00.000Z pid=1 tid=hb ERROR: heartbeat: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)",
        "2024-05-01T12:00:01.000Z pid=1 tid=hb WARN: Unable to flush stats: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)",
        "2024-05-01T12:00:02.000Z pid=1 tid=hb WARN: Your Redis network connection is performing extremely poorly.",
        "Last RTT readings were [120034, 110212, 99870, 130004, 101299], ideally these should be < 1000.",
        "Ensure Redis is running in the same AZ or datacenter as Sidekiq.",
        "2024-05-01T12:00:03.000Z pid=1 tid=w1 WARN: ConnectionPool::TimeoutError: Waited 1 sec, 0/5 available",
    ])
    assert [p.message.split(":")[0] for p in processes(events, "redis_error")] == [
        "heartbeat", "Unable to flush stats", "Your Redis network connection is performing extremely poorly."]
    [pool] = [e for e in events if isinstance(e, Error)]
    assert pool.error_class == "ConnectionPool::TimeoutError" and pool.message == "Waited 1 sec, 0/5 available"


def test_redis_eviction_warning_heredoc_and_unknown_warn_lines():
    parser = SidekiqParser("x.log")
    lines = [
        "2024-05-01T12:00:00.000Z pid=1 tid=a WARN: ",
        "",
        "",
        "WARNING: Your Redis instance will evict Sidekiq data under heavy load.",
        "The 'noeviction' maxmemory policy is recommended (current policy: 'allkeys-lru').",
        "2024-05-01T12:00:01.000Z pid=1 tid=a WARN: something odd happened",
    ]
    events = [e for n, l in enumerate(lines, 1) for e in parser.feed(l, n)]
    assert events == [] and parser.unparsed == 1  # the heredoc belongs to its WARN; the odd WARN is not understood


def test_without_timestamp_lines_take_the_envelope_time():
    # Heroku (DYNO set): Sidekiq's WithoutTimestamp formatter; logplex gives the time
    parser = SidekiqParser("heroku.log")
    hint = 1680078482.741902  # 2023-03-29T08:28:02.741902+00:00 (ISSUE_QUOTES: sidekiq/sidekiq#5815's envelope)
    [start] = parser.feed("pid=4 tid=2b8 class=HardJob jid=b4a5 INFO: start", 1, hint)
    [legacy] = parser.feed("5207 TID-9s4zo HardJob JID-b4a6 INFO: done: 0.5 sec", 2, hint + 1)
    [eight] = parser.feed("INFO pid=4 tid=2b8 class=HardJob jid=b4a7: start", 3, hint + 2)
    assert (start.ts, legacy.ts, eight.ts) == (hint, hint + 1, hint + 2)
    assert (legacy.job_class, legacy.elapsed_s, eight.jid) == ("HardJob", 0.5, "b4a7")


def test_a_warn_the_app_logs_inside_a_job_is_not_an_error_report():
    parser = SidekiqParser("x.log")
    events = parser.feed("2024-05-01T12:00:01.000Z pid=1 tid=3kq class=ChargeJob jid=abc WARN: Stripe: card declined for order 7", 1)
    assert events == [] and parser.unparsed == 0 and parser.finish() == []


# ----- the fast paths read lines exactly as the general ones (agent/parsers/sidekiq_lines.py) ----------

# real lines: the reference app's Sidekiq 6.4 log (fixtures/logs/e2e/info/sidekiq.log) and sidekiq5_failure.log
SIX_START = "2026-11-26T23:39:15.885Z pid=18600 tid=gp4 class=OkJob jid=f42bffd39ea12a8b4236dd3e INFO: start"
SIX_DONE = "2026-11-26T23:39:15.899Z pid=18600 tid=gp4 class=OkJob jid=f42bffd39ea12a8b4236dd3e elapsed=0.014 INFO: done"
FIVE_DONE = "2018-08-07T01:30:05.490Z 17649 TID-1ejco1 UserStatWorker JID-3028571f625acd26e2959ed6 INFO: done: 0.173 sec"


def _fields(job: Job) -> tuple:
    return (job.ts, job.state, job.job_class, job.jid, job.tid, job.pid, job.elapsed_s, job.queue)


@pytest.mark.parametrize("line, longer", [
    (SIX_START, SIX_START.replace(" INFO: start", " bid=b-1 INFO: start")),  # an extra context key (Sidekiq Pro batches)
    (SIX_DONE, SIX_DONE.replace(" INFO: done", " tags=a INFO: done")),
    (FIVE_DONE, FIVE_DONE.replace(" INFO: done", " BID-77 INFO: done")),
])
def test_start_and_done_lines_give_the_same_job_by_the_whole_line_match_and_the_general_split(line, longer):
    from agent.parsers.sidekiq_lines import JOB_LINE

    assert JOB_LINE.match(line) and not JOB_LINE.match(longer)  # one each way
    [fast], [slow] = parse_lines([line]), parse_lines([longer])
    assert _fields(fast) == _fields(slow)
    assert fast.job_class in ("OkJob", "UserStatWorker") and fast.ts == parse_iso(line[:24])


def test_a_4x_class_that_looks_like_a_level_ends_the_context_there():
    # the level is the first " LEVEL:" after the thread: here the line says INFO "JID-… INFO: start", no job
    parser = SidekiqParser("x.log")
    assert parser.feed("2018-08-07T01:30:05.423Z 17649 TID-1ej1fx INFO: JID-7441d690 INFO: start", 1) == []
    assert parser.unparsed == 0


def test_a_newline_inside_a_start_line_keeps_the_general_reading():
    # only the JSON formatter writes multi-line records; a text line with one after its message still gives
    # its start, one with a newline before the level is no Sidekiq line
    [job] = parse_lines([SIX_START + "\n(continued)"])
    assert (job.state, job.job_class, job.raw) == ("start", "OkJob", SIX_START + "\n(continued)")
    parser = SidekiqParser("x.log")
    assert parser.feed(SIX_START.replace("class=OkJob", "class=Ok\nJob"), 1) == [] and parser.unparsed == 1


def test_job_times_equal_parse_iso_across_minute_and_day_rollovers_and_fraction_lengths():
    stamps = ["2026-11-26T23:59:59.999Z", "2026-11-27T00:00:00.001Z", "2026-11-27T00:00:59Z", "2026-11-27T00:01:00.5Z",
              "2026-11-27T00:01:00.123456Z", "2024-02-29T12:00:00.000Z", "2016-08-17T08:43:03.200Z"]
    parser = SidekiqParser("x.log")
    for n, stamp in enumerate(stamps, 1):
        [job] = parser.feed(f"{stamp} pid=1 tid=a class=X jid=j{n} INFO: start", n)
        assert job.ts == parse_iso(stamp), stamp
    # a date parse_iso rejects takes the last good time, as a line without time would
    [bad] = parser.feed("2026-13-01T00:00:00.000Z pid=1 tid=a class=X jid=j9 INFO: start", 9)
    assert bad.ts == parse_iso(stamps[-1])


def test_is_frame_reads_what_the_backtrace_pattern_reads():
    import re

    from agent.parsers.sidekiq_lines import is_frame

    reference = re.compile(r"\s*(?:from )?[^\s:]+:\d+(?::in |$)")  # the pattern is_frame implements
    real = (SIDEKIQ / "sidekiq5_failure.log").read_text(encoding="utf-8").splitlines()[10:60]  # a trace and lines around it
    tricky = ["\tfrom /app/x.rb:12:in `m'", "from x.rb:3", "from  x.rb:3", "/a b.rb:1:in `x'", "/x.rb:1:in", "/x.rb:12\n",
              "/x.rb:12\nmore", "/x\u00a0y.rb:1", "/x\x00y.rb:1", "x.rb::1", ":1", "/x.rb:12:in`m'", "/x.rb:\u0663:in `m'", ""]
    for text in real + tricky:
        assert is_frame(text) == bool(reference.match(text)), repr(text)
    assert sum(is_frame(t) for t in real) == 37  # the 37 unprefixed frames of the real trace, nothing else


def test_a_long_backtrace_keeps_twenty_frames_and_sixty_raw_lines():
    lines = (SIDEKIQ / "sidekiq5_failure.log").read_text(encoding="utf-8").splitlines()
    head, frames = lines[:14], [l for l in lines[14:] if l.startswith("/")]
    [fail] = jobs(parse_lines(head + frames + frames), "fail")  # an 80-frame trace
    assert fail.backtrace == tuple(f.strip() for f in frames[:20])
    assert fail.raw.count("\n") + 1 == 60


def test_jobs_are_built_positionally_with_the_same_fields_as_by_keyword():
    from dataclasses import asdict

    from agent.parsers.sidekiq import new_job

    assert new_job is Job  # Job's field order still fits the hot path's positional call
    kw = Job(ts=1.0, source="s", line=2, raw="r", state="done", job_class="C", jid="j", queue="", tid="t", pid="p", elapsed_s=0.5)
    assert asdict(new_job(1.0, "s", 2, "r", "done", "C", "j", "", "t", "p", 0.5)) == asdict(kw)
