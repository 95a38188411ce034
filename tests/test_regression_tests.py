"""Regression-test skeletons from incidents the reference app's real logs open
(tests/fixtures/logs/e2e/debug, scanned with the app's facts from tests/e2e/app)."""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Dict

import pytest
from support import FIXTURES, REPO, require

from agent.appfacts import load_app_facts
from agent.bundle import BundleBuilder
from agent.bundle.regression_tests import regression_tests
from agent.incidents import IncidentManager, IncidentStore
from agent.incidents.model import Incident
from agent.scan import scan
from agent.testing import FakeClock
from detectors.base import AppFacts

DEBUG = FIXTURES / "e2e" / "debug"
APP = REPO / "tests" / "e2e" / "app"


@pytest.fixture(scope="module")
def incidents(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Incident]:
    facts = load_app_facts(str(APP), {})
    result = scan([str(require(DEBUG / "production.log")), str(require(DEBUG / "sidekiq.log"))], facts=facts)
    store = IncidentStore(str(tmp_path_factory.mktemp("state")), FakeClock())
    IncidentManager(store, FakeClock(), [], host="h").observe(result.incidents)
    return {i.subject.get("endpoint") or i.subject.get("job_class") or i.subject.get("pool", ""): i
            for i in store.list_incidents()}


def test_n_plus_one_test_requests_the_endpoint_and_bounds_its_queries(incidents: Dict[str, Incident]):
    [(path, text)] = regression_tests(incidents["PostsController#index"], load_app_facts(str(APP), {}))
    assert path == "tests/test/integration/posts_controller_index_n_plus_one_test.rb"
    assert 'queries = sql_queries_during { get "/posts" }' in text  # the path from Bullet's "GET /posts"
    assert 'ActiveSupport::Notifications.subscribed(callback, "sql.active_record")' in text
    assert "Association to preload: Post => :author  (fix: Post.includes(:author))" in text
    assert "31 SQL queries per request seen, one shape repeated up to 30 times" in text
    assert "class PostsControllerIndexNPlusOneTest < ActionDispatch::IntegrationTest" in text
    assert "FILL IN: fixtures/factories" in text


def test_job_test_performs_the_job_with_the_logged_arguments(incidents: Dict[str, Incident]):
    [(path, text)] = regression_tests(incidents["AlwaysFailsJob"], AppFacts())
    assert path == "tests/test/jobs/always_fails_job_regression_test.rb"
    assert 'args = ["ba17eacf-' in text and "job.new.perform(*args)" in text
    assert "rescue PaymentGatewayError => e" in text and "flunk" in text


def test_pool_test_fires_puma_threads_worth_of_requests_at_the_holding_endpoint(incidents: Dict[str, Incident]):
    [(path, text)] = regression_tests(incidents["database"], load_app_facts(str(APP), {}))
    assert path == "tests/test/integration/connection_pool_exhaustion_test.rb"
    assert "CONCURRENCY = 8" in text and 'PATH = "/slow_hold?s=' in text  # 8 Puma threads > pool of 3
    assert "pool of 3, 8 Puma threads" in text and "self.use_transactional_tests = false" in text


def test_an_app_with_spec_gets_rspec_files(incidents: Dict[str, Incident], tmp_path: Path):
    (tmp_path / "spec").mkdir()
    facts = AppFacts(root=str(tmp_path))
    paths = [regression_tests(incidents[k], facts)[0] for k in ("PostsController#index", "AlwaysFailsJob", "database")]
    assert [p for p, _ in paths] == ["tests/spec/requests/posts_controller_index_n_plus_one_spec.rb",
                                     "tests/spec/jobs/always_fails_job_regression_spec.rb",
                                     "tests/spec/requests/connection_pool_exhaustion_spec.rb"]
    assert all('require "rails_helper"' in t for _, t in paths)
    assert "end.not_to raise_error(PaymentGatewayError)" in paths[1][1]


def test_the_bundle_carries_the_tests(incidents: Dict[str, Incident], tmp_path: Path):
    inc = incidents["PostsController#index"]
    path = BundleBuilder(str(tmp_path), FakeClock(), facts=load_app_facts(str(APP), {})).build(inc, [])
    with tarfile.open(path) as tar:
        names = tar.getnames()
        member = next(n for n in names if n.endswith("posts_controller_index_n_plus_one_test.rb"))
        text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    assert member.endswith("/tests/test/integration/posts_controller_index_n_plus_one_test.rb")
    assert 'get "/posts"' in text


def test_no_skeleton_for_what_cannot_be_reproduced(incidents: Dict[str, Incident]):
    inc = incidents["PostsController#index"]
    slow = Incident.from_dict(dict(inc.to_dict(), subject={"endpoint": "X#y", "problem": "slow_endpoint"}))
    assert regression_tests(slow, AppFacts()) == []
