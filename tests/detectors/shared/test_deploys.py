from __future__ import annotations

from agent.events import Deploy
from detectors.base import AppFacts
from detectors.shared.deploys import DeployMarkers

T = 1_700_000_000.0


def test_last_deploy_before_picks_the_latest_marker_at_or_before_the_time():
    d = DeployMarkers()
    d.observe(Deploy(ts=T, revision="aaa"))
    d.observe(Deploy(ts=T + 3600, revision="bbb"))
    assert d.last_deploy_before(T - 1) is None
    assert d.last_deploy_before(T).revision == "aaa"
    assert d.last_deploy_before(T + 3599).revision == "aaa"
    assert d.last_deploy_before(T + 7200).revision == "bbb"


def test_revision_file_time_from_app_facts_is_a_deploy():
    d = DeployMarkers(AppFacts(revision="5e2d1c0b", revision_time=T))
    marker = d.last_deploy_before(T + 10)
    assert marker is not None and marker.revision == "5e2d1c0b" and marker.ts == T


def test_the_same_release_seen_twice_is_one_deploy():
    d = DeployMarkers(AppFacts(revision="abc", revision_time=T + 5))
    d.observe(Deploy(ts=T, revision="abc", source="deploy.log", line=7))
    assert len(d.markers) == 1
    assert d.markers[0].ts == T  # the earlier time wins


def test_out_of_order_markers_are_kept_sorted_and_bounded():
    d = DeployMarkers(max_deploys=3)
    for i in (5, 1, 4, 2, 3):
        d.add(T + i * 3600, f"r{i}")
    assert [m.revision for m in d.markers] == ["r3", "r4", "r5"]


def test_deploys_between_is_half_open():
    d = DeployMarkers()
    d.add(T, "a")
    d.add(T + 3600, "b")
    assert [m.revision for m in d.deploys_between(T, T + 3600)] == ["b"]
    assert [m.revision for m in d.deploys_between(None, T)] == ["a"]


def test_key_first_seen_after_the_deploy_is_new_when_the_stream_was_watched_before():
    d = DeployMarkers()
    d.see("PostsController#index", T - 600)
    d.add(T, "abc")
    d.see("PostsController#feed", T + 60)
    assert d.is_new_since_deploy("PostsController#feed", T + 120)
    assert not d.is_new_since_deploy("PostsController#index", T + 120)


def test_nothing_is_new_when_the_log_starts_after_the_deploy():
    d = DeployMarkers()
    d.add(T, "abc")
    d.see("PostsController#feed", T + 60)  # first thing we ever saw
    assert not d.is_new_since_deploy("PostsController#feed", T + 120)


def test_min_history_before_the_deploy_is_required():
    d = DeployMarkers(min_history_s=3600)
    d.watch(T - 60)
    d.add(T, "abc")
    d.see("k", T + 10)
    assert not d.is_new_since_deploy("k", T + 20)


def test_first_sightings_are_bounded():
    d = DeployMarkers(max_keys=10)
    for i in range(100):
        d.see(f"k{i}", T + i)
    assert d.first_seen("k0") is None
    assert d.first_seen("k99") == T + 99
