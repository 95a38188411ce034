"""The command line: exit codes, report formats and one-line errors, through click's runner."""
from __future__ import annotations

import gzip
import json
from pathlib import Path


from agent import __version__
from agent.cli import cli
from support import cli_runner

RAILS = Path(__file__).resolve().parent / "fixtures" / "logs" / "rails"


runner = cli_runner


def run(*args: str, input: str = None):
    return runner().invoke(cli, list(args), input=input)


def test_scan_of_healthy_logs_exits_0_with_a_text_report():
    result = run("scan", str(RAILS / "rails52_production.log"), str(RAILS / "rails6_production.log"))
    assert result.exit_code == 0, result.output
    assert "rails52_production.log" in result.output and "rails" in result.output
    assert "\x1b[" not in result.output  # no colours when stdout is not a terminal
    assert "Traceback" not in result.output


def test_json_report_keeps_the_public_contract():
    result = run("scan", "--format", "json", str(RAILS / "rails7_development.log"))
    data = json.loads(result.stdout)
    assert data["railwatch_version"] == __version__
    (f,) = data["files"]
    assert set(f) >= {"path", "format", "lines", "unparsed"}
    assert f["format"] == "rails" and f["lines"] == 195
    assert isinstance(data["incidents"], list)


def test_markdown_report_has_a_file_table():
    result = run("scan", "--format", "markdown", str(RAILS / "rails3_partials.log"))
    assert "| file | format | lines | unparsed |" in result.stdout


def test_missing_file_is_one_line_on_stderr_and_the_rest_is_still_scanned(tmp_path):
    result = run("scan", "--format", "json", str(tmp_path / "nope.log"), str(RAILS / "rails3_partials.log"))
    assert result.exit_code == 0
    assert f"railwatch: {tmp_path / 'nope.log'}: no such file or directory\n" in result.stderr
    assert json.loads(result.stdout)["files"][0]["lines"] == 13


def test_nothing_readable_exits_2(tmp_path):
    result = run("scan", str(tmp_path / "nope.log"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_format_file_is_reported_and_skipped(tmp_path):
    odd = tmp_path / "access.log"
    odd.write_text('127.0.0.1 - - [23/Nov/2009 22:46:22] "GET / HTTP/1.1" 200 5056 0.0241\n' * 10)
    result = run("scan", "--format", "json", str(odd), str(RAILS / "rails3_partials.log"))
    assert result.exit_code == 0
    assert "access.log: unknown log format" in result.stderr
    files = json.loads(result.stdout)["files"]
    assert files[0] == {"path": str(odd), "format": "unknown", "lines": 10, "unparsed": 10, "envelope": None}


def test_binary_garbage_is_an_unknown_format_not_a_crash(tmp_path):
    junk = tmp_path / "core.log"
    junk.write_bytes(bytes(range(256)) * 4000)
    result = run("scan", str(junk))
    assert result.exit_code == 2
    assert "unknown log format" in result.stderr and "Traceback" not in result.output


def test_truncated_gzip_is_reported_and_its_lines_still_count(tmp_path):
    data = (RAILS / "rails52_production.log").read_bytes() * 200
    packed = gzip.compress(data)
    broken = tmp_path / "production.log.1.gz"
    broken.write_bytes(packed[: len(packed) * 2 // 3])
    result = run("scan", "--format", "json", str(broken))
    assert result.exit_code == 0, result.output
    assert "damaged or truncated" in result.stderr
    (f,) = json.loads(result.stdout)["files"]
    assert f["format"] == "rails" and f["lines"] > 1000


def test_stdin_is_read_with_dash():
    text = (RAILS / "rails3_partials.log").read_text()
    result = run("scan", "--format", "json", "-", input=text)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["files"][0]["lines"] == 13


def test_usage_errors_exit_2_with_one_line():
    result = run("scan", "--detector", "no_such_detector", str(RAILS / "rails3_partials.log"))
    assert result.exit_code == 2
    assert "unknown detector 'no_such_detector'" in result.stderr
    assert run("scan", "--since", "yesterday-ish", str(RAILS / "rails3_partials.log")).exit_code == 2
    assert run("scan").exit_code == 2


def test_since_and_until_cut_the_timeline():
    whole = json.loads(run("scan", "--format", "json", str(RAILS / "rails52_production.log")).stdout)
    assert whole["files"][0]["lines"] == 133
    result = run("scan", "--since", "2030-01-01", str(RAILS / "rails52_production.log"))
    assert result.exit_code == 0


def test_python_dash_m_agent_is_the_same_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"railwatch, version {__version__}"
