"""The HTML report as a person sees it: opened in headless Chromium, screenshotted.

Chromium missing: skipped locally, a failure under CI=true (tests/report/install-chromium.sh
installs it from Debian).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/logs/e2e/info/*.log")))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOG_START = 1795736354.0  # 2026-11-26T23:39:14Z, the first event of the logs


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: run tests/report/install-chromium.sh")
        pytest.skip("chromium not installed (tests/report/install-chromium.sh)")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    app = tmp / "app"
    shutil.copytree(os.path.join(ROOT, "tests/e2e/app"), str(app))
    os.utime(str(app / "REVISION"), (LOG_START + 15, LOG_START + 15))  # a deploy inside the logs' span
    out = tmp / "report.html"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "agent", "scan", "--format", "html", "-o", str(out), "--app", str(app), "--fail-on", "never"]
                          + LOGS, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return tmp, out


def _run(chromium: str, tmp, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


def test_report_is_self_contained(report):
    _, out = report
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_report_renders_in_chromium(report):
    chromium = _chromium()
    tmp, out = report
    shot = tmp / "report.png"
    proc = _run(chromium, tmp, "--enable-logging=stderr", "--v=1", "--window-size=1100,1600",
                f"--screenshot={shot}", out.as_uri())
    assert shot.exists() and shot.stat().st_size > 10000, proc.stderr[-2000:]
    console = [l for l in proc.stderr.splitlines() if "CONSOLE" in l]
    assert console == []
    # the net log lists every request; Chromium's own (update, clock, account checks to
    # Google hosts) are not the page's doing
    fetched = re.findall(r"NotifyBeforeURLRequest: (\S+)", proc.stderr)
    page = [u for u in fetched if not re.match(r"https?://[^/]*\.(?:google\.com|googleapis\.com)/", u)]
    assert page == []
    dom = _run(chromium, tmp, "--dump-dom", out.as_uri()).stdout
    assert '<table id="summary">' in dom and dom.count('<td class="sev ') == 4
    charts = re.findall(r'<svg class="timeline"[^>]*data-points="(\d+)"[^>]*data-deploys="(\d+)"', dom)
    assert len(charts) == 4 == dom.count('<section class="incident"')
    assert {points for points, _ in charts} == {"64"}  # 23:39:14 … 23:40:17, one-second buckets
    assert all(deploys == "1" for _, deploys in charts)
    assert dom.count('class="deploy"') == 4  # the marker lies inside every chart's axis
    for polyline in re.findall(r'<polyline class="series"[^>]*data-points="64"[^>]*points="([^"]+)"', dom):
        assert len(polyline.split()) == 64
    if os.environ.get("RAILWATCH_KEEP_SCREENSHOT"):
        shutil.copy(str(shot), os.environ["RAILWATCH_KEEP_SCREENSHOT"])
