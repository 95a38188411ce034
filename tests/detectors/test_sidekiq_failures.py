"""The sidekiq_failures detector on real logs, and on scenarios the real logs do not contain.

Real: the corpus' Sidekiq 4/5 log (fixtures/logs/sidekiq_failures, two years of one app: one
RecordNotFound failure, hundreds of ordinary restarts, three SIGHUP crashes) and the reference
app's Sidekiq 6.4 logs (fixtures/logs/e2e/*/sidekiq.log with phases.jsonl). Scenarios (retry
storms, flaky bursts, stuck jobs, Redis outages, crash loops) are written as Sidekiq 6.x/7.x log
lines built from the Pretty formatter's format string (rails-signals.md D.1-D.4) and run through
the real parser, so they exercise the same path as a log file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from agent.aggregate import merge_findings
from agent.events import Deploy, Event, Finding, Metric
from agent.parsers.sidekiq import SidekiqParser
from agent.pipeline import Pipeline
from agent.scan import scan
from agent.timeparse import parse_iso, to_iso
from detectors.sidekiq_failures import SidekiqFailuresDetector, SidekiqFailuresSettings
from detectors.sidekiq_failures.triage import retry_days_left, top_app_frame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
CORPUS = FIXTURES / "sidekiq_failures" / "sidekiq_log_analyzer.sidekiq.log.gz"
E2E = FIXTURES / "e2e"
E2E_SETUPS = sorted(p.parent.name for p in E2E.glob("*/sidekiq.log"))
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def incidents(paths: List[Path], **kwargs) -> List[Finding]:  # type: ignore[no-untyped-def]
    result = scan([str(p) for p in paths], detectors=["sidekiq_failures"], **kwargs)
    assert not result.errors, result.errors
    return result.incidents


def by_subject(found: List[Finding], **subject: str) -> List[Finding]:
    return [f for f in found if all(f.subject.get(k) == v for k, v in subject.items())]


# ----- building Sidekiq 6.x/7.x lines --------------------------------------------------------


class Log:
    """Sidekiq Pretty lines: ``<time> pid=<pid> tid=<tid><context> <LEVEL>: <message>``."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self._tid = 0

    def line(self, t: float, msg: str, ctx: str = "", level: str = "INFO", pid: int = 1, tid: str = "main") -> None:
        self.lines.append(f"{to_iso(T0 + t)} pid={pid} tid={tid}{ctx} {level}: {msg}")

    def job(
        self, t: float, cls: str, jid: str, error: Optional[str] = None, elapsed: float = 0.05, retry_count: Optional[int] = None,
        dead: bool = False, pid: int = 1, finish: bool = True, queue: str = "default",
    ) -> None:
        self._tid += 1
        tid = f"t{self._tid:x}"
        ctx = f" class={cls} jid={jid}"
        self.line(t, "start", ctx, pid=pid, tid=tid)
        if not finish:
            return
        end = t + elapsed
        if error is None:
            self.line(end, "done", ctx + f" elapsed={elapsed}", pid=pid, tid=tid)
            return
        if dead:
            self.line(end, f"Adding dead {cls} job {jid}", ctx, pid=pid, tid=tid)
        self.line(end, "fail", ctx + f" elapsed={elapsed}", pid=pid, tid=tid)
        job: Dict[str, object] = {"retry": True, "queue": queue, "class": cls, "args": [jid[:4]], "jid": jid}
        if retry_count is not None:
            job["retry_count"] = retry_count
        self.line(end, json.dumps({"context": "Job raised exception", "job": job}, separators=(",", ":")), level="WARN", pid=pid, tid=tid)
        self.line(end, error, level="WARN", pid=pid, tid=tid)
        self.line(end, f"/srv/app/app/jobs/{cls.lower()}.rb:5:in `perform'", level="WARN", pid=pid, tid=tid)
        self.lines.append("/srv/app/vendor/bundle/ruby/3.3.0/gems/sidekiq-7.2.4/lib/sidekiq/processor.rb:220:in `execute_job'")

    def events(self) -> List[Event]:
        parser = SidekiqParser("sidekiq.log")
        out: List[Event] = []
        for n, line in enumerate(self.lines, 1):
            out.extend(parser.feed(line, n))
        out.extend(parser.finish())
        return sorted(out, key=lambda e: e.ts or 0.0)


def run(events: List[Event], settings: Optional[SidekiqFailuresSettings] = None, extra: Optional[List[Event]] = None,
        **facts) -> List[Finding]:  # type: ignore[no-untyped-def]
    from detectors.base import AppFacts, DetectorContext

    detector = SidekiqFailuresDetector(settings, DetectorContext(facts=AppFacts(**facts)))
    pipeline = Pipeline([detector])
    stream = sorted(events + (extra or []), key=lambda e: e.ts or 0.0)
    found: List[Finding] = []
    for event in stream:
        found.extend(pipeline.feed(event))
    found.extend(pipeline.flush(None))
    return merge_findings(found)


def background(log: Log, start: float, end: float, cls: str = "OkJob", every: float = 20.0) -> None:
    """A healthy class doing work all along, so the process is visibly alive."""
    t = start
    while t < end:
        log.job(t, cls, f"ok{int(t):08x}ffffffffffffffff")
        t += every


# ----- real logs ------------------------------------------------------------------------------


def test_real_corpus_log_raises_no_critical_incident():
    found = incidents([CORPUS])
    assert found, "the corpus has one failure and three crashes: something should be said"
    assert [f.severity for f in found if f.severity == "critical"] == []


def test_corpus_one_off_record_not_found_is_a_warning_with_triage_pointing_at_the_worker():
    [f] = by_subject(incidents([CORPUS]), job_class="UserStatWorker")
    assert f.severity == "warning" and f.subject == {"job_class": "UserStatWorker", "error_class": "ActiveRecord::RecordNotFound", "queue": "default"}
    assert f.count == 1 and [e.line for e in f.evidence] == [27341]
    assert "app/workers/user_stat_worker.rb:6" in f.triage.likely_cause and "deleted" in f.triage.likely_cause
    assert any("j.display_class == 'UserStatWorker'" in c and "each(&:retry)" in c for c in f.triage.containment)
    assert f.details["signals"] == ["new_error"] and f.details["class_succeeded_in_window"] is True


def test_corpus_sighup_crashes_and_a_vanished_process_are_one_warning_incident():
    [f] = by_subject(incidents([CORPUS]), component="sidekiq")
    assert f.severity == "warning" and f.subject == {"component": "sidekiq", "problem": "unclean_exit"}
    assert f.count == 4  # 3 "bundler: failed to load command" crashes + 1 process gone without Bye!
    assert any(e.line == 13774 for e in f.evidence)


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_always_failing_burst_reaching_the_dead_set_is_one_critical_incident(setup):
    found = incidents([E2E / setup / "sidekiq.log"])
    [f] = by_subject(found, job_class="AlwaysFailsJob")
    assert f.severity == "critical" and f.subject["error_class"] == "PaymentGatewayError"
    assert f.count == 40 and f.details["dead"] == 20 and f.details["jobs"] == 20
    assert {"failing_100pct", "retry_storm", "dead"} <= set(f.details["signals"])
    assert "dead set" in f.triage.summary and "app.rb" in f.triage.likely_cause


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_activejob_failure_is_reported_under_the_wrapped_class_as_a_warning(setup):
    found = incidents([E2E / setup / "sidekiq.log"])
    [f] = by_subject(found, job_class="ReportExportJob")
    assert f.severity == "warning" and f.subject["error_class"] == "NoMethodError"
    assert f.details["dead"] == 2 and not by_subject(found, job_class="ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper")


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_healthy_phase_with_a_flaky_job_that_recovers_yields_nothing(setup):
    phases = [json.loads(l) for l in (E2E / setup / "phases.jsonl").read_text().splitlines() if l.strip()]
    healthy = next(p for p in phases if p["phase"] == "healthy")
    start, end = parse_iso(healthy["start"]), parse_iso(healthy["end"])
    log = (E2E / setup / "sidekiq.log").read_text()
    assert healthy["flaky_jid"] in log and "FlakyOnceJob" in log  # the phase does contain a failure
    assert incidents([E2E / setup / "sidekiq.log"], since=start - 5, until=end) == []


@pytest.mark.parametrize("setup", E2E_SETUPS)
def test_e2e_whole_log_has_no_incident_for_the_flaky_or_the_8_second_job(setup):
    found = incidents([E2E / setup / "sidekiq.log"])
    assert {f.subject.get("job_class") for f in found} == {"AlwaysFailsJob", "ReportExportJob"}


# ----- failures: what is and is not an incident ------------------------------------------------


def test_a_burst_of_flaky_jobs_that_fail_once_and_recover_on_retry_is_not_an_incident():
    log = Log()
    background(log, 0, 900)
    for i in range(30):  # more failures than a retry storm needs, all recovered ~20 s later
        jid = f"{i:024x}"
        log.job(100 + i * 0.1, "SyncJob", jid, error="Net::ReadTimeout: Net::ReadTimeout with #<TCPSocket:(closed)>")
        log.job(122 + i * 0.1, "SyncJob", jid)
    assert run(log.events()) == []


def test_the_same_burst_without_recovery_is_a_critical_retry_storm():
    log = Log()
    background(log, 0, 900)
    for i in range(30):
        log.job(100 + i * 0.1, "SyncJob", f"{i:024x}", error="Net::ReadTimeout: Net::ReadTimeout with #<TCPSocket:(closed)>")
    [f] = run(log.events())
    assert f.severity == "critical" and f.subject == {"job_class": "SyncJob", "error_class": "Net::ReadTimeout", "queue": "default"}
    assert "failing_100pct" in f.details["signals"] and "retry_storm" in f.details["signals"] and f.count == 30
    assert "downstream dependency" in f.triage.likely_cause


def test_a_one_off_failure_of_an_error_class_already_seen_is_not_an_incident():
    log = Log()
    background(log, 0, 7200)
    log.job(100, "SyncJob", "a" * 24, error="Net::ReadTimeout: slow")  # known from here on (it recovers)
    log.job(125, "SyncJob", "a" * 24)
    log.job(5000, "SyncJob", "b" * 24, error="Net::ReadTimeout: slow")  # never recovers, but is not new
    assert run(log.events()) == []


def test_a_single_unrecovered_failure_of_a_new_error_class_is_only_a_warning():
    log = Log()
    background(log, 0, 900)
    log.job(100, "InvoiceJob", "c" * 24, error="Stripe::CardError: Your card was declined.", retry_count=3)
    [f] = run(log.events())
    assert f.severity == "warning" and f.details["signals"] == ["new_error"] and f.details["retry_count_max"] == 3
    assert "~20 more days" in f.triage.summary or "more days" in f.triage.summary


def test_a_new_error_first_seen_after_a_deploy_names_the_deploy():
    log = Log()
    background(log, 0, 3600)
    log.job(2000, "InvoiceJob", "d" * 24, error="NoMethodError: undefined method `total' for nil")
    deploy = Deploy(ts=T0 + 1900, source="REVISION", line=1, raw="abc123", revision="abc123")
    [f] = run(log.events(), extra=[deploy])
    assert f.severity == "warning" and "since the deploy" in f.details["new_error"]
    assert "abc123" in f.triage.likely_cause and "code bug" in f.triage.likely_cause


def test_a_class_failing_100_percent_over_five_jobs_is_critical_even_without_a_storm():
    log = Log()
    background(log, 0, 900)
    for i in range(5):
        log.job(100 + i * 10, "ExportJob", f"e{i:023x}", error="Errno::ENOSPC: No space left on device")
    [f] = run(log.events())
    assert f.severity == "critical" and f.details["signals"] == ["failing_100pct", "new_error"]


def test_four_failures_of_a_class_that_otherwise_succeeds_are_not_critical():
    log = Log()
    background(log, 0, 900)
    for i in range(4):
        log.job(100 + i * 10, "ExportJob", f"e{i:023x}", error="Errno::ENOSPC: No space left on device")
        log.job(105 + i * 10, "ExportJob", f"f{i:023x}")
    assert [f.severity for f in run(log.events())] == ["warning"]


def test_one_dead_job_is_a_warning_and_five_in_the_window_are_critical():
    one, five = Log(), Log()
    for log, n in ((one, 1), (five, 5)):
        background(log, 0, 1500)
        log.job(50, "MailJob", "m" * 24, error="Net::SMTPFatalError: 550 mailbox unavailable")  # makes the error known
        log.job(75, "MailJob", "m" * 24)
        for i in range(n):
            log.job(1000 + i, "MailJob", f"{i:024x}", error="Net::SMTPFatalError: 550 mailbox unavailable", retry_count=24, dead=True)
            log.job(1002 + i, "MailJob", f"n{i:023x}")
    [warning] = run(one.events())
    [critical] = run(five.events())
    assert warning.severity == "warning" and warning.details["signals"] == ["dead"]
    assert critical.severity == "critical" and critical.details["dead"] == 5
    assert any("DeadSet" in c for c in critical.triage.containment)


def test_a_failure_rate_spike_against_the_class_baseline_is_a_warning():
    log = Log()
    background(log, 0, 4000, cls="FeedJob", every=10)  # ~400 successes: the baseline
    log.job(50, "FeedJob", "k" * 24, error="Feedjira::NoParserAvailable: no parser")  # known error, recovered
    log.job(60, "FeedJob", "k" * 24)
    for i in range(6):
        log.job(3000 + i * 20, "FeedJob", f"s{i:023x}", error="Feedjira::NoParserAvailable: no parser")
    [f] = run(log.events())
    assert f.severity == "warning" and f.details["signals"] == ["rate_spike"]


def test_jobs_killed_by_a_shutdown_are_not_failures():
    log = Log()
    log.job(0, "LongJob", "l" * 24, finish=False)
    log.line(30, "Shutting down")
    log.line(55, "Terminating 1 busy worker threads", level="WARN")
    log.line(55.1, "fail", " class=LongJob jid=" + "l" * 24 + " elapsed=55.1", tid="t1")
    log.line(55.2, "Bye!")
    assert run(log.events()) == []


# ----- long and stuck jobs ----------------------------------------------------------------------


def test_a_job_far_slower_than_its_class_usually_is_a_slow_warning():
    log = Log()
    for i in range(30):
        log.job(i * 10, "ReportJob", f"r{i:023x}", elapsed=1.0)
    log.job(400, "ReportJob", "z" * 24, elapsed=95.0)
    [f] = run(log.events())
    assert f.severity == "warning" and f.subject == {"job_class": "ReportJob", "problem": "long_running"}
    assert f.details["signals"] == ["slow"] and f.details["slowest_s"] == 95.0


def test_a_class_that_always_takes_two_minutes_is_not_slow():
    log = Log()
    for i in range(30):
        log.job(i * 200, "ReportJob", f"r{i:023x}", elapsed=120.0)
    assert run(log.events()) == []


def test_a_job_started_and_never_finished_while_its_process_keeps_working_is_stuck():
    log = Log()
    log.job(10, "ImportJob", "i" * 24, finish=False)
    background(log, 0, 2 * 3600)
    [f] = run(log.events())
    assert f.severity == "warning" and "stuck" in f.details["signals"] and f.evidence[0].line == 1
    assert any("TTIN" in c for c in f.triage.containment)


def test_a_started_job_in_a_log_that_just_ends_is_not_stuck():
    log = Log()
    background(log, 0, 600)
    log.job(610, "ImportJob", "i" * 24, finish=False)
    assert run(log.events()) == []


def test_every_thread_of_a_process_stuck_is_critical():
    log = Log()
    for i in range(3):
        log.job(10 + i, "ImportJob", f"i{i:023x}", finish=False)
    background(log, 0, 2 * 3600)
    [f] = run(log.events(), sidekiq_concurrency=3)
    assert f.severity == "critical" and "all_threads_stuck" in f.details["signals"]


# ----- Redis and processes ---------------------------------------------------------------------


def _redis_outage(seconds: float) -> Log:
    log = Log()
    background(log, 0, 600)
    log.line(100, "Error fetching job: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)", level="ERROR", tid="f1")
    log.line(100, "Redis::CannotConnectError: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)", level="WARN", tid="f1")
    log.line(100 + seconds, f"Redis is online, {seconds} sec downtime", tid="f1")
    return log


def test_a_redis_blip_is_a_warning_and_an_outage_is_critical():
    [blip] = run(_redis_outage(1.2).events())
    [outage] = run(_redis_outage(45.0).events())
    assert blip.severity == "warning" and blip.subject == {"component": "redis"} and blip.count == 2
    assert outage.severity == "critical" and outage.details["longest_downtime_s"] == 45.0


def _crash(log: Log, t: float, pid: int) -> None:
    log.line(t, "Booted Rails 7.1.3 application in production environment", pid=pid)
    log.job(t + 1, "OkJob", f"{pid:024x}", pid=pid)
    log.lines.append("bundler: failed to load command: sidekiq (/srv/app/bin/sidekiq)")
    log.lines.append("SignalException: SIGHUP")
    log.lines.append("  /srv/app/vendor/bundle/ruby/3.3.0/gems/sidekiq-7.2.4/lib/sidekiq/cli.rb:58:in `write'")


def test_one_crash_is_a_warning_and_three_within_fifteen_minutes_are_critical():
    one, three = Log(), Log()
    _crash(one, 0, 101)
    for i in range(3):
        _crash(three, i * 120, 101 + i)
    [warning] = run(one.events())
    [critical] = run(three.events())
    assert warning.severity == "warning" and critical.severity == "critical"
    assert critical.count == 3 and critical.subject == {"component": "sidekiq", "problem": "unclean_exit"}


def test_a_process_replaced_without_bye_vanished_but_a_clean_restart_or_a_sibling_did_not():
    killed, clean, siblings = Log(), Log(), Log()
    for log in (killed, clean, siblings):
        log.line(0, "Booted Rails 7.1.3 application in production environment", pid=1)
        log.job(5, "OkJob", "a" * 24, pid=1)
    clean.line(50, "Shutting down", pid=1)
    clean.line(51, "Bye!", pid=1)
    for log in (killed, clean, siblings):
        log.line(60, "Booted Rails 7.1.3 application in production environment", pid=2)
    t = 70.0
    while t < 2000:
        for log in (killed, clean, siblings):
            log.job(t, "OkJob", f"{int(t):024x}", pid=2)
        siblings.job(t + 1, "OkJob", f"b{int(t):023x}", pid=1)
        t += 30
    [f] = run(killed.events())
    assert f.severity == "warning" and f.details["exits"][0]["how"] == "vanished" and f.details["exits"][0]["pid"] == "1"
    assert run(clean.events()) == [] and run(siblings.events()) == []


# ----- metrics, incremental output, bounded state -------------------------------------------------


def test_retry_set_growth_and_queue_latency_metrics():
    ms = [Metric(ts=T0 + i * 30, source="poll:sidekiq", name="sidekiq.retry_size", value=10 + i * 150) for i in range(8)]
    ms += [Metric(ts=T0 + i * 30, source="poll:sidekiq", name="sidekiq.queue_latency_s", labels={"queue": "mailers"}, value=v)
           for i, v in enumerate([2, 400, 3, 700, 720])]
    found = run([], extra=ms)
    severities = {f.subject.get("problem"): f.severity for f in found}
    assert severities == {"retry_set_growth": "critical", "queue_latency": "critical"}
    assert by_subject(found, problem="queue_latency")[0].subject["queue"] == "mailers"


def test_dead_set_growth_is_not_paged_again_when_the_logs_already_show_those_dead_jobs():
    dead_size = [Metric(ts=T0 + i * 30, source="poll:sidekiq", name="sidekiq.dead_size", value=i * 10) for i in range(6)]
    alone = run([], extra=dead_size)
    assert [(f.subject.get("problem"), f.severity) for f in alone] == [("dead_set_growth", "critical")]
    log = Log()
    for i in range(6):  # the same dead jobs, as sidekiq.log tells them
        log.job(5 + i * 20, "ChargeJob", f"{i:024x}", error="Stripe::APIConnectionError: timeout", retry_count=25, dead=True)
    both = run(log.events(), extra=dead_size)
    assert not by_subject(both, problem="dead_set_growth")
    assert by_subject(both, job_class="ChargeJob")[0].severity == "critical"


def test_periodic_flushes_report_only_new_failures_so_merged_counts_are_exact():
    log = Log()
    background(log, 0, 3000)
    for i in range(60):  # one unrecovered failure every 40 s for 40 minutes
        log.job(100 + i * 40, "SyncJob", f"{i:024x}", error="Net::ReadTimeout: slow")
    [f] = run(log.events())  # the pipeline flushes every 60 s of event time
    assert f.count == 60 and f.severity == "critical"


def test_state_stays_bounded_on_a_long_stream_of_distinct_jobs():
    settings = SidekiqFailuresSettings(max_jobs_tracked=100)
    detector = SidekiqFailuresDetector(settings)
    log = Log()
    for i in range(2000):
        log.job(i, "SyncJob", f"{i:024x}", error="Net::ReadTimeout: slow")
    for event in log.events():
        detector.feed(event)
    assert len(detector.failed) <= 100 and len(detector.known_errors) <= 100 and len(detector.settled) <= 100
    detector.flush(None)


def test_top_app_frame_skips_gems_and_ruby():
    frames = ("/srv/bundle/ruby/3.3.0/gems/activerecord-7.1/lib/active_record/core.rb:1:in `find'",
              "/usr/lib/ruby/3.3.0/net/http.rb:5:in `read'", "/srv/app/releases/1/app/jobs/a_job.rb:6:in `perform'")
    assert top_app_frame(frames) == frames[2]
    assert 19 < retry_days_left(None) < 22 and retry_days_left(24) == 0.0


def test_a_dead_line_seen_before_its_fail_counts_the_job_once():
    log = Log()
    background(log, 0, 100)  # the log ends right after: the fails must not wait for the recovery grace
    for i in range(5):
        log.job(100 + i, "MailJob", f"{i:024x}", error="Net::SMTPFatalError: 550 mailbox unavailable", retry_count=24, dead=True)
    events = log.events()
    for dead in [e for e in events if getattr(e, "state", "") == "dead"]:  # as if another file's clock ran 1 ms behind
        dead.ts = (dead.ts or 0.0) - 0.5
    [f] = run(events)
    assert f.details["dead"] == 5 and f.count == 5 and f.details["jobs"] == 5


def test_puma_process_events_are_not_sidekiq_restarts():
    from agent.events import Process

    boots = [Process(ts=T0 + i * 10, source="puma.log", line=i + 1, raw="- Worker 0 (PID: %d) booted" % i, component="puma",
                     state="boot", pid=str(1000 + i)) for i in range(20)]
    crashes = [Process(ts=T0 + 300 + i, source="puma.log", line=30 + i, raw="! Terminating timed out worker", component="puma",
                       state="worker_timeout", pid=str(1000 + i)) for i in range(5)]
    assert run([], extra=boots + crashes) == []


# ----- the detector's parts (state, health signals, triage modules) stay wired and bounded -----------


def test_registry_builds_the_detector_with_its_settings_from_the_main_module():
    from detectors import REGISTRY

    assert REGISTRY["sidekiq_failures"] is SidekiqFailuresDetector
    assert SidekiqFailuresDetector.settings_type is SidekiqFailuresSettings


def test_running_and_process_tables_of_the_health_part_keep_their_cap():
    log = Log()
    for i in range(40):  # 40 jobs started on 40 processes, none finishes
        log.job(float(i), "SlowJob", f"j{i:023x}", pid=100 + i, finish=False)
    detector = SidekiqFailuresDetector(SidekiqFailuresSettings(max_jobs_tracked=10))
    for event in log.events():
        detector.feed(event)
    assert len(detector.health.running) == 10 and len(detector.health.procs) == 10
    assert [job.jid for job in detector.health.running.values()][-1] == f"j{39:023x}"  # the newest are kept
