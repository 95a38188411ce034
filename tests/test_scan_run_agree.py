"""One pipeline, two drivers: the same logs and the same (non-default) config give the same
incidents through ``railwatch scan --config`` and through the daemon tailing them.

For each logging set-up of the reference app (tests/fixtures/logs/e2e/<setup>/), the logs go
through ``scan --config FILE --open-incidents`` (the CLI, so the config is read the way a user's
is) and, separately, are written into files the daemon tails from the beginning, turned until
it has read everything and shut down (its final flush). Both incident stores must hold the
same fingerprints, with the same severities and counts.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Tuple

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from agent.cli import cli
from agent.config import apply_overrides, load, parse, read_toml
from agent.daemon import Daemon
from agent.incidents.store import IncidentStore
from agent.scan import scan
from agent.testing import FakeClock

E2E = Path(__file__).resolve().parent / "fixtures" / "logs" / "e2e"
LOGS = ("production.log", "sidekiq.log", "puma.log", "sidekiq.stdout.log")

# Thresholds that change what is found, one detector switched off, a shorter quiet period.
CONFIG = """\
[detectors.n_plus_one]
min_repeats = 40
min_repeats_fast = 40
min_total_ms = 5000.0

[detectors.pool_exhaustion]
critical_errors = 40
critical_share = 1.0
share_min_errors = 40

[detectors.sidekiq_failures]
enabled = false

[incidents]
quiet_period_s = 600.0
max_evidence = 5

[collectors.psutil]
enabled = false

[metrics]
listen = "off"

[limits]
read_budget_bytes = 65536  # the daemon reads the logs over many turns, flushing between them, as live
"""

Seen = Dict[str, Tuple[str, int]]  # fingerprint -> (severity, count)


def incidents_in(state: Path) -> Seen:
    store = IncidentStore(str(state))
    try:
        return {i.fingerprint: (i.severity, i.count) for i in store.list_incidents(limit=10_000)}
    finally:
        store.close()


def through_scan(setup: Path, config: Path, state: Path) -> Seen:
    args = ["scan", "--config", str(config), "--open-incidents", "--state-dir", str(state), "--format", "json",
            "--fail-on", "never"] + [str(setup / n) for n in LOGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return incidents_in(state)


def through_daemon(setup: Path, config: Path, tmp: Path) -> Seen:
    logs = tmp / "logs"
    logs.mkdir()
    for n in LOGS:
        shutil.copyfile(setup / n, logs / n)
    state = tmp / "daemon-state"
    data = apply_overrides(read_toml(str(config)), logs=tuple(str(logs / n) for n in LOGS), state_dir=str(state),
                           start="beginning")
    d = Daemon(parse(data, origin=str(config)), clock=FakeClock(), registry=CollectorRegistry())
    d.start()
    try:
        turns = 0
        while d.turn():  # read everything there is, flushing as time passes
            d.clock.advance(0.5)
            turns += 1
        assert turns > 3  # read over several turns (read_budget_bytes)
    finally:
        d.shutdown()  # the final flush, as on SIGTERM
    return incidents_in(state)


@pytest.mark.parametrize("setup", ["info", "debug", "lograge", "stdout8"])
def test_scan_and_the_daemon_open_the_same_incidents_with_the_same_config(setup, tmp_path):
    config = tmp_path / "railwatch.toml"
    config.write_text(CONFIG)
    logs = E2E / setup
    from_scan = through_scan(logs, config, tmp_path / "scan-state")
    from_daemon = through_daemon(logs, config, tmp_path)
    assert from_scan, "the reference app's logs have incidents"
    assert from_daemon == from_scan
    assert "critical" not in {severity for severity, _ in from_daemon.values()}  # critical_errors = 40 applied


@pytest.mark.parametrize("setup", ["info", "debug", "lograge", "stdout8"])
def test_the_config_changes_what_is_found(setup, tmp_path):
    """Guards the test above: the config must matter, or agreeing would prove nothing about it."""
    config = tmp_path / "railwatch.toml"
    config.write_text(CONFIG)
    cfg = load(str(config), require_sources=False)
    paths = [str(E2E / setup / n) for n in LOGS]
    default = {(i.detector, i.fingerprint, i.severity) for i in scan(paths).incidents}
    tuned = {(i.detector, i.fingerprint, i.severity)
             for i in scan(paths, detectors=cfg.enabled_detectors, settings=dict(cfg.detectors)).incidents}
    assert any(d == "sidekiq_failures" for d, _, _ in default) and not any(d == "sidekiq_failures" for d, _, _ in tuned)
    assert tuned != {f for f in default if f[0] != "sidekiq_failures"}, "the thresholds changed nothing"
    assert ("pool_exhaustion", "critical") in {(d, s) for d, _, s in default}
    assert {s for d, _, s in tuned if d == "pool_exhaustion"} == {"warning"}  # 12 errors: below critical_errors = 40
