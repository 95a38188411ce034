"""agent/appfacts.py: pool, threads and concurrency from a Rails app's own config files.

Generated-config shapes come from tests/fixtures/apps/ (Rails generator templates,
rendered; see PROVENANCE.md there); the reference app is tests/e2e/app/.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, Optional

import pytest

from agent.appfacts import load_app_facts

HERE = Path(__file__).parent
APPS = HERE / "fixtures" / "apps"
E2E_APP = HERE / "e2e" / "app"


def make_app(root: Path, files: Dict[str, str], templates: Optional[Dict[str, str]] = None) -> Path:
    """Write an app tree: ``files`` inline, ``templates`` as {dest: "rails80/config/database.yml"}."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, fixture in (templates or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(APPS / fixture, path)
    return root


# --------------------------------------------------------------------------- database.yml

def test_rails7_generated_database_yml_gives_the_default_pool_of_5_with_a_note(tmp_path: Path) -> None:
    app = make_app(tmp_path, {}, {"config/database.yml": "rails70/config/database.yml"})
    facts = load_app_facts(str(app))
    assert facts.db_pool == 5
    assert facts.db_checkout_timeout is None
    assert any("RAILS_MAX_THREADS" in n and "default 5" in n for n in facts.notes)


def test_env_mapping_overrides_the_erb_default(tmp_path: Path) -> None:
    app = make_app(tmp_path, {}, {"config/database.yml": "rails70/config/database.yml"})
    facts = load_app_facts(str(app), env={"RAILS_MAX_THREADS": "12"})
    assert facts.db_pool == 12
    assert not any("RAILS_MAX_THREADS" in n for n in facts.notes)


def test_rails8_multi_database_production_reads_primary(tmp_path: Path) -> None:
    app = make_app(tmp_path, {}, {"config/database.yml": "rails80/config/database.yml"})
    assert load_app_facts(str(app), env={"RAILS_MAX_THREADS": "7"}).db_pool == 7


def test_rails81_max_connections_is_the_pool(tmp_path: Path) -> None:
    app = make_app(tmp_path, {}, {"config/database.yml": "rails81/config/database.yml"})
    assert load_app_facts(str(app), env={"RAILS_MAX_THREADS": "4"}).db_pool == 4


def test_production_pool_wins_over_the_merged_default_and_other_environments(tmp_path: Path) -> None:
    yml = (
        "default: &default\n  adapter: postgresql\n  pool: 5\n  checkout_timeout: 5\n\n"
        "development:\n  <<: *default\n  pool: 50\n\n"
        "production:\n  <<: *default\n  pool: <%= ENV[\"DB_POOL\"] || 10 %>  # per process\n  checkout_timeout: 2.5\n"
    )
    facts = load_app_facts(str(make_app(tmp_path, {"config/database.yml": yml})))
    assert (facts.db_pool, facts.db_checkout_timeout) == (10, 2.5)


def test_production_as_an_alias_of_default(tmp_path: Path) -> None:
    yml = 'default: &default\n  adapter: postgresql\n  pool: <%= ENV["MAX_THREADS"] || 5 %>\nproduction: *default\n'
    assert load_app_facts(str(make_app(tmp_path, {"config/database.yml": yml}))).db_pool == 5


def test_database_url_pool_param_overrides_the_file(tmp_path: Path) -> None:
    app = make_app(tmp_path, {}, {"config/database.yml": "rails70/config/database.yml"})
    facts = load_app_facts(str(app), env={"DATABASE_URL": "postgres://u:p@db/app?pool=25&sslmode=require"})
    assert facts.db_pool == 25
    assert any("DATABASE_URL" in n for n in facts.notes)


def test_unevaluable_erb_leaves_the_pool_unknown_with_a_note(tmp_path: Path) -> None:
    yml = "production:\n  adapter: postgresql\n  pool: <%= AppConfig.instance.rails_max_threads %>\n"
    facts = load_app_facts(str(make_app(tmp_path, {"config/database.yml": yml})))
    assert facts.db_pool is None
    assert any("cannot evaluate" in n for n in facts.notes)


@pytest.mark.parametrize(
    "text",
    ["", "production: [unclosed\n  : : :\n\t- nonsense", "\x00\x01binary\xff", "development:\n  pool: 5\n"],
)
def test_bad_database_yml_never_raises_and_says_so(tmp_path: Path, text: str) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {"config/database.yml": text})))
    assert facts.db_pool is None
    assert any(n.startswith("config/database.yml") for n in facts.notes)


# --------------------------------------------------------------------------- puma.rb

@pytest.mark.parametrize(
    "fixture, env, threads, workers",
    [
        ("rails70/config/puma.rb", {}, 5, 0),  # no workers line: single mode
        ("rails72/config/puma.rb", {}, 3, 0),
        ("rails72/config/puma.rb", {"RAILS_MAX_THREADS": "16"}, 16, 0),
        ("rails71/config/puma.rb", {"WEB_CONCURRENCY": "4"}, 5, 4),
        ("rails81/config/puma.rb", {"WEB_CONCURRENCY": "3"}, 3, 3),
    ],
)
def test_generated_puma_rb_threads_and_workers(tmp_path: Path, fixture: str, env: Dict[str, str], threads: int, workers: int) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {}, {"config/puma.rb": fixture})), env=env)
    assert (facts.puma_max_threads, facts.puma_workers) == (threads, workers)


def test_rails71_puma_workers_from_cpu_count_is_unknown_without_web_concurrency(tmp_path: Path) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {}, {"config/puma.rb": "rails71/config/puma.rb"})))
    assert facts.puma_workers is None
    assert any("CPUs" in n for n in facts.notes)


def test_rails81_puma_workers_takes_the_web_concurrency_default(tmp_path: Path) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {}, {"config/puma.rb": "rails81/config/puma.rb"})))
    assert facts.puma_workers == 1
    assert any("WEB_CONCURRENCY" in n for n in facts.notes)


@pytest.mark.parametrize(
    "text, threads, workers",
    [
        ('threads_count = ENV.fetch("RAILS_MAX_THREADS") { 3 }\nthreads threads_count, threads_count\n', 3, 0),
        ("workers Integer(ENV['WEB_CONCURRENCY'] || 2)\nthreads_count = Integer(ENV['MAX_THREADS'] || 5)\nthreads threads_count, threads_count\n", 5, 2),
        ('workers ENV.fetch("WEB_CONCURRENCY") { 2 }\nthreads_count = ENV.fetch("RAILS_MAX_THREADS") { 5 }.to_i\nthreads threads_count, threads_count\n', 5, 2),
        ("threads(1, 16)\nworkers 4 # one per core\n", 16, 4),
        ("threads 8, 8\nworkers 0\n", 8, 0),
    ],
)
def test_common_hand_written_puma_rb_shapes(tmp_path: Path, text: str, threads: int, workers: int) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {"config/puma.rb": text})))
    assert (facts.puma_max_threads, facts.puma_workers) == (threads, workers)


def test_puma_rb_without_threads_says_so(tmp_path: Path) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {"config/puma.rb": 'port ENV.fetch("PORT", 3000)\n'})))
    assert facts.puma_max_threads is None
    assert "config/puma.rb: no threads setting found" in facts.notes


# --------------------------------------------------------------------------- sidekiq.yml

@pytest.mark.parametrize(
    "text, env, expected",
    [
        (":concurrency: 10\n:queues:\n  - default\n", {}, 10),
        ("concurrency: 7\nqueues:\n  - default\n", {}, 7),
        (":concurrency: 5\nproduction:\n  :concurrency: 25\nstaging:\n  :concurrency: 15\n", {}, 25),
        (':concurrency: <%= ENV.fetch("SIDEKIQ_CONCURRENCY", 10) %>\n', {"SIDEKIQ_CONCURRENCY": "30"}, 30),
        (':concurrency: <%= ENV["SIDEKIQ_CONCURRENCY"] || 12 %>\n', {}, 12),
    ],
)
def test_sidekiq_concurrency_shapes(tmp_path: Path, text: str, env: Dict[str, str], expected: int) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {"config/sidekiq.yml": text})), env=env)
    assert facts.sidekiq_concurrency == expected


def test_sidekiq_yml_without_concurrency_is_unknown_with_the_version_defaults_noted(tmp_path: Path) -> None:
    facts = load_app_facts(str(make_app(tmp_path, {"config/sidekiq.yml": ":queues:\n  - default\n"})))
    assert facts.sidekiq_concurrency is None
    assert any("no concurrency" in n and "5 from 7.0" in n for n in facts.notes)


# --------------------------------------------------------------------------- REVISION, layout

def test_revision_content_and_mtime(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"REVISION": "5e2d1c0b9a8f\n"})
    os.utime(app / "REVISION", (1714564800, 1714564800))
    facts = load_app_facts(str(app))
    assert (facts.revision, facts.revision_time) == ("5e2d1c0b9a8f", 1714564800)


def test_capistrano_root_reads_the_current_release(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "20240501120000"
    make_app(release, {"config/puma.rb": "threads 2, 6\n", "REVISION": "abc123\n"})
    (tmp_path / "current").symlink_to(release)
    facts = load_app_facts(str(tmp_path))
    assert facts.puma_max_threads == 6
    assert facts.revision == "abc123"
    assert facts.root.endswith("current")


def test_missing_app_dir_and_missing_files_are_notes_not_errors(tmp_path: Path) -> None:
    assert load_app_facts(str(tmp_path / "nope")).notes == (f"{tmp_path / 'nope'}: not a directory",)
    facts = load_app_facts(str(tmp_path))
    assert facts.db_pool is None and facts.puma_max_threads is None and facts.sidekiq_concurrency is None
    assert {"config/database.yml: not found", "config/puma.rb: not found"} <= set(facts.notes)


def test_process_environment_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAILS_MAX_THREADS", "99")
    app = make_app(tmp_path, {}, {"config/database.yml": "rails70/config/database.yml"})
    assert load_app_facts(str(app)).db_pool == 5


# --------------------------------------------------------------------------- the reference app

@pytest.mark.skipif(not (E2E_APP / "config" / "database.yml").exists(), reason="reference app not built yet")
def test_reference_app_pool_is_smaller_than_puma_threads() -> None:
    facts = load_app_facts(str(E2E_APP))
    assert facts.db_pool is not None and facts.puma_max_threads is not None
    assert facts.db_pool < facts.puma_max_threads  # the mismatch the e2e pool phase relies on
    assert (facts.db_pool, facts.db_checkout_timeout, facts.puma_max_threads) == (3, 2.0, 8)
    assert facts.puma_workers == 0
    assert facts.sidekiq_concurrency == 5
    assert len(facts.revision) == 40
