"""`railwatch scan` starts without importing the engine's heavy or daemon-only modules (issue 18).

Not a timed test: it checks *what* is imported, which is what the start-up time follows.
"""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from agent.cli import LAZY_COMMANDS, cli
from agent.cli_names import DEFAULT_STATE_DIR, LOG_FORMAT_NAMES
from agent.config import DEFAULT_STATE_DIR as CONFIG_STATE_DIR
from agent.parsers import BY_NAME

NOT_FOR_SCAN_HELP = ("agent.config", "agent.daemon", "agent.incidents", "agent.sinks", "agent.parsers", "agent.events", "detectors")


def test_cli_names_agree_with_the_engine() -> None:
    assert LOG_FORMAT_NAMES == tuple(sorted(BY_NAME))
    assert DEFAULT_STATE_DIR == CONFIG_STATE_DIR


def test_scan_help_imports_no_daemon_or_engine_module() -> None:
    code = (
        "import sys, json\n"
        "from agent.cli import cli\n"
        "try:\n    cli(['scan', '--help'], prog_name='railwatch')\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--log-format" in done.stdout
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.startswith(NOT_FOR_SCAN_HELP)]
    assert heavy == []


def test_every_lazy_command_loads_and_is_listed() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in LAZY_COMMANDS:
        assert name in result.output
        assert CliRunner().invoke(cli, [name, "--help"]).exit_code == 0
