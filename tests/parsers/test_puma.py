"""The Puma parser on logs built from Puma's format strings, and on lines quoted in Puma issues.

No permissively licensed Puma log exists in the corpus; fixtures/logs/puma/*.log are built
(see PROVENANCE.md there). Lines quoted from GitHub issues come from shared/corpus/ISSUE_QUOTES.md
and carry their URL.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import pytest

from agent.events import Error, Event, Process
from agent.parsers import FORMATS, sniff
from agent.parsers.puma import PumaParser
from agent.sources.replay import iter_events
from agent.timeparse import to_iso

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "puma"
from support import feed_lines, require  # noqa: E402


def feed(lines: Sequence[str], parser: PumaParser = None) -> List[Event]:  # type: ignore[assignment]
    return feed_lines(parser or PumaParser("puma.log"), lines)


def events_of(name: str) -> List[Event]:
    return list(iter_events(str(FIXTURES / name)))


def states(events: Sequence[Event]) -> List[str]:
    return [e.state for e in events if isinstance(e, Process)]


def test_cluster_log_lifecycle_in_order():
    events = events_of("cluster_v6_built.log")
    assert states(events) == ["boot", "worker_boot", "worker_boot", "worker_timeout", "worker_boot", "shutdown", "stopped"]
    assert all(e.component == "puma" for e in events if isinstance(e, Process))


def test_boot_event_summarises_the_header_for_capacity_math():
    boot = events_of("cluster_v6_built.log")[0]
    assert isinstance(boot, Process) and boot.state == "boot" and boot.pid == "14944"
    assert boot.message == (
        "mode=cluster version=6.4.2 min_threads=5 max_threads=5 environment=production master_pid=14944 "
        "workers=2 listening=http://0.0.0.0:3000"
    )
    assert boot.raw.count("\n") == 9 and boot.line == 1


def test_worker_events_carry_the_worker_pid():
    procs = [e for e in events_of("cluster_v6_built.log") if isinstance(e, Process)]
    timeout = next(p for p in procs if p.state == "worker_timeout")
    assert timeout.pid == "14953" and "failed to check in within 60 seconds" in timeout.message
    assert [p.pid for p in procs if p.state == "worker_boot"] == ["14950", "14953", "15102"]


def test_thread_pool_error_and_rack_error_dump_become_errors_with_class_and_backtrace():
    errs = [e for e in events_of("cluster_v6_built.log") if isinstance(e, Error)]
    assert [(e.origin, e.error_class) for e in errs] == [("puma", "ActiveRecord::ConnectionTimeoutError")] * 2
    assert errs[0].message.startswith("could not obtain a connection from the pool within 5.000 seconds")
    dump = errs[1]
    assert dump.line == 17 and dump.raw.count("\n") == 6 and "Handling request" in dump.raw
    assert dump.backtrace[-1] == "/app/app/controllers/posts_controller.rb:7:in `index'" and len(dump.backtrace) == 3
    assert to_iso(dump.ts) == "2024-05-01T12:10:31.000Z"


def test_shutdown_takes_the_time_of_the_shutdown_stamp():
    procs = [e for e in events_of("single_v5_built.log") if isinstance(e, Process)]
    assert [p.state for p in procs] == ["boot", "shutdown", "stopped"]
    assert to_iso(procs[-1].ts) == "2024-05-01T09:20:00.000Z"
    assert "mode=single" in procs[0].message and procs[0].pid == "2231"


def test_graceful_stop_then_shutdown_stamp_is_one_shutdown():
    lines = ["- Gracefully stopping, waiting for requests to finish", "=== puma shutdown: 2024-05-01 09:20:00 +0000 ===", "- Goodbye!"]
    assert states(feed(lines)) == ["shutdown", "stopped"]


def test_error_line_of_the_log_writer():
    # built from log_writer.rb `error` ("ERROR: #{str}") and cluster.rb's message
    (err,) = feed(["[2231] ERROR: No application configured, nothing to run"])
    assert isinstance(err, Error) and err.message == "No application configured, nothing to run" and err.pid == "2231"


def test_failed_app_load_is_one_error_with_rubys_frames():
    events = events_of("boot_crash_built.log")
    (err,) = [e for e in events if isinstance(e, Error)]
    assert (err.error_class, err.message) == ("NameError", "uninitialized constant Payments::Gateway")
    assert err.backtrace[0] == "/app/config/initializers/payments.rb:3:in `<main>'" and len(err.backtrace) == 3
    assert states(events) == ["boot"]


def test_class_message_with_backtrace():
    lines = [
        "ActiveRecord::ConnectionTimeoutError: could not obtain a connection from the pool within 5.000 seconds (waited 5.000 seconds); all pooled connections were in use",
        "/app/vendor/bundle/ruby/3.3.0/gems/activerecord-7.1.3/lib/active_record/connection_adapters/abstract/connection_pool/queue.rb:128:in `block in wait_poll'",
        "/app/app/jobs/report_job.rb:9:in `perform'",
        "Use Ctrl-C to stop",
    ]  # built: Ruby's "Class: message" + backtrace shape
    events = feed(lines)
    assert len(events) == 1 and events[0].backtrace[-1] == "/app/app/jobs/report_job.rb:9:in `perform'"


# -- lines quoted in Puma issues ---------------------------------------------------------------------


def test_every_worker_killed_by_the_master_puma_2_11():
    # https://github.com/puma/puma/issues/671 (quoted in ISSUE_QUOTES.md)
    lines = [
        "[21147] ! Terminating timed out worker: 13143",
        "[21147] ! Terminating timed out worker: 13146",
        "[21147] ! Terminating timed out worker: 13150",
    ]
    events = feed(lines)
    assert states(events) == ["worker_timeout"] * 3 and [e.pid for e in events] == ["13143", "13146", "13150"]


def test_worker_timeout_set_too_low_puma_3_12():
    # https://github.com/puma/puma/issues/1714 (quoted in ISSUE_QUOTES.md)
    lines = [
        "[14944] - Worker 0 (pid: 20045) booted, phase: 0",
        "[14944] ! Terminating timed out worker: 19785",
        "[14944] - Spawned worker: 20155",
        "[14944] - Worker 1 (pid: 20155) booted, phase: 0",
        "[14944] ! Terminating timed out worker: 20045",
        "[14944] - Spawned worker: 20273",
    ]
    parser = PumaParser("puma.log")
    events = feed(lines, parser)
    assert states(events) == ["worker_boot", "worker_timeout", "worker_boot", "worker_timeout"]
    assert parser.unparsed == 0
    assert PumaParser.sniff(lines) == 1.0


def test_newer_boot_line_with_boot_time():
    # https://github.com/puma/puma/issues/2786 (quoted in ISSUE_QUOTES.md)
    (event,) = feed(["[18135] - Worker 0 (PID: 18138) booted in 0.0s, phase: 0"])
    assert (event.state, event.pid) == ("worker_boot", "18138")


# -- sniffing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cluster_v6_built.log", "single_v5_built.log", "boot_crash_built.log"])
def test_puma_fixtures_are_sniffed_as_puma(name):
    lines = (FIXTURES / name).read_text().splitlines()
    parser, score = sniff([l for l in lines[:64] if l.strip()])
    assert parser is PumaParser and score >= 0.5



def test_registered_in_formats():
    assert PumaParser in FORMATS


# -- the reference app's real Puma 5.6.5 log (fixtures/logs/e2e, captured by tests/e2e) ---------------

E2E = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "e2e"


@pytest.mark.parametrize("setup", ["info", "debug", "lograge", "stdout8"])
def test_reference_app_puma_log_gives_boot_with_thread_count_and_shutdown(setup):
    path = E2E / setup / "puma.log"
    require(path)
    parser = PumaParser(str(path))
    events = feed(path.read_text().splitlines(), parser)
    assert states(events) == ["boot", "shutdown"] and parser.unparsed == 0
    boot = events[0]
    assert "mode=single" in boot.message and "max_threads=8" in boot.message and boot.pid.isdigit()
    assert sniff(path.read_text().splitlines())[0] is PumaParser
