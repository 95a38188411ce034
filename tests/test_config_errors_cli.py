"""A bad detector setting is refused the same way by ``config check``, ``run`` and ``scan --config``:
one ``railwatch: <dotted path>: <problem>`` line per problem, every problem at once, exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import cli_runner

from agent.cli import cli

LOG = Path(__file__).resolve().parent / "fixtures" / "logs" / "e2e" / "info" / "production.log"

BAD = {
    "wrong type": ('ignore_tables = "users"', "detectors.n_plus_one.ignore_tables: expected a list of strings, got 'users'"),
    "out of range": ("min_repeats = 0", "detectors.n_plus_one.min_repeats: expected at least 1, got 0"),
    "unknown key": ("min_repeat = 8", "detectors.n_plus_one.min_repeat: unknown option (did you mean 'min_repeats'?)"),
    "not finite": ("request_timeout_s = inf", "detectors.n_plus_one.request_timeout_s: expected a finite number, got inf"),
}


def commands(config: Path, tmp: Path):  # type: ignore[no-untyped-def]
    return {
        "config check": ["config", "check", str(config)],
        "run": ["run", "--config", str(config), "--state-dir", str(tmp / "state")],
        "scan": ["scan", "--config", str(config), str(LOG)],
    }


def refused(args) -> list:  # type: ignore[no-untyped-def]
    result = cli_runner().invoke(cli, args)
    assert result.exit_code == 2, (args, result.output)
    return [line for line in result.stderr.splitlines() if line.startswith("railwatch: detectors.")]


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_command_refuses_a_bad_detector_setting_with_the_same_line(case, tmp_path):
    setting, message = BAD[case]
    config = tmp_path / "railwatch.toml"
    config.write_text(f'[[sources]]\npath = "{LOG}"\n\n[detectors.n_plus_one]\n{setting}\n')
    for name, args in commands(config, tmp_path).items():
        assert refused(args) == [f"railwatch: {message}"], name


def test_every_problem_is_listed_at_once_and_identically(tmp_path):
    config = tmp_path / "railwatch.toml"
    lines = "\n".join(setting for setting, _ in BAD.values())
    config.write_text(f'[[sources]]\npath = "{LOG}"\n\n[detectors.n_plus_one]\n{lines}\n'
                      '\n[detectors.pool_exhaustion]\ncritical_share = 1.5\nenabled = "no"\n')
    outputs = {name: refused(args) for name, args in commands(config, tmp_path).items()}
    expected = sorted([f"railwatch: {m}" for _, m in BAD.values()] + [
        "railwatch: detectors.pool_exhaustion.critical_share: expected at most 1, got 1.5",
        "railwatch: detectors.pool_exhaustion.enabled: expected true or false, got 'no'",
    ])
    for name, got in outputs.items():
        assert sorted(got) == expected, name


def test_scan_without_sources_in_the_file_takes_its_logs_from_the_command_line(tmp_path):
    config = tmp_path / "railwatch.toml"
    config.write_text("[detectors.sidekiq_failures]\nenabled = false\n")
    result = cli_runner().invoke(cli, ["scan", "--config", str(config), "--format", "json", "--fail-on", "never", str(LOG)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["detectors"] == ["n_plus_one", "pool_exhaustion"]  # enabled = false applied
    refused_check = cli_runner().invoke(cli, ["config", "check", str(config)])
    assert refused_check.exit_code == 2 and "sources: no log to follow" in refused_check.stderr
