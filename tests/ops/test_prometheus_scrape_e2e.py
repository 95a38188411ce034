"""A real Prometheus (Debian's package) scrapes a real railwatch daemon: `up` is 1 and
railwatch_build_info is there, so the exposition (OpenMetrics, gzip) is what Prometheus reads."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_for as _wait_for

pytestmark = pytest.mark.e2e
POOL_LOG = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "pool_exhaustion" / "rails61_pool_timeouts.log"

def wait_for(predicate, what: str, timeout: float = 90.0):  # Prometheus scrapes every few seconds
    return _wait_for(predicate, what, timeout, 0.2)


def query(port: int, promql: str):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.loads(r.read().decode())
    except OSError:
        return None
    return doc["data"]["result"] if doc.get("status") == "success" else None


def test_a_real_prometheus_scrapes_the_agent(tmp_path):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus missing (tests/ops/install-prometheus.sh)")
        pytest.skip("prometheus missing: bash tests/ops/install-prometheus.sh")
    log = tmp_path / "production.log"
    log.write_text(POOL_LOG.read_text())
    agent_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: railwatch\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n")
    agent_err = open(tmp_path / "agent.err", "w")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--log", str(log), "--state-dir", str(tmp_path / "state"),
                              "--metrics-listen", f"127.0.0.1:{agent_port}", "--start", "beginning"],
                             stdout=subprocess.DEVNULL, stderr=agent_err, cwd=tmp_path)
    prom_log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=prom_log, stderr=subprocess.STDOUT)
    try:
        up = wait_for(lambda: [r for r in (query(prom_port, 'up{job="railwatch"}') or []) if r["value"][1] == "1"],
                      "Prometheus to scrape the agent (up == 1)")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{agent_port}"
        info = wait_for(lambda: query(prom_port, "railwatch_build_info"), "railwatch_build_info in Prometheus")
        assert info[0]["value"][1] == "1" and info[0]["metric"]["version"]
        lines = wait_for(lambda: [r for r in (query(prom_port, "railwatch_lines_read_total") or []) if r["value"][1] == "68"],
                         "the lines-read counter in Prometheus")
        assert lines[0]["metric"]["source"] == str(log)
        # no *_created series reached Prometheus either
        assert query(prom_port, '{__name__=~"railwatch_.*_created"}') == []
    finally:
        prom.terminate()
        agent.terminate()
        prom.wait(30)
        agent.wait(30)
        prom_log.close()
        agent_err.close()
