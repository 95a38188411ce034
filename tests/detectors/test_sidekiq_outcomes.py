"""sidekiq_failures' Outcomes (one deque per class, summed when read) against the two-window model it replaced."""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Deque, Optional, Tuple

from hypothesis import given, settings, strategies as st

from detectors.sidekiq_failures.state import Outcomes


class TwoWindows:
    """The reference: a recent deque, a baseline deque fed by what leaves it, and running sums."""

    def __init__(self, max_keys: int, recent: int, baseline: int) -> None:
        self.max_keys, self.recent_size, self.baseline_size = max_keys, recent, baseline
        self.keys: "OrderedDict[str, Tuple[Deque[int], Deque[int]]]" = OrderedDict()

    def update(self, key: str, failed: bool) -> None:
        entry = self.keys.get(key)
        if entry is None:
            entry = self.keys[key] = (deque(), deque())
            if len(self.keys) > self.max_keys:
                self.keys.popitem(last=False)
        recent, baseline = entry
        recent.append(1 if failed else 0)
        if len(recent) > self.recent_size:
            baseline.append(recent.popleft())
            if len(baseline) > self.baseline_size:
                baseline.popleft()

    def rates(self, key: str) -> Tuple[Optional[float], Optional[float], int]:
        entry = self.keys.get(key)
        if entry is None:
            return None, None, 0
        recent, baseline = entry
        return (sum(recent) / len(recent) if recent else None, sum(baseline) / len(baseline) if baseline else None,
                len(baseline))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=600), st.integers(1, 3),
       st.integers(1, 25), st.integers(1, 60))
def test_outcomes_give_the_rates_of_the_two_window_model(updates, max_keys, recent, baseline) -> None:
    got, want = Outcomes(max_keys, recent, baseline), TwoWindows(max_keys, recent, baseline)
    for i, (key, failed) in enumerate(updates):
        got.update(key, failed)
        want.update(key, failed)
        if i % 5 == 0:
            for k in "abcde":
                assert got.rates(k) == want.rates(k)
    for k in "abcde":
        assert got.rates(k) == want.rates(k)


def test_a_class_that_never_ran_has_no_rates() -> None:
    assert Outcomes(10).rates("NeverRan") == (None, None, 0)
