"""N+1 evidence: what counts as repetition, one incident per endpoint, tagged Postgres
statements (issue 12). Rails lines are rendered with the Rails Logger format of
test_n_plus_one.py (the same as tests/fixtures/logs/e2e/debug/production.log, incl.
its Bullet block); Postgres lines with the log_line_prefix of
tests/fixtures/logs/postgres/built_pool_errors.log plus QueryLogs/marginalia comments."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import List, Sequence

from agent.scan import scan
from detectors.base import AppFacts
from tests.detectors.test_n_plus_one import PID, POSTS, T0, _iso, author_loads, only, request, run, sql


def _rails61(start: float, n: int, db_ms: float, prefix: str, endpoint: str, path: str, step: float = 10.0) -> List[str]:
    return [l for i in range(n) for l in request(start + step * i, f"{prefix}-{i:04d}", db_ms=db_ms, endpoint=endpoint, path=path)]


# ----- 1. a DB-time rise without repetition is a slow endpoint, never an N+1 page --------------
def test_a_slow_new_endpoint_is_neither_an_n_plus_one_nor_a_finding(tmp_path):
    # an established endpoint, then a new one whose single query takes 1.5 s (info, Rails 6.1)
    lines = _rails61(T0, 40, 4.0, "old", "PostsController#index", "/posts")
    lines += _rails61(T0 + 405, 40, 1502.0, "new", "ReportsController#show", "/reports/1")
    lines.sort(key=lambda l: l[4:30])
    assert run(tmp_path, lines) == []


def test_a_slow_endpoint_is_worded_as_such_and_stays_a_warning_after_a_deploy(tmp_path):
    lines = _rails61(T0, 40, 4.0, "b", "PostsController#index", "/posts") + \
        _rails61(T0 + 500, 15, 1502.0, "a", "PostsController#index", "/posts")
    f = only(run(tmp_path, lines, facts=AppFacts(revision="5e2d1c0b", revision_time=T0 + 450)))
    assert f.severity == "warning"
    assert f.subject == {"endpoint": "PostsController#index", "problem": "slow_endpoint"}
    assert f.title == "Slow endpoint PostsController#index: DB time 4 -> 1502 ms per request"
    assert "N+1" not in f.title + f.triage.summary


# ----- 2. one incident per endpoint problem --------------------------------------------------
def comment_loads(n: int) -> List:
    return [sql("Comment Load", 0.4, 'SELECT "comments".* FROM "comments" WHERE "comments"."post_id" = $1',
                f'[["post_id", {i + 1}]]', "app/app.rb:233:in `block in index'") for i in range(n)]


def bullet_block(ts: float, rid: str, association: str) -> List[str]:
    """Bullet's Rails-logger block as in tests/fixtures/logs/e2e/debug/production.log."""
    return [f"W, [{_iso(ts)} #{PID}]  WARN -- : [{rid}] user: root", "GET /posts", "USE eager loading detected",
            f"  Post => [:{association}]", f"  Add to your query: .includes([:{association}])", "Call stack",
            "  /work/main/tests/e2e/app/app.rb:232:in `block in index'", ""]


def two_association_request(ts: float, rid: str) -> List[str]:
    return request(ts, rid, [POSTS] + author_loads(30) + comment_loads(30)) + \
        bullet_block(ts + 0.2, rid, "author") + bullet_block(ts + 0.21, rid, "comments")


def test_bullet_and_repeated_sql_on_two_associations_are_one_incident(tmp_path):
    lines = [l for i in range(4) for l in two_association_request(T0 + 30 * i, f"3e10933a-367b-4af2-a06a-34fabc7{i:05d}")]
    f = only(run(tmp_path, lines))
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.count == 4  # affected requests, not evidence items
    assert f.details["associations"] == ["Post => :author", "Post => :comments", "Post => [:author]", "Post => [:comments]"]
    assert f.details["evidence_sources"] == ["bullet", "debug_sql"]
    assert len(f.details["sql_shapes"]) == 2


def test_bullet_before_its_request_record_is_merged_once_the_endpoint_is_known(tmp_path):
    bullet = tmp_path / "bullet.log"  # Bullet's own file, read before the Rails log
    at = datetime.fromtimestamp(T0 + 1, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    # Bullet's own log format, as in tests/fixtures/logs/bullet/chatwoot_bullet.log
    bullet.write_text("\n".join([f"{at}[WARN] user: root"] + bullet_block(T0 + 0.2, "r", "author")[1:]) + "\n",
                      encoding="utf-8")
    log = tmp_path / "production.log"
    log.write_text("\n".join(request(T0, "3e10933a-367b-4af2-a06a-34fabc7d83b0", [POSTS])) + "\n", encoding="utf-8")
    result = scan([str(bullet), str(log)], detectors=["n_plus_one"])
    f = only(result.incidents)
    assert f.subject == {"endpoint": "PostsController#index"}


# ----- 3. tagged Postgres statement logs ---------------------------------------------------
PREFIX = "user=rails,db=app_production,app=puma,client=10.0.0.12"
QUERY_LOGS = "/*action='index',application='Blog',controller='posts'*/"
MARGINALIA = "/*application:Blog,controller:posts,action:index*/"


def _pg_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def pg_request(ts: float, pid: int, n: int, tag: str = QUERY_LOGS, same_binds: bool = False) -> List[str]:
    """One request's statements as Postgres logs them with log_min_duration_statement = 0."""
    out = [f"{_pg_ts(ts)} [{pid}]: [1-1] {PREFIX} LOG:  duration: 0.410 ms  execute <unnamed>: "
           f'SELECT "posts".* FROM "posts" ORDER BY "posts"."id" ASC LIMIT $1 {tag}',
           f"{_pg_ts(ts)} [{pid}]: [1-2] {PREFIX} DETAIL:  parameters: $1 = '30'"]
    for i in range(n):
        t = ts + 0.002 * (i + 1)
        out.append(f"{_pg_ts(t)} [{pid}]: [{i + 2}-1] {PREFIX} LOG:  duration: 0.180 ms  execute <unnamed>: "
                   f'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2 {tag}')
        out.append(f"{_pg_ts(t)} [{pid}]: [{i + 2}-2] {PREFIX} DETAIL:  parameters: $1 = '{1 if same_binds else i + 1}', $2 = '1'")
    return out


def _scan_pg(tmp_path: Path, lines: Sequence[str]):
    log = tmp_path / "postgresql.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = scan([str(log)], detectors=["n_plus_one"])
    assert not result.errors, result.errors
    return result.incidents


def test_tagged_postgres_statements_show_an_n_plus_one_at_info_level(tmp_path):
    # two backends serving /posts at once, interleaved as Postgres writes them
    a = [l for i in range(3) for l in pg_request(T0 + 10 * i, 3990, 30)]
    b = [l for i in range(3) for l in pg_request(T0 + 5 + 10 * i, 3992, 30, MARGINALIA)]
    f = only(_scan_pg(tmp_path, sorted(a + b, key=lambda l: l[:23])))
    assert f.subject == {"endpoint": "PostsController#index"}
    assert f.count == 6  # one per request: grouped by backend pid and split by silence
    assert f.details["repeats_per_request_max"] == 30
    assert f.details["evidence_sources"] == ["postgres_log"]
    assert f.details["association"] == "Post => :author"


def test_tagged_statements_with_the_same_binds_or_few_repeats_are_not_an_n_plus_one(tmp_path):
    same = [l for i in range(3) for l in pg_request(T0 + 10 * i, 3990, 30, same_binds=True)]
    few = [l for i in range(3) for l in pg_request(T0 + 100 + 10 * i, 3990, 3)]
    assert _scan_pg(tmp_path, same + few) == []
