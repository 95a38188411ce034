from __future__ import annotations

import pytest

from detectors.shared.baseline import RecentVsBaseline, RollingBaseline, quantile


def test_median_p95_mean_and_count_of_one_key():
    b = RollingBaseline(max_keys=10, max_samples=100)
    for i, v in enumerate(range(1, 101)):
        b.update("PostsController#index", v, ts=1000.0 + i)
    assert b.count("PostsController#index") == 100
    assert b.median("PostsController#index") == pytest.approx(50.5)
    assert b.p95("PostsController#index") == pytest.approx(95.05)
    assert b.mean("PostsController#index") == pytest.approx(50.5)
    assert b.max("PostsController#index") == 100


def test_unknown_key_has_no_statistics():
    b = RollingBaseline()
    assert b.count("nope") == 0 and b.median("nope") is None and b.mean("nope") is None and b.p95("nope") is None


def test_only_the_last_max_samples_values_are_kept():
    b = RollingBaseline(max_keys=10, max_samples=5)
    for i, v in enumerate([100, 100, 100, 1, 2, 3, 4, 5]):
        b.update("k", v, ts=float(i))
    assert b.count("k") == 5
    assert b.total("k") == 8
    assert b.median("k") == 3.0
    assert b.mean("k") == pytest.approx(3.0)  # the running sum forgot the dropped values


def test_time_window_drops_old_samples_by_event_time():
    b = RollingBaseline(max_keys=10, max_samples=100, window_s=60)
    b.update("k", 1000, ts=0.0)
    b.update("k", 1, ts=30.0)
    b.update("k", 2, ts=90.0)  # the sample at t=0 is now older than 60 s
    assert b.count("k") == 2
    assert b.max("k") == 2


def test_keys_are_capped_with_least_recently_updated_evicted_first():
    b = RollingBaseline(max_keys=3, max_samples=10)
    for key in ("a", "b", "c"):
        b.update(key, 1, ts=0.0)
    b.update("a", 1, ts=1.0)  # "b" is now the least recently updated
    evicted = b.update("d", 1, ts=2.0)
    assert evicted == "b"
    assert set(b.keys()) == {"a", "c", "d"}
    assert b.evicted == 1


def test_five_thousand_endpoints_do_not_grow_memory_beyond_the_cap():
    b = RollingBaseline(max_keys=100, max_samples=10)
    for i in range(5000):
        b.update(f"Controller{i}#index", i, ts=float(i))
    assert len(b) == 100


def test_ewma_with_half_life_weighs_recent_event_time_more():
    b = RollingBaseline(max_keys=10, max_samples=100, half_life_s=60)
    b.update("k", 0, ts=0.0)
    b.update("k", 100, ts=60.0)  # one half-life later: halfway
    assert b.ewma("k") == pytest.approx(50.0)


def test_results_are_deterministic_for_the_same_updates():
    def run():
        b = RollingBaseline(max_keys=5, max_samples=7, half_life_s=30)
        for i in range(50):
            b.update(f"k{i % 7}", (i * 37) % 11, ts=float(i))
        return [(k, b.median(k), b.ewma(k)) for k in sorted(b.keys())]

    assert run() == run()


def test_quantile_interpolates():
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([], 0.5) is None


def test_recent_vs_baseline_keeps_a_spike_out_of_its_own_baseline():
    r = RecentVsBaseline(max_keys=10, recent_size=5, baseline_size=100)
    for i in range(30):
        r.update("e", 3, ts=float(i))
    for i in range(30, 35):
        r.update("e", 40, ts=float(i))
    assert r.recent_median("e") == 40
    assert r.baseline_median("e") == 3
    assert r.baseline_count("e") == 30


def test_recent_vs_baseline_steady_level_is_its_own_baseline():
    r = RecentVsBaseline(max_keys=10, recent_size=5, baseline_size=100)
    for i in range(60):
        r.update("e", 40, ts=float(i))
    assert r.recent_median("e") == r.baseline_median("e") == 40


def test_recent_vs_baseline_evicting_a_key_clears_both_sides():
    r = RecentVsBaseline(max_keys=2, recent_size=1, baseline_size=10)
    for key in ("a", "b", "c"):
        r.update(key, 1, ts=0.0)
        r.update(key, 1, ts=1.0)
    assert r.baseline_count("a") == 0 and r.recent_count("a") == 0
    assert r.baseline_count("c") == 1
    assert len(r.baseline) <= 2
