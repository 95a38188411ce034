"""scan's inputs as a new user gives them: relative --since, compressed stdin, a glob that matches nothing."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import _parse_time, cli
from agent.timeparse import parse_iso
from support import cli_runner

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "tests" / "fixtures" / "logs"
POOL_LOG = LOGS / "pool_exhaustion" / "lograge_pool_timeouts.log"  # one pool-exhaustion incident (4 timeouts)
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")


def run(*args: str):
    return cli_runner().invoke(cli, list(args))


def shifted_to_end_at(path: Path, end: float, out: Path) -> Path:
    """The real log with every Logger stamp moved so its last line is at ``end`` (same spacing)."""
    text = path.read_text(encoding="utf-8")
    last = max(parse_iso(s) for s in _STAMP.findall(text))

    def move(m):  # type: ignore[no-untyped-def]
        ts = parse_iso(m[0]) + end - last
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%06d" % round(ts % 1 * 1e6)

    out.write_text(_STAMP.sub(move, text), encoding="utf-8")
    return out


def test_a_duration_is_that_long_before_the_wall_clock_now():
    before = time.time()
    since = _parse_time(None, None, "2h30m")  # type: ignore[arg-type]
    after = time.time()
    assert before - 9000 <= since <= after - 9000


def test_since_1h_keeps_half_an_hour_old_errors_and_since_10m_drops_them(tmp_path):
    log = shifted_to_end_at(POOL_LOG, time.time() - 1800, tmp_path / "production.log")
    kept = json.loads(run("scan", "--format", "json", "--fail-on", "never", "--since", "1h", str(log)).stdout)
    dropped = json.loads(run("scan", "--format", "json", "--fail-on", "never", "--since", "10m", str(log)).stdout)
    assert [i["detector"] for i in kept["incidents"]] == ["pool_exhaustion"]
    assert dropped["incidents"] == []


def test_an_iso_since_still_works_and_garbage_is_one_clear_error():
    assert _parse_time(None, None, "2026-11-26") == parse_iso("2026-11-26T00:00:00Z")  # type: ignore[arg-type]
    result = run("scan", "--since", "1 hour ago", str(POOL_LOG))
    assert result.exit_code == 2
    assert "or a duration before now (90s, 15m, 2h30m, 2d)" in result.stderr
    assert run("scan", "--until", "2026-02-30", str(POOL_LOG)).exit_code == 2  # not a date: no silent March 2


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_compressed_log_piped_to_scan_dash_is_decompressed(compress):
    data = compress((LOGS / "rails" / "rails52_production.log").read_bytes())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "agent", "scan", "--format", "json", "-"], input=data,
                         capture_output=True, env=env, cwd=str(REPO), check=False)
    assert out.returncode == 0, out.stderr.decode()
    (f,) = json.loads(out.stdout)["files"]
    assert (f["path"], f["format"], f["lines"], f["unparsed"]) == ("-", "rails", 133, 0)


def test_plain_stdin_shorter_than_a_magic_number_is_read_whole():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "agent", "scan", "--format", "json", "-"], input=b"\x1f",
                         capture_output=True, env=env, cwd=str(REPO), check=False)
    assert out.returncode == 2 and b"unknown log format" in out.stderr  # one byte read as one (unknown) line


def test_a_pattern_matching_nothing_says_only_the_error(tmp_path):
    result = run("scan", str(tmp_path / "log" / "production.log*"))
    assert result.exit_code == 2
    assert result.stdout == ""  # no "No incidents found by …" beside the error
    assert "no file matches this pattern" in result.stderr and "nothing could be scanned" in result.stderr
