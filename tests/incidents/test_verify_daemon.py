"""Fix verification driven by the daemon (in-process, FakeClock) on the reference app's real
debug log: the N+1 incident opens; a deploy marker arrives (POST /deploy, `railwatch deploy`'s
marker file, or a new REVISION); the requests after it are the same log's eager-loaded ones,
logged as the endpoint the deploy fixed; the incident resolves as "fixed in R" at the sink."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import List

from prometheus_client import CollectorRegistry
from support import FIXTURES, require

from agent.config import apply_overrides, parse
from agent.daemon import Daemon
from agent.incidents.deploy_markers import write_marker
from agent.testing import FakeClock
from agent.timeparse import parse_iso

DEBUG = FIXTURES / "e2e" / "debug"
N1 = "PostsController#index"


def _split() -> "tuple[List[str], List[str], float]":
    phases = {d["phase"]: d for d in map(json.loads, require(DEBUG / "phases.jsonl").read_text().splitlines())}
    marker = parse_iso(phases["pool_exhaustion"]["start"])
    before, after = [], []
    for line in require(DEBUG / "production.log").read_text().splitlines(keepends=True):
        ts = parse_iso(line[4:30]) if line[1:3] == ", " else None
        if ts is not None and ts >= marker or after:
            after.append(line.replace("PostsController#index_fixed", N1))  # the deploy made #index eager-load
        else:
            before.append(line)
    return before, after, marker  # type: ignore[return-value]


def _daemon(tmp_path: Path, log: Path, app: str = "") -> Daemon:
    data = {"collectors": {"psutil": {"enabled": False}}, "metrics": {"listen": "127.0.0.1:0"},
            "detectors": {"pool_exhaustion": {"enabled": False}, "sidekiq_failures": {"enabled": False}},
            "incidents": {"verify_min_traffic": 3, "verify_wait_s": 600}}
    if app:
        data["app"] = {"root": app}
    config = parse(apply_overrides(data, logs=(str(log),), state_dir=str(tmp_path / "state"), start="beginning"))
    d = Daemon(config, clock=FakeClock(), registry=CollectorRegistry())
    d.start()
    return d


def _turns(d: Daemon, n: int = 40) -> None:
    for _ in range(n):
        d.clock.advance(1.0)  # type: ignore[attr-defined]
        d.turn()


def _n1(d: Daemon):  # type: ignore[no-untyped-def]
    [inc] = [i for i in d.store.list_incidents() if i.subject == {"endpoint": N1}]
    return inc


def _sink_doc(tmp_path: Path, incident_id: str) -> dict:
    return json.loads((tmp_path / "state" / "incidents" / incident_id / "incident.json").read_text())


def _run(tmp_path: Path, deliver) -> dict:  # type: ignore[no-untyped-def]
    before, after, marker = _split()
    log = tmp_path / "production.log"
    log.write_text("".join(before))
    d = _daemon(tmp_path, log, app=str(tmp_path / "app") if (tmp_path / "app").is_dir() else "")
    try:
        _turns(d)
        inc = _n1(d)
        assert inc.is_open and not inc.verification
        deliver(d, marker)
        _turns(d, 3)
        assert _n1(d).verification["status"] == "verifying"
        with open(log, "a") as fh:
            fh.write("".join(after))
        _turns(d)
        inc = _n1(d)
        d.delivery.drain(5.0)  # type: ignore[union-attr]
        return {"incident": inc, "sink": _sink_doc(tmp_path, inc.id)}
    finally:
        d.shutdown()


def _assert_fixed(result: dict, revision: str) -> None:
    inc = result["incident"]
    assert inc.status == "resolved" and inc.resolved_reason == f"fixed in {revision}"
    v = inc.verification
    assert v["status"] == "fixed" and v["before"]["queries_per_request"] == 31 and v["after"]["queries_per_request"] <= 2
    assert v["summary"].startswith(f"fixed in {revision}: queries per request 31 → ")
    sink = result["sink"]
    assert sink["kind"] == "resolve" and sink["incident"]["verification"]["status"] == "fixed"


def test_post_deploy_on_the_listener_verifies_the_fix(tmp_path: Path):
    def post(d: Daemon, marker: float) -> None:
        body = json.dumps({"revision": "abc123", "at": marker}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{d.server.port}/deploy", data=body, method="POST")  # type: ignore[union-attr]
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 202 and json.loads(r.read())["revision"] == "abc123"

    _assert_fixed(_run(tmp_path, post), "abc123")


def test_a_marker_file_from_railwatch_deploy_verifies_the_fix(tmp_path: Path):
    _assert_fixed(_run(tmp_path, lambda d, marker: write_marker(str(tmp_path / "state"), "v2.0.1", marker)), "v2.0.1")
    assert not list((tmp_path / "state" / "deploys").glob("*.json"))  # consumed


def test_a_new_revision_file_in_the_app_root_verifies_the_fix(tmp_path: Path):
    import os

    app = tmp_path / "app"
    app.mkdir()
    (app / "REVISION").write_text("1111111\n")

    def deploy(d: Daemon, marker: float) -> None:
        (app / "REVISION").write_text("2222222\n")
        os.utime(app / "REVISION", (marker, marker))

    _assert_fixed(_run(tmp_path, deploy), "2222222")


def test_a_restart_after_the_marker_keeps_verifying_from_the_stored_state(tmp_path: Path):
    before, after, marker = _split()
    log = tmp_path / "production.log"
    log.write_text("".join(before))
    d = _daemon(tmp_path, log)
    try:
        _turns(d)
        write_marker(str(tmp_path / "state"), "v3", marker)
        _turns(d, 3)
        assert _n1(d).verification["status"] == "verifying"
    finally:
        d.shutdown()
    with open(log, "a") as fh:
        fh.write("".join(after))
    d = _daemon(tmp_path, log)  # no pre-marker history in memory now: the stored "before" is used
    try:
        _turns(d)
        inc = _n1(d)
        assert inc.resolved_reason == "fixed in v3" and inc.verification["before"]["queries_per_request"] == 31
    finally:
        d.shutdown()
