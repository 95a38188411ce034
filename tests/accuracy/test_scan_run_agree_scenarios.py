"""Every accuracy scenario gives the same incidents through ``scan`` and through the daemon.

The daemon tails copies of the scenario's logs from the beginning over many turns (so it
flushes as live, with the reorder slack) and is shut down (its final flush); ``scan`` reads
them at once. The operator's facts (a REVISION and its time) reach the daemon the way they
do in production: a Rails root with a REVISION file whose mtime is the deploy time.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
from prometheus_client import CollectorRegistry

from agent.config import apply_overrides, parse
from agent.daemon import Daemon
from agent.incidents.store import IncidentStore
from agent.testing import FakeClock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import score  # noqa: E402  (tests/accuracy/score.py)


def _daemon_incidents(truth: Dict, tmp: Path) -> Dict[str, Tuple[str, int]]:
    logs = tmp / "log"
    logs.mkdir()
    copies = []
    for path in score.log_paths(truth):
        copy = logs / Path(path).name
        shutil.copyfile(path, copy)
        copies.append(str(copy))
    data: Dict = {"collectors": {"psutil": {"enabled": False}}, "metrics": {"listen": "off"},
                  "limits": {"read_budget_bytes": 65536}, "detectors": dict(truth.get("settings") or {})}
    facts = truth.get("facts") or {}
    if facts:
        app = tmp / "app"
        app.mkdir()
        (app / "REVISION").write_text(facts["revision"] + "\n")
        os.utime(app / "REVISION", (facts["revision_time"], facts["revision_time"]))
        data["app"] = {"root": str(app)}
    state = tmp / "state"
    d = Daemon(parse(apply_overrides(data, logs=tuple(copies), state_dir=str(state), start="beginning")),
               clock=FakeClock(), registry=CollectorRegistry())
    d.start()
    try:
        while d.turn():
            d.clock.advance(0.5)
    finally:
        d.shutdown()
    store = IncidentStore(str(state))
    try:
        return {i.fingerprint: (i.severity, i.count) for i in store.list_incidents(limit=10_000)}
    finally:
        store.close()


@pytest.mark.parametrize("name", score.scenario_names())
def test_scan_and_the_daemon_agree_on_the_scenario(name, tmp_path):
    truth = score.load_truth(name)
    from agent.scan import scan

    result = scan(score.log_paths(truth), facts=score._facts(truth), settings=score._settings(truth))
    from_scan = {i.fingerprint: i.severity for i in result.incidents}
    from_daemon = {fp: severity for fp, (severity, _) in _daemon_incidents(truth, tmp_path).items()}
    assert from_daemon == from_scan
