"""`railwatch demo`: the shipped real logs of the three failures, replayed into the live daemon,
open one incident per problem, each with a bundle; and the replay keeps each log's record order."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

from agent.demo import LOGS, demo_lines, replay, timeline


def test_demo_opens_incidents_for_all_three_failures_with_bundles(tmp_path):
    state = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "agent", "demo", "--state-dir", str(state), "--speed", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "▶ incident open: ActiveRecord connection pool exhausted" in out
    assert "▶ incident open: N+1 on PostsController#index" in out
    assert "▶ incident open: Sidekiq AlwaysFailsJob" in out
    assert "[CRITICAL] ActiveRecord connection pool exhausted" in out and "[CRITICAL] Sidekiq AlwaysFailsJob" in out
    bundles = sorted(state.glob("incidents/*/bundle.tar.gz"))
    assert len(bundles) >= 3
    with tarfile.open(bundles[0]) as tar:
        assert any(m.name.endswith("/triage.md") for m in tar.getmembers())
    for bundle in bundles:
        assert str(bundle) in out
    # the demo's logs were written progressively into its own directory, whole
    for name in LOGS:
        assert (state / "logs" / name).read_text(encoding="utf-8") == "".join(demo_lines(name))


def test_multiline_records_stay_whole_and_each_log_keeps_its_order(tmp_path):
    logs = {name: demo_lines(name) for name in LOGS}
    records = timeline(logs)
    starts = {name: min(r[0] for r in records if r[1] == name) for name in LOGS}
    assert records[0][0] == min(starts.values())
    for name in LOGS:
        assert "".join(r[2] for r in records if r[1] == name) == "".join(logs[name])
    # a Sidekiq failure's backtrace is one record with its first line
    assert any(r[1] == "sidekiq.log" and "app.rb:285:in `perform'\n/usr/share/" in r[2] for r in records)
    pauses = []
    for name in LOGS:
        open(os.path.join(tmp_path, name), "w").close()
    written = replay(records, str(tmp_path), speed=10.0, sleep=pauses.append)
    assert written == len(records)
    assert pauses and max(pauses) <= 1.0  # long quiet stretches are cut short
    assert 1 < sum(pauses) < 10  # the ~55 s of logs, 10x faster, minus cut pauses
