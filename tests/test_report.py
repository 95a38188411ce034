"""The reports of the reference app's four-failure logs, read as the on-call engineer would."""
from __future__ import annotations

import glob
import json
import os
import re

from agent.appfacts import load_app_facts
from agent.charts import sparkline
from agent.report import render_json, render_markdown, render_text
from agent.scan import scan
from agent.series import MAX_BUCKETS, SeriesCollector
from agent.events import Request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/logs/e2e/info/*.log")))
APP = os.path.join(ROOT, "tests/e2e/app")


def _result():
    return scan(LOGS, facts=load_app_facts(APP, env={}))


def test_text_report_starts_with_one_line_per_incident():
    text = render_text(_result())
    head = text.splitlines()[:6]
    assert head[1].startswith("4 incident(s)")
    assert [line.split()[1] for line in head[2:6]] == ["pool_exhaustion", "sidekiq_failures", "n_plus_one", "sidekiq_failures"]
    assert "ending 30 s before the end of the log" in head[2]
    assert "still going at the end of the log" in head[5]


def test_evidence_in_time_order_labelled_and_folded():
    text = render_text(_result())
    pool = text.split("[CRITICAL] ActiveRecord connection pool exhausted")[1].split("[CRITICAL]")[0]
    lines = [int(n) for n in re.findall(r"production\.log:(\d+)", pool)]
    assert lines == sorted(lines) and lines[0] == 447
    assert "connection holder (slow request overlapping the pool errors)" in pool
    assert "pool error" in pool and "failed request" in pool
    assert "12 of 18 requests in the window failed (67 %)" in pool
    sidekiq = text.split("Sidekiq AlwaysFailsJob")[1]
    assert re.search(r"× \d+ more like this", sidekiq)


def test_guessed_pool_size_is_marked_in_text_markdown_and_json():
    result = _result()
    assert "guessed" in render_text(result) and "took the default 3" in render_text(result)
    assert "**guessed**" in render_markdown(result)
    pool = json.loads(render_json(result))["incidents"][0]
    assert any("RW_DB_POOL" in g for g in pool["details"]["guessed"])
    n_plus_one = json.loads(render_json(result))["incidents"][2]
    assert "guessed" not in n_plus_one["details"]


def test_json_only_adds_keys_and_carries_the_timeline():
    doc = json.loads(render_json(_result()))
    inc = doc["incidents"][0]
    for key in ("id", "detector", "severity", "title", "first_seen", "last_seen", "count", "subject", "evidence", "triage", "details"):
        assert key in inc
    assert set(inc["evidence"][0]) >= {"path", "line", "text", "role"}
    tl = inc["timeline"]
    assert tl["points"] == len(tl["series"]["errors per second"]) and sum(tl["series"]["errors per second"]) == 12


def test_sparkline_only_when_colour_is_on():
    result = _result()
    assert "signal " not in render_text(result, colour=False)
    assert re.search("signal +[▁▂▃▄▅▆▇█]+", render_text(result, colour=True))
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"


def test_series_stay_bounded_on_a_long_log():
    collector = SeriesCollector()
    for i in range(20000):  # three weeks of one request a minute, on 300 endpoints
        collector.feed(Request(ts=1.7e9 + i * 90.0, endpoint=f"C{i % 300}#a", status=200, db_ms=1.0))
    start, n = collector.axis()
    assert n <= MAX_BUCKETS and len(collector.requests) == 200 and collector.dropped_keys > 0
    total = collector.column(collector.requests, "*", 0)
    assert sum(total) == 20000  # re-bucketing merges counts, never loses them
