"""The fast paths of detectors.shared.baseline give exactly the numbers of the generic ones."""
from __future__ import annotations

import random

from detectors.shared.baseline import RecentVsBaseline, RollingBaseline, _median, quantile


def test_median_helper_equals_generic_quantile_for_every_length() -> None:
    rng = random.Random(7)
    assert _median([]) is None and quantile([], 0.5) is None
    for n in range(1, 60):
        values = sorted(rng.choice([0.0, 1.0, 2.5, rng.random() * 1000]) for _ in range(n))
        assert _median(values) == quantile(values, 0.5)


def test_push_returns_what_the_four_separate_calls_return() -> None:
    rng = random.Random(11)
    fast = RecentVsBaseline(max_keys=3, recent_size=10, baseline_size=40)
    slow = RecentVsBaseline(max_keys=3, recent_size=10, baseline_size=40)
    for i in range(3000):
        key = rng.choice("abcde")  # more keys than max_keys: evictions too
        value = float(rng.randint(0, 50))
        got = fast.push(key, value, 1000.0 + i)
        slow.update(key, value, 1000.0 + i)
        want = (slow.recent_count(key), slow.baseline_count(key), slow.recent_median(key), slow.baseline_median(key))
        assert got == want


def test_lazy_sort_gives_the_same_quantiles_as_sorting_on_every_update() -> None:
    rng = random.Random(3)
    eager = RollingBaseline(max_keys=4, max_samples=50, window_s=300.0)
    lazy = RollingBaseline(max_keys=4, max_samples=50, window_s=300.0, lazy_sort=True)
    for i in range(5000):
        key = rng.choice("abcdef")
        value, ts = rng.random() * 100, 1000.0 + i * rng.random()
        assert eager.update(key, value, ts) == lazy.update(key, value, ts)
        if i % 7 == 0:
            for k in "abcdef":
                assert lazy.p95(k) == eager.p95(k)
                assert lazy.median(k) == eager.median(k)
                assert lazy.max(k) == eager.max(k)
                assert lazy.count(k) == eager.count(k) and lazy.mean(k) == eager.mean(k)
