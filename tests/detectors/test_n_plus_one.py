"""N+1 detector tests on real logs (tests/fixtures/logs/n_plus_one, e2e) and on
synthetic streams rendered from the exact Rails format strings (see PROVENANCE.md)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from agent.events import Bullet, Finding, Request, Sql
from agent.scan import scan
from agent.sources.replay import iter_events
from detectors.base import AppFacts
from detectors.n_plus_one import NPlusOneDetector, NPlusOneSettings
from support import CORPUS, require

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
PID = 4321


# ----- rendering Rails Logger lines (rails-signals.md A.1, A.2, A.4) -------------------
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _line(level: str, ts: float, rid: str, msg: str) -> str:
    return f"{level[0]}, [{_iso(ts)} #{PID}] {level:>5} -- : [{rid}] {msg}"


def sql(name: str, ms: float, text: str, binds: str = "", where: str = "app/controllers/posts_controller.rb:7:in `index'", cached: bool = False):
    return (("CACHE " if cached else "") + f"{name} ({ms}ms)  {text}" + (f"  {binds}" if binds else ""), where)


def request(ts: float, rid: str, statements: Sequence[Tuple[str, str]] = (), path: str = "/posts",
            endpoint: str = "PostsController#index", db_ms: float = 1.5, counts: Optional[Tuple[int, int]] = None) -> List[str]:
    at = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")
    out = [_line("INFO", ts, rid, f'Started GET "{path}" for 203.0.113.7 at {at}'),
           _line("INFO", ts + 0.001, rid, f"Processing by {endpoint} as HTML")]
    t = ts + 0.002
    for text, where in statements:
        out.append(_line("DEBUG", t, rid, "  " + text))
        if where:
            out.append(_line("DEBUG", t, rid, "  ↳ " + where))
        t += 0.0005
    ar = f"ActiveRecord: {db_ms:.1f}ms" + (f" ({counts[0]} queries, {counts[1]} cached)" if counts else "")
    out.append(_line("INFO", t + 0.01, rid, f"Completed 200 OK in 58ms (Views: 40.4ms | {ar} | GC: 1.2ms)"))
    return out


POSTS = sql("Post Load", 0.6, 'SELECT "posts".* FROM "posts" ORDER BY "posts"."id" ASC LIMIT $1', '[["LIMIT", 30]]')


def author_loads(n: int, ms: float = 0.3) -> List[Tuple[str, str]]:
    return [sql("Author Load", ms, 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2',
                f'[["id", {i + 1}], ["LIMIT", 1]]', "app/app.rb:219:in `block in index'") for i in range(n)]


def posts_n_plus_one(ts: float, rid: str, n: int = 30, ms: float = 0.3) -> List[str]:
    return request(ts, rid, [POSTS] + author_loads(n, ms))


def posts_fixed(ts: float, rid: str, n: int = 30) -> List[str]:
    ids = ", ".join(f"${i + 1}" for i in range(n))
    binds = "[" + ", ".join(f'["id", {i + 1}]' for i in range(n)) + "]"
    return request(ts, rid, [POSTS, sql("Author Load", 0.5, f'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ({ids})', binds)],
                   path="/posts_fixed", endpoint="PostsController#index_fixed")


def run(tmp_path: Path, lines: Sequence[str], facts: AppFacts = AppFacts(), **settings) -> List[Finding]:
    log = tmp_path / "production.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = scan([str(log)], detectors=["n_plus_one"], facts=facts,
                  settings={"n_plus_one": NPlusOneSettings(**settings)} if settings else None)
    assert not result.errors, result.errors
    return result.incidents


def only(findings: List[Finding]) -> Finding:
    assert len(findings) == 1, [f.title for f in findings]
    return findings[0]


# ----- real logs from the corpus ---------------------------------------------------------
def test_four_attachment_loads_in_simple_log_are_below_the_default_threshold():
    # Decision: 4 lazy ActiveStorage loads at 0.0ms each are an N+1 *shape* (Bullet would say
    # so) but Sentry's default (5 repeats, 50 ms) would not report it, and neither do we.
    result = scan([str(FIXTURES / "n_plus_one" / "simple.log")], detectors=["n_plus_one"])
    assert result.incidents == []


def test_simple_log_with_lowered_thresholds_names_with_attached_image():
    settings = {"n_plus_one": NPlusOneSettings(min_repeats=4, min_repeats_fast=4)}
    result = scan([str(FIXTURES / "n_plus_one" / "simple.log")], detectors=["n_plus_one"], settings=settings)
    f = only(result.incidents)
    assert f.severity == "warning"  # first time this endpoint is seen: no baseline
    assert f.subject == {"endpoint": "UsersController#show"}  # one incident per endpoint: shapes are inside
    assert f.details["evidence_items"][0]["table"] == "active_storage_attachments"
    assert f.count == 1
    assert f.details["repeats_per_request_max"] == 4
    assert f.details["fix"] == "Micropost.with_attached_image"
    assert f.details["source_location"] == "app/views/microposts/_micropost.html.erb:6"
    assert f.details["example_request_ids"] == ["d52d405c-01c6-481e-95f7-a48265c7cd16"]
    assert [e.line for e in f.evidence][:2] == [48, 50]  # the Micropost Load, then the first repeat


def test_overlapped_coloured_log_has_no_n_plus_one_and_counts_round_trips():
    det = NPlusOneDetector()
    for event in iter_events(str(FIXTURES / "n_plus_one" / "overlapped.log")):
        if event.kind in det.kinds:
            det.feed(event)
    assert det.flush(None) == []
    # POST /login: User Load + User Update; its TRANSACTION begin/commit lines are not queries
    assert [v for _, v in det._queries.recent.samples("SessionsController#create")] == [2]


def test_interleaved_requests_are_attributed_by_request_id(tmp_path):
    bad = posts_n_plus_one(T0, "aaaaaaaa-0000-0000-0000-000000000001")
    good = request(T0, "bbbbbbbb-0000-0000-0000-000000000002",
                   [sql("User Load", 0.4, 'SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2', '[["id", 1], ["LIMIT", 1]]')],
                   path="/users/1", endpoint="UsersController#show")
    mixed = [line for pair in zip(bad, good) for line in pair] + bad[len(good):]
    f = only(run(tmp_path, mixed))
    assert f.subject["endpoint"] == "PostsController#index"
    assert f.details["repeats_per_request_max"] == 30
    assert f.details["example_request_ids"] == ["aaaaaaaa-0000-0000-0000-000000000001"]


def test_a_rails_0_10_syslog_file_is_not_read_as_rails():
    result = scan([str(require(CORPUS / "production_log_analyzer" / "test.syslog.log"))], detectors=["n_plus_one"])
    assert result.incidents == []


# ----- debug SQL: what is and is not an N+1 ----------------------------------------------
def test_posts_loop_with_author_loads_is_a_warning_naming_post_includes_author(tmp_path):
    lines = [l for i in range(5) for l in posts_n_plus_one(T0 + 10 * i, f"req-{i:04d}-aaaa")]
    f = only(run(tmp_path, lines))
    assert f.severity == "warning"
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.details["sql_shapes"] == ['SELECT "authors".* FROM "authors" WHERE "authors"."id" = ? LIMIT ?']
    assert f.details["evidence_sources"] == ["debug_sql"]
    assert f.count == 5
    assert f.details["repeats_per_request_max"] == 30
    assert f.details["association"] == "Post => :author"
    assert "Post.includes(:author)" in f.triage.prevention[0]
    assert f.details["source_location"] == "app/app.rb:219:in `block in index'"
    assert any("strict_loading" in p for p in f.triage.prevention)
    assert len(f.details["example_request_ids"]) == 5


def test_fixed_twin_with_includes_is_not_an_n_plus_one(tmp_path):
    lines = [l for i in range(10) for l in posts_fixed(T0 + 10 * i, f"req-{i:04d}-fixd")]
    assert run(tmp_path, lines) == []


def test_batched_in_list_loads_are_not_an_n_plus_one_even_when_repeated(tmp_path):
    batches = [sql("Author Load", 9.0, 'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ($1, $2, $3, $4, $5)',
                   "[" + ", ".join(f'["id", {b * 5 + i}]' for i in range(5)) + "]") for b in range(8)]
    assert run(tmp_path, request(T0, "req-inb-0001", [POSTS] + batches)) == []


def test_one_element_in_list_per_row_is_still_an_n_plus_one(tmp_path):
    loads = [sql("Author Load", 9.0, 'SELECT "authors".* FROM "authors" WHERE "authors"."id" IN ($1)', f'[["id", {i}]]')
             for i in range(8)]
    f = only(run(tmp_path, request(T0, "req-in1-0001", [POSTS] + loads)))
    assert f.details["sql_shapes"] == ['SELECT "authors".* FROM "authors" WHERE "authors"."id" IN (?)']


def test_batched_find_each_loop_is_not_an_n_plus_one(tmp_path):
    batches = [sql("Post Load", 8.0, 'SELECT "posts".* FROM "posts" WHERE "posts"."id" > $1 ORDER BY "posts"."id" ASC LIMIT $2',
                   f'[["id", {i * 1000}], ["LIMIT", 1000]]') for i in range(8)]
    assert run(tmp_path, request(T0, "req-batch-0001", batches, endpoint="ExportsController#create")) == []


def test_cached_repeats_are_not_round_trips(tmp_path):
    cached = [sql("Author Load", 0.0, 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2',
                  f'[["id", {i}], ["LIMIT", 1]]', cached=True) for i in range(30)]
    assert run(tmp_path, request(T0, "req-cache-0001", [POSTS] + cached)) == []


def test_the_same_query_with_the_same_binds_is_not_an_n_plus_one(tmp_path):
    same = [sql("Setting Load", 3.0, 'SELECT "settings".* FROM "settings" WHERE "settings"."id" = $1 LIMIT $2',
                '[["id", 1], ["LIMIT", 1]]') for _ in range(30)]
    assert run(tmp_path, request(T0, "req-memo-0001", same)) == []


def test_a_small_fast_loop_is_ignored_but_a_slow_one_is_reported(tmp_path):
    assert run(tmp_path, request(T0, "req-fast-0001", [POSTS] + author_loads(6, ms=0.3))) == []
    f = only(run(tmp_path, request(T0, "req-slow-0001", [POSTS] + author_loads(6, ms=12.0))))
    assert f.details["repeats_per_request_max"] == 6


def test_has_many_loop_names_the_collection(tmp_path):
    loads = [sql("Comment Load", 2.0, 'SELECT "comments".* FROM "comments" WHERE "comments"."post_id" = $1',
                 f'[["post_id", {i}]]') for i in range(30)]
    f = only(run(tmp_path, request(T0, "req-hm-0001", [POSTS] + loads)))
    assert f.details["association"] == "Post => :comments"
    assert f.details["fix"] == "Post.includes(:comments)"


def test_exists_checks_in_a_loop_need_more_repeats_than_loads(tmp_path):
    def exists(n):
        return [sql("Comment Exists?", 5.0, 'SELECT 1 AS one FROM "comments" WHERE "comments"."post_id" = $1 LIMIT $2',
                    f'[["post_id", {i}], ["LIMIT", 1]]') for i in range(n)]
    assert run(tmp_path, request(T0, "req-ex-0001", [POSTS] + exists(8))) == []
    f = only(run(tmp_path, request(T0, "req-ex-0002", [POSTS] + exists(12))))
    assert ".any?" in f.details["fix"]


def test_count_per_row_suggests_a_counter_cache(tmp_path):
    counts = [sql("Comment Count", 5.0, 'SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = $1',
                  f'[["post_id", {i}]]') for i in range(12)]
    f = only(run(tmp_path, request(T0, "req-cnt-0001", [POSTS] + counts)))
    assert "counter_cache" in f.details["fix"]


def test_writes_in_a_loop_are_not_n_plus_one_reads(tmp_path):
    updates = [sql("Post Update", 2.0, 'UPDATE "posts" SET "views" = $1 WHERE "posts"."id" = $2', f'[["views", 3], ["id", {i}]]')
               for i in range(30)]
    assert run(tmp_path, request(T0, "req-upd-0001", updates)) == []


def test_statements_outside_requests_take_their_endpoint_from_query_log_tags(tmp_path):
    tag = " /*application='Blog',job='ReportJob'*/"
    lines = []
    for i in range(12):
        text = f'Author Load (4.0ms)  SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2{tag}  [["id", {i}], ["LIMIT", 1]]'
        lines.append(f"D, [{_iso(T0 + i * 0.01)} #{PID}] DEBUG -- :   {text}")
    f = only(run(tmp_path, lines))
    assert f.subject["endpoint"] == "ReportJob"
    assert any("concurrency" in c for c in f.triage.containment)


# ----- severity: spikes and deploys ------------------------------------------------------
def _info_requests(start: float, n: int, queries: int, prefix: str, step: float = 10.0) -> List[str]:
    return [l for i in range(n) for l in request(start + step * i, f"{prefix}-{i:04d}", counts=(queries, 0), db_ms=queries * 0.4)]


def test_query_count_spike_after_a_deploy_is_critical(tmp_path):
    deploy_at = T0 + 400 * 10.0 + 5
    lines = _info_requests(T0, 400, 3, "before") + _info_requests(deploy_at + 5, 30, 40, "after")
    f = only(run(tmp_path, lines, facts=AppFacts(revision="5e2d1c0b", revision_time=deploy_at)))
    assert f.severity == "critical"
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.details["queries_per_request_before"] == 3
    assert f.details["queries_per_request_after"] == 40
    assert f.details["deploy_revision"] == "5e2d1c0b"
    assert "5e2d1c0b" in f.triage.containment[0]
    assert f.count == 30
    assert f.first_seen >= deploy_at


def test_steady_forty_queries_per_request_is_not_critical(tmp_path):
    findings = run(tmp_path, _info_requests(T0, 430, 40, "steady"), facts=AppFacts(revision="5e2d1c0b", revision_time=T0 + 2000))
    assert all(f.severity == "warning" for f in findings)
    assert findings == []  # 40 < steady_queries_warning: not enough to say anything


def test_steady_very_high_query_count_is_a_warning(tmp_path):
    f = only(run(tmp_path, _info_requests(T0, 40, 150, "high")))
    assert f.severity == "warning"
    assert "150 queries per request" in f.title


def test_a_spike_without_a_deploy_is_still_critical(tmp_path):
    f = only(run(tmp_path, _info_requests(T0, 50, 3, "b") + _info_requests(T0 + 600, 20, 40, "a")))
    assert f.severity == "critical"
    assert "deploy_revision" not in f.details


def test_a_small_jump_is_not_a_spike(tmp_path):
    assert run(tmp_path, _info_requests(T0, 50, 3, "b") + _info_requests(T0 + 600, 20, 9, "a")) == []


def test_spike_needs_a_baseline_of_enough_requests(tmp_path):
    assert run(tmp_path, _info_requests(T0, 5, 3, "b") + _info_requests(T0 + 60, 20, 40, "a")) == []


def test_debug_n_plus_one_that_appears_after_a_deploy_is_critical(tmp_path):
    before = [l for i in range(5) for l in request(T0 + 10 * i, f"pre-{i:04d}", [POSTS, author_loads(1)[0]])]
    deploy_at = T0 + 100
    # large: 31 queries per request (>= critical_min_queries 25), 15 requests in 60 s (0.25/s >= 0.2/s)
    after = [l for i in range(15) for l in posts_n_plus_one(deploy_at + 10 + 4 * i, f"post-{i:04d}")]
    f = only(run(tmp_path, before + after, facts=AppFacts(revision="abc123", revision_time=deploy_at)))
    assert f.severity == "critical"
    assert f.details["new_since_deploy"] is True
    assert f.details["queries_per_affected_request"] == 31
    assert "(new since deploy)" in f.title
    assert "abc123" in f.triage.containment[0]


def test_a_small_or_rare_n_plus_one_after_a_deploy_is_a_warning(tmp_path):
    before = [l for i in range(5) for l in request(T0 + 10 * i, f"pre-{i:04d}", [POSTS, author_loads(1)[0]])]
    deploy_at = T0 + 100
    rare = [l for i in range(3) for l in posts_n_plus_one(deploy_at + 10 + 10 * i, f"post-{i:04d}")]  # 3 in 60 s
    f = only(run(tmp_path, before + rare, facts=AppFacts(revision="abc123", revision_time=deploy_at)))
    assert (f.severity, f.details["new_since_deploy"]) == ("warning", True)
    small = [l for i in range(15) for l in posts_n_plus_one(deploy_at + 10 + 4 * i, f"post-{i:04d}", n=12)]  # 13 queries
    f = only(run(tmp_path, before + small, facts=AppFacts(revision="abc123", revision_time=deploy_at)))
    assert (f.severity, f.details["new_since_deploy"]) == ("warning", True)


def test_a_large_n_plus_one_on_a_new_endpoint_is_critical_a_long_standing_one_a_warning(tmp_path):
    new = [l for i in range(15) for l in posts_n_plus_one(T0 + 4 * i, f"new-{i:04d}")]
    f = only(run(tmp_path, new))
    assert (f.severity, f.details["new_endpoint"]) == ("critical", True)
    assert "(new endpoint)" in f.title
    clean = [l for i in range(5) for l in request(T0 + 4 * i, f"pre-{i:04d}", [POSTS, author_loads(1)[0]])]
    later = [l for i in range(15) for l in posts_n_plus_one(T0 + 100 + 4 * i, f"old-{i:04d}")]
    f = only(run(tmp_path, clean + later))  # the endpoint had clean requests, no deploy, no baseline spike
    assert (f.severity, f.details["new_endpoint"]) == ("warning", False)


def test_debug_n_plus_one_whose_endpoint_spikes_is_one_critical_incident(tmp_path):
    normal = [l for i in range(40) for l in request(T0 + 10 * i, f"n-{i:04d}", [POSTS, author_loads(1)[0]])]
    bad = [l for i in range(12) for l in posts_n_plus_one(T0 + 500 + 10 * i, f"b-{i:04d}")]
    f = only(run(tmp_path, normal + bad))
    assert f.severity == "critical"
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.details["evidence_items"][0]["table"] == "authors"
    assert f.count == 12
    assert (f.details["queries_per_request_before"], f.details["queries_per_request_after"]) == (2, 31)


def _rails61_requests(start: float, n: int, db_ms: float, prefix: str, endpoint: str = "PostsController#index", path: str = "/posts"):
    return [l for i in range(n) for l in request(start + 10 * i, f"{prefix}-{i:04d}", db_ms=db_ms, endpoint=endpoint, path=path)]


def test_db_time_rise_without_repetition_evidence_is_a_slow_endpoint_warning_not_an_n_plus_one(tmp_path):
    lines = _rails61_requests(T0, 40, 4.0, "b") + _rails61_requests(T0 + 500, 15, 180.0, "a")
    f = only(run(tmp_path, lines))
    assert f.severity == "warning"
    assert f.subject == {"endpoint": "PostsController#index", "problem": "slow_endpoint"}
    assert f.title.startswith("Slow endpoint PostsController#index")
    assert "N+1" not in f.title
    assert (f.details["db_ms_per_request_before"], f.details["db_ms_per_request_after"]) == (4.0, 180.0)


def test_db_time_jump_on_every_endpoint_at_once_is_not_an_n_plus_one(tmp_path):
    eps = [("PostsController#index", "/posts"), ("UsersController#show", "/users/1"), ("FeedController#show", "/feed")]
    lines: List[str] = []
    for k, (endpoint, path) in enumerate(eps):
        lines += _rails61_requests(T0 + k, 40, 4.0, f"b{k}", endpoint, path)
        lines += _rails61_requests(T0 + 500 + k, 15, 180.0, f"a{k}", endpoint, path)
    lines.sort(key=lambda l: l[4:30])  # one timeline, as a real log would be
    assert run(tmp_path, lines) == []


# ----- Bullet ----------------------------------------------------------------------------
def _bullet(ts: float, request_line: str = "GET /posts") -> Bullet:
    return Bullet(ts=ts, source="log/bullet.log", line=1, raw=f"{request_line}\nUSE eager loading detected\n  Post => [:author]",
                  detection="n_plus_one", model="Post", associations=("author",), request=request_line)


def _completed(ts: float, rid: str) -> Request:
    return Request(ts=ts, source="production.log", line=2, raw="Completed 200 OK", request_id=rid, method="GET",
                   path="/posts", endpoint="PostsController#index", status=200, duration_ms=58.0, db_ms=15.0)


def test_bullet_warning_is_mapped_to_the_endpoint_and_is_a_warning():
    det = NPlusOneDetector()
    det.feed(_completed(T0, "r1"))
    det.feed(_bullet(T0 + 5))
    f = only(det.flush(None))
    assert f.severity == "warning"
    assert f.subject == {"endpoint": "PostsController#index"}  # one incident per endpoint: associations inside
    assert f.details["associations"] == ["Post => [:author]"]
    assert "Post.includes(:author)" in f.triage.prevention[0]


def test_bullet_and_debug_sql_for_the_same_association_are_one_incident(tmp_path):
    det = NPlusOneDetector()
    log = tmp_path / "production.log"
    log.write_text("\n".join(posts_n_plus_one(T0, "req-0001-bull")) + "\n", encoding="utf-8")
    for event in iter_events(str(log)):
        det.feed(event)
    det.feed(_bullet(T0 + 1))
    findings = det.flush(None)
    f = only(findings)
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.details["evidence_sources"] == ["bullet", "debug_sql"]
    assert "Bullet reports the same association" in f.triage.likely_cause


# ----- plumbing ----------------------------------------------------------------------------
def test_counts_add_up_across_periodic_flushes(tmp_path):
    lines = [l for i in range(20) for l in posts_n_plus_one(T0 + 100 * i, f"req-{i:04d}-flsh")]  # spans 2000 s: many flushes
    f = only(run(tmp_path, lines))
    assert f.count == 20
    assert f.first_seen < T0 + 1 and f.last_seen > T0 + 1900


def test_state_stays_bounded_with_thousands_of_endpoints():
    det = NPlusOneDetector(NPlusOneSettings(max_endpoints=50, max_open_requests=20))
    for i in range(3000):
        det.feed(Request(ts=T0 + i, request_id=f"r{i}", endpoint=f"C{i}#index", method="GET", path=f"/c{i}", queries=3, cached=0))
    for i in range(100):
        det.feed(dataclasses.replace(_completed(T0, ""), request_id=""))
    assert len(det._queries.recent) <= 50 and len(det._queries.baseline) <= 50
    assert len(det._history) <= 50 and len(det._paths) <= 50 and len(det._open) <= 20


def test_settings_are_frozen_and_load_from_a_config_table():
    s = NPlusOneSettings.from_mapping({"min_repeats": 8, "spike_ratio": 4.0})
    assert (s.min_repeats, s.spike_ratio) == (8, 4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.min_repeats = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        NPlusOneSettings.from_mapping({"min_repeat": 8})


# ----- the reference app's logs (tests/fixtures/logs/e2e/<setup>/) ---------------------------
E2E = FIXTURES / "e2e"


def _e2e_logs(setup: str) -> List[str]:
    folder = E2E / setup
    logs = sorted(str(p) for p in folder.glob("*.log")) if folder.is_dir() else []
    assert logs, f"no e2e logs for the {setup} set-up in {folder}"
    return logs


def _by_endpoint(findings: List[Finding]) -> Dict[str, List[Finding]]:
    out: Dict[str, List[Finding]] = {}
    for f in findings:
        out.setdefault(f.subject.get("endpoint", ""), []).append(f)
    return out


def _phase(setup: str, name: str) -> Dict[str, object]:
    import json

    for line in (E2E / setup / "phases.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line)["phase"] == name:
            return json.loads(line)
    raise AssertionError(f"no {name} phase in {setup}/phases.jsonl")


def test_e2e_debug_logs_flag_posts_and_not_its_fixed_twin():
    result = scan(_e2e_logs("debug"), detectors=["n_plus_one"])
    f = only(result.incidents)  # Bullet's warning for the same association is folded in
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.details["evidence_items"][0]["table"] == "authors"
    # /posts is first requested in this phase (a new endpoint) but 10 requests are not a rate to page for
    assert f.severity == "warning"
    assert f.count == _phase("debug", "n_plus_one")["n_plus_one_requests"]
    assert f.details["repeats_per_request_max"] == 30
    assert f.details["fix"] == "Post.includes(:author)"
    assert "Bullet reports the same association" in f.triage.likely_cause
    assert "Post Load" in f.evidence[0].text and "Author Load" in f.evidence[1].text


@pytest.mark.parametrize("setup", ["info", "lograge", "stdout8"])
def test_e2e_production_logs_never_blame_the_fixed_twin_nor_page(setup):
    # /posts is first requested in the n_plus_one phase: no baseline, so no spike can be
    # claimed; the healthy /posts_fixed traffic and the pool-exhaustion phase must stay quiet
    result = scan(_e2e_logs(setup), detectors=["n_plus_one"])
    assert all(f.severity == "warning" for f in result.incidents), [f.title for f in result.incidents]
    assert "PostsController#index_fixed" not in _by_endpoint(result.incidents)


def test_e2e_info_log_bullet_warnings_name_posts_author():
    logs = _e2e_logs("info")
    assert any(e.kind == "bullet" for path in logs for e in iter_events(path))
    result = scan(logs, detectors=["n_plus_one"])
    f = only([f for f in result.incidents if "Post => [:author]" in f.details.get("associations", ())])
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.severity == "warning"
    assert f.count == 10  # one Bullet warning per GET /posts in the n_plus_one phase


def test_a_group_parses_the_binds_of_its_first_statement_when_read() -> None:
    from detectors.n_plus_one.state import Group
    from detectors.shared.sqlfp import SqlFingerprinter, parse_binds

    first = Sql(ts=1.0, sql='SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2', binds='[["id", 7], ["LIMIT", 1]]')
    group = Group(SqlFingerprinter().shape(first.sql), first, first.binds, None, None)
    assert group.binds == parse_binds(first.binds) == [("id", "7"), ("LIMIT", "1")]
    assert group.binds is group.binds  # parsed once
