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


# --- LastValues: the lean lazily sorted window answers what RollingBaseline answers ---------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from detectors.shared.baseline import LastValues  # noqa: E402

_updates = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 5))),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(_updates, st.integers(1, 4), st.integers(1, 12), st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]))
def test_last_values_equal_a_lazily_sorted_rolling_baseline(updates, max_keys, max_samples, q) -> None:
    lean = LastValues(max_keys=max_keys, max_samples=max_samples)
    full = RollingBaseline(max_keys=max_keys, max_samples=max_samples, lazy_sort=True)
    for i, (key, value) in enumerate(updates):
        assert lean.update(key, value) == full.update(key, value, 1000.0 + i)
        if i % 3 == 0:  # reads between updates too: the sorted copy must go stale on update
            for k in "abcdefg":
                assert lean.count(k) == full.count(k)
                assert lean.quantile(k, q) == full.quantile(k, q)
                assert lean.p95(k) == full.p95(k) and lean.median(k) == full.median(k) and lean.max(k) == full.max(k)
                assert (k in lean) == (k in full)
    assert list(lean.keys()) == list(full.keys()) and len(lean) == len(full) and lean.evicted == full.evicted


def test_last_values_forget_a_key_and_reject_empty_bounds() -> None:
    lean = LastValues(max_keys=2, max_samples=3)
    for v in (5.0, 1.0, 3.0, 2.0):
        lean.update("a", v)
    assert lean.count("a") == 3 and lean.max("a") == 3.0 and lean.median("a") == 2.0  # 5.0 fell out
    lean.forget("a")
    assert lean.count("a") == 0 and lean.p95("a") is None and lean.max("a") is None
    for bad in ((0, 1), (1, 0)):
        try:
            LastValues(*bad)
        except ValueError:
            continue
        raise AssertionError(f"LastValues{bad} accepted")


def _whole_state(b: RollingBaseline) -> list:  # type: ignore[type-arg]
    return [(k, b.samples(k), b.count(k), b.total(k), b.mean(k), b.ewma(k), b.first_seen(k), b.last_seen(k), b.median(k),
             b.p95(k)) for k in b.keys()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.floats(-1e6, 1e6, allow_nan=False), st.floats(0.0, 1e4)), max_size=300),
       st.integers(1, 3), st.integers(1, 6), st.integers(1, 12))
def test_push_leaves_both_windows_as_update_does(steps, max_keys, recent_size, baseline_size) -> None:
    fast = RecentVsBaseline(max_keys=max_keys, recent_size=recent_size, baseline_size=baseline_size)
    slow = RecentVsBaseline(max_keys=max_keys, recent_size=recent_size, baseline_size=baseline_size)
    for key, value, ts in steps:  # times out of order too
        got = fast.push(key, value, ts)
        slow.update(key, value, ts)
        assert got == (slow.recent_count(key), slow.baseline_count(key), slow.recent_median(key), slow.baseline_median(key))
        assert _whole_state(fast.recent) == _whole_state(slow.recent)
        assert _whole_state(fast.baseline) == _whole_state(slow.baseline)
