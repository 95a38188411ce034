"""`railwatch run` against the live reference stack: Puma, Sidekiq, Postgres and Redis reproduce
each bug while the agent (a real subprocess, `python -m agent run --config …`) tails the app's
production.log and sidekiq.log and samples Puma's control app, Sidekiq's Redis db, Postgres and
the processes. Healthy traffic must stay quiet; each injected failure must open exactly one
incident of the right detector and subject, quickly, with a bundle holding the evidence.

Marker `e2e`. Without Ruby/Puma/Sidekiq, Postgres or Redis the tests skip with a one-line reason,
except under CI=true, where that is a failure. Run with `-rP` (or `-s`) to see the measured
latencies.
"""

import importlib.util
import json
import os
import tarfile
import time

import pytest
import requests

_spec = importlib.util.spec_from_file_location(
    "railwatch_e2e__load", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load.py"))
_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_load)
driver = _load.load("driver")
rp = _load.load("railwatch_proc")

pytestmark = pytest.mark.e2e

LATENCY_BOUND_S = 10.0  # generous on purpose: a loaded 2-core CI machine must not flake
SETTLE_S = 2.0  # after the agent caught up: a few flush turns (limits.flush_interval_s = 0.5 s)


def _collectors(stack):
    return {
        "psutil": {"interval_s": 2.0},
        "puma": {"enabled": True, "url": "http://127.0.0.1:%d" % stack.control_port, "token": "railwatch-e2e",
                 "interval_s": 1.0},
        "sidekiq": {"enabled": True, "redis_url": stack.redis_url, "interval_s": 2.0},
        "postgres": {"enabled": True, "dsn": "postgresql://postgres@127.0.0.1:5432/%s" % stack.db_name,
                     "interval_s": 2.0},
    }


class Run:
    """Everything one stack + agent run produced, for the assertions."""

    def __init__(self):
        self.phases = {}
        self.after_healthy = None
        self.incidents = {}
        self.appeared = {}
        self.first_doc = {}
        self.metrics = ""
        self.healthz = None
        self.exit_code = None
        self.lines = None
        self.agent = None
        self.agent_output = ""


def _settle(agent, logs, timeout=30.0):
    """Wait (bounded) until the agent has read every line the app wrote, then a few flush turns."""
    rp.wait_until(lambda: agent.caught_up(logs), timeout, 0.25, "agent caught up with the logs")
    time.sleep(SETTLE_S)


@pytest.fixture(scope="module")
def info_run(tmp_path_factory):
    rp.require_prerequisites()
    base = tmp_path_factory.mktemp("rw-e2e-agent")
    stack = driver.ReferenceStack(str(base / "app"), "info", rp.free_port_pair(), redis_url="auto", verbose=False)
    run = Run()
    agent = lines = clock = None
    try:
        stack.start()
        logs = [stack.path("production.log"), stack.path("sidekiq.log")]
        agent = rp.RailwatchAgent(str(base / "state"), logs, rp.free_port(), collectors=_collectors(stack),
                                  app_root=driver.APP_DIR)
        run.agent = agent
        lines, clock = rp.LineClock(logs), rp.IncidentClock([agent.incidents_dir])
        lines.start()
        clock.start()
        agent.start()

        run.phases["healthy"] = driver.healthy(stack, 12)
        _settle(agent, logs)
        run.after_healthy = agent.incidents()
        for name in ("n_plus_one", "pool_exhaustion", "sidekiq_failures"):
            time.sleep(2.0)  # a quiet gap between phases, as the driver's --gap
            run.phases[name] = driver.SCENARIOS[name](stack)
        _settle(agent, logs)
        # bounded wait for the four expected incidents (the last one, ReportExportJob's, opens
        # when its job reaches the dead set, at the end of the sidekiq phase)
        rp.wait_until(lambda: len(_by_detector(agent.incidents())) >= 3 and _find(
            agent.incidents(), "sidekiq_failures", job_class="ReportExportJob"), 30, 0.25, "the expected incidents")
        run.metrics = agent.metrics_text()
        r = requests.get(agent.base_url + "/healthz", timeout=5)
        run.healthz = (r.status_code, r.json())
    finally:
        if lines is not None:
            lines.stop()
        if clock is not None:
            clock.stop()
        if agent is not None:
            run.exit_code = agent.stop()
            run.agent_output = agent.output()
        stack.stop()
    run.incidents = agent.incidents()  # after the SIGTERM drain: whatever the final flush added too
    run.appeared = {k[1]: t for k, t in clock.appeared.items()}
    run.first_doc = {k[1]: d for k, d in clock.first_doc.items()}
    run.lines = lines
    return run


def _by_detector(incidents):
    out = {}
    for iid, doc in incidents.items():
        out.setdefault(doc["incident"]["detector"], []).append(iid)
    return out


def _find(incidents, detector, **subject):
    """Incident ids of ``detector`` whose subject includes every ``subject`` item."""
    return [iid for iid, doc in incidents.items() if doc["incident"]["detector"] == detector
            and all(doc["incident"]["subject"].get(k) == v for k, v in subject.items())]


# Incidents the collectors' samples add on top of the log-based ones: the same injected failures
# seen through Redis and psutil, each with its own subject (so its own fingerprint). Listed
# explicitly, with the severity each may have; anything else is an unexpected incident.
#  (none: the collectors' samples confirm the log-based incidents but open none of their own)
METRIC_ECHOES = ()


def _echo(doc):
    inc = doc["incident"]
    return any(inc["detector"] == d and inc["subject"] == subj and inc["severity"] == sev
               for d, subj, sev in METRIC_ECHOES)


def _expected(run):
    inc = run.incidents
    return {
        "pool_exhaustion": _find(inc, "pool_exhaustion", pool="database",
                                 error_class="ActiveRecord::ConnectionTimeoutError"),
        # one incident per endpoint (issue 12): associations and SQL shapes are in its details
        "n_plus_one": [i for i in _find(inc, "n_plus_one", endpoint="PostsController#index")
                       if inc[i]["incident"]["subject"] == {"endpoint": "PostsController#index"}],
        "always_fails": _find(inc, "sidekiq_failures", job_class="AlwaysFailsJob", error_class="PaymentGatewayError"),
        "report_export": _find(inc, "sidekiq_failures", job_class="ReportExportJob", error_class="NoMethodError"),
    }


def _log_lines(doc, run):
    """(written_at, path, line) of the opening update's evidence lines that come from the app's logs."""
    out = []
    for ev in doc["incident"]["finding"].get("evidence", []):
        at = run.lines.written_at(ev["path"], ev["line"]) if ev["path"].startswith("/") else None
        if at is not None:
            out.append((at, ev["path"], ev["line"]))
    return sorted(out)


# ------------------------------------------------------------------------------------------ tests
def test_healthy_traffic_opens_no_incident(info_run):
    assert info_run.phases["healthy"]["status_counts"] == {"200": info_run.phases["healthy"]["requests"]}
    assert info_run.phases["healthy"]["sidekiq"]["failed"] >= 1  # FlakyOnceJob failed once, then recovered
    assert info_run.after_healthy == {}


def test_nothing_is_reported_about_the_healthy_phase_even_after_the_final_flush(info_run):
    # first_seen is log time; the healthy phase ended before any failure was injected
    from agent.timeparse import parse_iso

    healthy_end = parse_iso(info_run.phases["healthy"]["end"])
    early = {i: d["incident"]["subject"] for i, d in info_run.incidents.items()
             if d["incident"]["first_seen"] <= healthy_end}
    assert early == {}


def test_each_injected_failure_opens_exactly_one_incident(info_run):
    print("\nincidents (after the agent's SIGTERM drain):")
    for iid, doc in sorted(info_run.incidents.items(), key=lambda kv: kv[1]["incident"]["opened_at"]):
        inc = doc["incident"]
        print("  %s %-16s %-8s %s" % (iid, inc["detector"], inc["severity"], inc["subject"]))
    expected = _expected(info_run)
    assert {k: len(v) for k, v in expected.items()} == {
        "pool_exhaustion": 1, "n_plus_one": 1, "always_fails": 1, "report_export": 1}
    accounted = {i for ids in expected.values() for i in ids}
    others = {i: d["incident"] for i, d in info_run.incidents.items() if i not in accounted}
    unexpected = {i: (inc["detector"], inc["severity"], inc["subject"]) for i, inc in others.items()
                  if not _echo(info_run.incidents[i])}
    assert unexpected == {}


def test_pool_exhaustion_incident_is_critical_and_names_the_pool_and_the_timeout(info_run):
    (iid,) = _expected(info_run)["pool_exhaustion"]
    inc = info_run.incidents[iid]["incident"]
    assert inc["severity"] == "critical"
    assert inc["subject"] == {"pool": "database", "error_class": "ActiveRecord::ConnectionTimeoutError"}
    assert any("could not obtain a connection from the pool" in e["text"] for e in inc["finding"]["evidence"])
    assert "pool 3 < Puma max threads 8" in inc["finding"]["triage"]["likely_cause"]  # facts from --app's config


def test_n_plus_one_incident_names_posts_index_and_the_author_association(info_run):
    (iid,) = _expected(info_run)["n_plus_one"]
    inc = info_run.incidents[iid]["incident"]
    assert inc["subject"] == {"endpoint": "PostsController#index"}
    assert "Post => [:author]" in inc["finding"]["details"]["associations"]
    assert inc["count"] == info_run.phases["n_plus_one"]["n_plus_one_requests"]
    assert all("USE eager loading detected" in e["text"] for e in inc["finding"]["evidence"])


def test_sidekiq_incidents_name_the_failing_job_classes_and_their_errors(info_run):
    ids = _expected(info_run)
    always = info_run.incidents[ids["always_fails"][0]]["incident"]
    assert always["severity"] == "critical"  # 20 jobs dead within the window
    assert any("PaymentGatewayError" in e["text"] for e in always["finding"]["evidence"])
    # the driver also enqueues 2 ReportExportJob (ActiveJob, NoMethodError, retry: 1): both die,
    # fewer than dead_burst_min, so a warning of its own, never folded into AlwaysFailsJob's
    report = info_run.incidents[ids["report_export"][0]]["incident"]
    assert report["severity"] == "warning"
    assert report["subject"]["queue"] == "default"
    assert any("NoMethodError" in e["text"] for e in report["finding"]["evidence"])


def test_every_incident_has_a_bundle_holding_its_evidence_lines(info_run):
    for iid, doc in info_run.incidents.items():
        path = os.path.join(info_run.agent.incidents_dir, iid, "bundle.tar.gz")
        with tarfile.open(path, "r:gz") as tar:
            files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode("utf-8", "replace")
                     for m in tar.getmembers() if m.isfile()}
        bundled = json.loads(files["incident.json"])
        evidence = bundled["finding"]["evidence"]
        assert evidence, iid
        assert bundled["id"] == iid and bundled["detector"] == doc["incident"]["detector"]
        context = "\n".join(v for k, v in files.items() if k.startswith("evidence/"))
        triage = files["triage.md"]
        for ev in evidence:
            first = ev["text"].split("\n", 1)[0]
            if ev["path"].startswith("/"):  # a log line: quoted with its context, by line number
                assert ("%d | %s" % (ev["line"], first)) in context, (iid, ev["line"])
            else:  # a collector sample
                assert first in triage or first in context, (iid, first)
        # the line that opened it is in the bundle too (the opening update's first evidence line)
        opening = info_run.first_doc.get(iid)
        if opening is not None:
            for ev in opening["incident"]["finding"]["evidence"][:1]:
                assert ev["text"].split("\n", 1)[0] in context + triage, iid


def test_incidents_appear_within_seconds_of_the_triggering_line(info_run):
    """Latency: from the time a poller first saw a line in the app's log to incident.json appearing.
    onset = the first evidence line of the opening update (the failure's first line);
    trigger = its newest evidence line (the line that completed the finding)."""
    figures = {}
    ids = _expected(info_run)
    for name, (iid,) in ids.items():
        doc, appeared = info_run.first_doc[iid], info_run.appeared[iid]
        lines = _log_lines(doc, info_run)
        assert lines, (name, "no evidence line of the opening update was seen in the logs")
        figures[name] = {"onset_s": round(appeared - lines[0][0], 2), "trigger_s": round(appeared - lines[-1][0], 2),
                         "opening_kind": doc["kind"], "opening_severity": doc["incident"]["severity"]}
    print("\nrailwatch run latency, log line written -> incident.json (info set-up):")
    for name, f in figures.items():
        print("  %-16s onset %6.2f s  trigger %6.2f s  (%s, %s)" % (
            name, f["onset_s"], f["trigger_s"], f["opening_kind"], f["opening_severity"]))
    for name, f in figures.items():
        assert 0 <= f["trigger_s"] < LATENCY_BOUND_S, (name, f)
    # ReportExportJob's first failure only becomes an incident when its retry fails too and the
    # job dies, ~15-25 s later (Sidekiq's backoff): its onset is the app's, not the agent's.
    for name in ("pool_exhaustion", "n_plus_one", "always_fails"):
        assert figures[name]["onset_s"] < LATENCY_BOUND_S, (name, figures[name])


def test_metrics_and_healthz_answer_and_every_collector_sampled(info_run):
    code, doc = info_run.healthz
    assert (code, doc["status"], doc["reasons"]) == (200, "ok", []) and "details_error" not in doc, doc
    text = info_run.metrics
    samples = {c: rp.metric_value(text, "railwatch_collector_samples_total", collector=c)
               for c in ("psutil", "puma", "sidekiq", "postgres")}
    errors = {c: rp.metric_value(text, "railwatch_collector_errors_total", collector=c) for c in samples}
    print("\ncollector samples:", samples, "errors:", errors)  # an error (a slow answer under load) is no failure
    assert all(n > 0 for n in samples.values()), samples
    assert rp.metric_value(text, "railwatch_events_total", kind="metric") > 0
    assert rp.metric_value(text, "railwatch_events_total", kind="request") > 0
    assert rp.metric_value(text, "railwatch_open_incidents") >= 4
    assert rp.metric_value(text, "railwatch_sink_deliveries_total", sink="local") >= 4


def test_agent_stops_cleanly_on_sigterm(info_run):
    assert info_run.exit_code == 0
    assert "stopped" in info_run.agent_output.splitlines()[-1]
    assert " level=error " not in info_run.agent_output


def test_dead_jobs_paged_from_the_logs_are_not_paged_again_from_the_dead_set_size(info_run):
    critical = sorted(tuple(sorted(d["incident"]["subject"].items())) for d in info_run.incidents.values()
                      if d["incident"]["detector"] == "sidekiq_failures" and d["incident"]["severity"] == "critical")
    assert critical == [(("error_class", "PaymentGatewayError"), ("job_class", "AlwaysFailsJob"), ("queue", "default"))]


# ------------------------------------------------------------------------------ debug set-up
@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    """The debug set-up (SQL lines with `↳` sources): the N+1 is found from the queries themselves."""
    rp.require_prerequisites()
    base = tmp_path_factory.mktemp("rw-e2e-agent-debug")
    stack = driver.ReferenceStack(str(base / "app"), "debug", rp.free_port_pair(), redis_url="auto", verbose=False)
    run = Run()
    agent = clock = None
    try:
        stack.start()
        logs = [stack.path("production.log"), stack.path("sidekiq.log")]
        agent = rp.RailwatchAgent(str(base / "state"), logs, rp.free_port(), collectors={"psutil": {"enabled": False}},
                                  app_root=driver.APP_DIR)
        run.agent = agent
        clock = rp.IncidentClock([agent.incidents_dir])
        clock.start()
        agent.start()
        run.phases["healthy"] = driver.healthy(stack, 5)
        _settle(agent, logs)
        run.after_healthy = agent.incidents()
        run.phases["n_plus_one"] = driver.n_plus_one(stack)
        _settle(agent, logs)
        rp.wait_until(lambda: _find(agent.incidents(), "n_plus_one"), 20, 0.25, "an n_plus_one incident")
    finally:
        if clock is not None:
            clock.stop()
        if agent is not None:
            run.exit_code = agent.stop()
        stack.stop()
    run.incidents = agent.incidents()
    return run


def test_debug_sql_n_plus_one_is_one_incident_on_the_authors_table(debug_run):
    assert debug_run.after_healthy == {}
    assert debug_run.exit_code == 0
    summary = {i: (d["incident"]["detector"], d["incident"]["subject"]) for i, d in debug_run.incidents.items()}
    (iid,) = summary
    inc = debug_run.incidents[iid]["incident"]
    assert inc["detector"] == "n_plus_one"
    assert inc["subject"] == {"endpoint": "PostsController#index"}
    assert inc["finding"]["details"]["sql_shapes"] == ['SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?']
    assert any('FROM "authors"' in e["text"] for e in inc["finding"]["evidence"])


# ------------------------------------------------------------------- latency under steady traffic
def test_bullet_n_plus_one_is_reported_while_the_n_plus_one_traffic_goes_on(tmp_path):
    """Real lines of one N+1 request of the reference app (fixture of the info set-up), written
    again and again with fresh times and request ids, 3 requests a second, as a busy app would:
    the incident must not wait for the traffic to stop."""
    block = rp.n_plus_one_request("info")
    assert "USE eager loading detected" in block
    log = str(tmp_path / "production.log")
    open(log, "w").close()
    agent = rp.RailwatchAgent(str(tmp_path / "state"), [log], rp.free_port(), collectors={"psutil": {"enabled": False}})
    agent.start()
    seen = []
    try:
        def incident_seen():
            if not seen and agent.incidents():
                seen.append(time.time())
            return bool(seen)

        first = rp.append_requests(log, block, n=27, interval=0.3, stop=incident_seen)  # ~8 s of traffic
    finally:
        agent.stop()
    assert seen and seen[0] - first < 3.0
