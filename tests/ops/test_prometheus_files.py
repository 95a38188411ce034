"""The agent's /metrics through Prometheus's own checker, and the shipped alerting rules and
Grafana dashboard against the metric names the agent really exposes.

promtool comes with Debian's `prometheus` package (tests/ops/install-prometheus.sh, run by .ci/run).
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import List, Set

import pytest
from prometheus_client import CollectorRegistry

from agent.selfmetrics import MetricsServer, SelfMetrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus" / "railwatch-rules.yml"
DASHBOARD = REPO / "packaging" / "grafana" / "railwatch-dashboard.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "unless", "and", "or", "on", "without", "max", "min", "avg",
                "count", "label_values", "instance", "job", "source", "sink", "kind", "collector", "detector", "severity"}


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing (tests/ops/install-prometheus.sh installs Debian's prometheus)")
        pytest.skip("promtool missing: bash tests/ops/install-prometheus.sh")
    return found


def exposed_names() -> Set[str]:
    """Every series name the agent's registry exposes (counters with their _total)."""
    registry = CollectorRegistry()
    SelfMetrics(registry)
    names = {"up"}  # Prometheus's own, per scrape target
    for family in registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def metric_names_in(expr: str) -> Set[str]:
    """The metric names a PromQL expression selects (words outside braces, ranges and strings)."""
    bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"', " ", expr)
    bare = re.sub(r"\bby\s*\([^)]*\)", " ", bare)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("$")}


def rule_exprs(text: str) -> List[str]:
    """`expr:` values of a rules file, single-line or folded (`expr: >`), without a YAML library."""
    out: List[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2) not in (">", "|", ">-", "|-"):
            out.append(m.group(2))
            continue
        block = []
        for follow in lines[i + 1:]:
            if len(follow) - len(follow.lstrip()) <= len(m.group(1)):
                break
            block.append(follow.strip())
        out.append(" ".join(block))
    return out


def scrape_text(port: int, accept: str = "") -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


@pytest.fixture()
def server():
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.lines_read.labels("/srv/app/log/production.log").inc(68)
    metrics.findings.labels("pool_exhaustion", "critical").inc()
    metrics.sink_failures.labels("pager", "retry").inc()
    s = MetricsServer(registry, lambda: ("ok", []), "127.0.0.1", 0)
    s.start()
    yield s
    s.stop()


def test_metrics_pass_promtool_check_metrics(server):
    body = scrape_text(server.port)
    run = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert run.returncode == 0 and not run.stdout.strip() and not run.stderr.strip(), run.stdout + run.stderr


def test_build_info_process_metrics_and_no_created_series(server):
    text = scrape_text(server.port).decode()
    assert re.search(r'^railwatch_build_info\{python="3\.\d+\.\d+",version="\d[^"]*"\} 1\.0$', text, re.M)
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)
    assert re.search(r"^python_info\{", text, re.M)
    assert "_created" not in text
    assert 'railwatch_lines_read_total{source="/srv/app/log/production.log"} 68.0' in text


def test_openmetrics_is_negotiated_and_gzip_when_accepted(server):
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics",
                                 headers={"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = gzip.decompress(r.read()).decode()
    assert text.rstrip().endswith("# EOF") and "_created" not in text
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain") and r.headers.get("Content-Encoding") is None


def test_alerting_rules_pass_promtool_and_name_only_exposed_metrics():
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    exprs = rule_exprs(RULES.read_text())
    assert len(exprs) >= 8
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used - exposed_names() == set()
    for needed in ("up", "railwatch_tail_lag_seconds", "railwatch_collector_dropped_total", "railwatch_detector_errors_total",
                   "railwatch_detectors_disabled", "railwatch_outbox_oldest_age_seconds", "railwatch_sink_failures_total"):
        assert needed in used, needed


def test_the_checker_catches_a_rule_on_a_metric_the_agent_does_not_expose():
    assert metric_names_in('sum by (sink) (rate(railwatch_sink_timeouts_total{job="x"}[5m])) > 0') - exposed_names() == {
        "railwatch_sink_timeouts_total"}


def test_grafana_dashboard_schema_basics_and_every_expr_names_exposed_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "instance"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    exposed, used = exposed_names(), set()
    for panel in dash["panels"]:
        assert panel["type"] in ("stat", "table", "timeseries") and panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names and names <= exposed, (panel["title"], names - exposed)
            used |= names
    for needed in ("railwatch_tail_lag_seconds", "railwatch_lines_unparsed_total", "railwatch_collector_dropped_total",
                   "railwatch_detector_errors_total", "railwatch_outbox_depth", "railwatch_sink_failures_total"):
        assert needed in used, needed
