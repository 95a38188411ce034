"""Fix verification end to end: the reference app (Debian Ruby, Rails 6.1, Puma, Sidekiq; debug
logs, so each request's SQL is measured) serves an N+1 on PostsController#index, ``railwatch run``
opens the incident, then two deploys, each a Puma restart:

1. REVISION rev2 in the app root, the N+1 still there -> escalates as "not fixed by rev2";
2. ``railwatch deploy --revision rev3``, #index now eager-loads (RW_FIXED=n_plus_one)
   -> resolves as "fixed in rev3" with "queries per request 31 → 2".

Both updates reach both sinks configured here (the directory sink and a webhook served by
this test); ``railwatch incidents show`` prints the verification. Marker ``e2e``; skipped
without the stack (a failure under CI=true). About 60 s.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Dict, List

import pytest
from support import REPO

import importlib.util

pytestmark = pytest.mark.e2e

_spec = importlib.util.spec_from_file_location("railwatch_e2e__load", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load.py"))
_load = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_load)  # type: ignore[union-attr]
driver = _load.load("driver")
proc = _load.load("railwatch_proc")

N1 = {"endpoint": "PostsController#index"}


class FixableStack(driver.ReferenceStack):  # type: ignore[misc,name-defined]
    """The reference stack whose next Puma start runs the code with ``fixed`` bugs fixed."""

    fixed = ""

    def env(self, db_pool: int) -> Dict[str, str]:
        env = super().env(db_pool)
        env["RW_FIXED"] = self.fixed
        return env


class Hook(BaseHTTPRequestHandler):
    received: List[Dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _railwatch(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def _show(state: str, incident_id: str) -> Dict[str, Any]:
    return json.loads(_railwatch("incidents", "show", incident_id, "--state-dir", state, "--json"))["incident"]  # type: ignore[no-any-return]


def test_a_deploy_that_keeps_the_n_plus_one_escalates_and_the_one_that_fixes_it_resolves(tmp_path: Path):
    proc.require_prerequisites()
    work, state, app = tmp_path / "stack", str(tmp_path / "state"), tmp_path / "app"
    shutil.copytree(REPO / "tests" / "e2e" / "app" / "config", app / "config")  # the app's facts; REVISION is ours
    (app / "REVISION").write_text("rev1\n")
    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    Hook.received = []
    stack = FixableStack(str(work), "debug", proc.free_port_pair(), redis_url="auto", verbose=False)
    logs = [stack.path("production.log"), stack.path("sidekiq.log")]
    agent = proc.RailwatchAgent(
        state, logs, proc.free_port(), app_root=str(app),
        sinks={"local": {"type": "directory", "path": os.path.join(state, "incidents")},
               "hook": {"type": "webhook", "url": f"http://127.0.0.1:{hook.server_address[1]}/hook"}},
        incidents={"verify_min_traffic": 10, "verify_wait_s": 600})
    agent.start()
    try:
        stack.start()

        def traffic() -> None:
            for _ in range(12):
                assert stack.get("/posts").status_code == 200

        def sink_doc() -> Dict[str, Any]:
            docs = [d for d in agent.incidents().values() if d.get("incident", {}).get("subject") == N1]
            return docs[0] if docs else {}

        traffic()
        doc = proc.wait_until(sink_doc, 60, 0.2, "the N+1 incident at the directory sink")
        incident_id = doc["incident"]["id"]

        # deploy 1: a new REVISION, Puma restarted, the N+1 still there
        stack.restart_puma()
        (app / "REVISION").write_text("rev2\n")
        proc.wait_until(lambda: _show(state, incident_id).get("verification", {}).get("revision") == "rev2", 30, 0.5,
                        "verifying on rev2")
        traffic()
        doc = proc.wait_until(lambda: (sink_doc().get("incident", {}).get("verification", {}).get("status") == "not_fixed"
                                       and sink_doc()), 60, 0.2, "not fixed by rev2 at the sink")
        assert doc["kind"] == "escalate" and doc["incident"]["status"] == "open"
        assert doc["incident"]["verification"]["summary"].startswith("not fixed by rev2: queries per request 31 → 31")

        # deploy 2: the fix, marked with `railwatch deploy`
        stack.fixed = "n_plus_one"
        stack.restart_puma()
        _railwatch("deploy", "--revision", "rev3", "--state-dir", state)
        proc.wait_until(lambda: _show(state, incident_id).get("verification", {}).get("revision") == "rev3", 30, 0.5,
                        "verifying on rev3")
        traffic()
        doc = proc.wait_until(lambda: (sink_doc().get("incident", {}).get("verification", {}).get("status") == "fixed"
                                       and sink_doc()), 60, 0.2, "fixed in rev3 at the sink")
        inc = doc["incident"]
        assert doc["kind"] == "resolve" and inc["status"] == "resolved" and inc["resolved_reason"] == "fixed in rev3"
        v = inc["verification"]
        assert v["summary"].startswith("fixed in rev3: queries per request 31 → 2 over ")  # decided at 10+ requests
        assert (v["before"]["queries_per_request"], v["after"]["queries_per_request"], v["hits"]) == (31, 2, 0)
        assert v["traffic"] >= 10

        proc.wait_until(lambda: any(u["kind"] == "resolve" for u in Hook.received), 30, 0.2, "the webhook's resolve")
        hooked = {u["kind"]: u["incident"]["verification"].get("status") for u in Hook.received
                  if u["incident"]["subject"] == N1}
        assert hooked.get("escalate") == "not_fixed" and hooked.get("resolve") == "fixed"
        shown = _railwatch("incidents", "show", incident_id, "--state-dir", state)
        assert "verified   fixed in rev3: queries per request 31 → 2" in shown
    finally:
        stack.stop()
        agent.stop()
        hook.shutdown()
        hook.server_close()
