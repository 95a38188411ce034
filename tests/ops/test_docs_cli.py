"""The README's two commands as .ci/run runs them and as the program prints today; the man page
generated from the current CLI; shell completion as documented (issue 17 items 1 and 6)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from agent.cli import cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"


def quick_start_block() -> str:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return section


def test_ci_runs_exactly_the_readmes_test_command():
    assert "    " + TEST_COMMAND + "\n" in quick_start_block()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci
    assert "bash tests/ops/install-prometheus.sh" in ci


def test_the_quick_start_uses_a_venv_and_names_both_directories():
    block = quick_start_block()
    first = re.search(r"^    (python3 -m venv \.venv && \.venv/bin/pip install \. && \.venv/bin/railwatch scan .*)$", block, re.M)
    assert first and "/srv/app/log/production.log*" in first.group(1)
    assert "python3 -m pip install" not in block  # PEP 668: refused on Debian 12 / Ubuntu 24.04's Python
    assert "python3-venv" in block


def test_the_quick_start_output_is_what_scan_prints_today():
    block = quick_start_block()
    shown = block.split("$ python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/railwatch scan tests/fixtures/logs/e2e/info/*.log\n", 1)[1]
    shown_lines = []
    for line in shown.splitlines():
        if line.strip() == "…":
            break
        shown_lines.append(line[4:])
    logs = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "fixtures" / "logs" / "e2e" / "info").glob("*.log"))
    result = CliRunner().invoke(cli, ["scan", *logs], catch_exceptions=False)
    assert result.exit_code == 1  # critical incidents, as the README says
    actual = result.output.splitlines()[: len(shown_lines)]
    # the elapsed time is the only figure that may differ from run to run
    norm = lambda lines: [re.sub(r"\d+\.\d s$", "T s", l) for l in lines]  # noqa: E731
    assert norm(shown_lines) == norm(actual)


def all_commands(group: click.Group, prefix: str = "railwatch"):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield f"{prefix} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, f"{prefix} {name}")


def test_the_man_page_is_generated_from_the_current_cli(tmp_path):
    page = tmp_path / "railwatch.1"
    run = subprocess.run([sys.executable, str(REPO / "packaging" / "gen_manpage.py"), str(page)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = page.read_text()
    assert text.startswith(".TH RAILWATCH 1 ")
    commands = list(all_commands(cli))
    assert {"railwatch status", "railwatch scan", "railwatch run", "railwatch incidents list"} <= {p for p, _ in commands}
    for path, cmd in commands:
        assert ".SS " + path.replace("-", "\\-") + "\n" in text, path
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[0].replace("-", "\\-") in text, (path, param.opts[0])
    assert "_RAILWATCH_COMPLETE=bash_source" in text
    groff = shutil.which("groff")
    if groff:  # renders without warnings
        render = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert render.returncode == 0 and not render.stderr.strip(), render.stderr


def test_bash_completion_as_documented():
    assert "_RAILWATCH_COMPLETE=bash_source railwatch" in README
    env = dict(os.environ, _RAILWATCH_COMPLETE="bash_source")
    run = subprocess.run([sys.executable, "-c", "from agent.cli import main; main()"], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "_railwatch_completion" in run.stdout and "complete " in run.stdout
    words = dict(os.environ, _RAILWATCH_COMPLETE="bash_complete", COMP_WORDS="railwatch sta", COMP_CWORD="1")
    done = subprocess.run([sys.executable, "-c", "from agent.cli import main; main()"], capture_output=True, text=True, env=words)
    assert "plain,status" in done.stdout.splitlines()
