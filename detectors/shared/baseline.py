"""Rolling per-key baselines with bounded memory, driven by event time only.

Detectors compare "now" against "what is normal for this key" (an endpoint, a job
class, a queue). Two tools:

``RollingBaseline(max_keys, max_samples, window_s=None, half_life_s=None)``
    Per key: the last ``max_samples`` values (and, with ``window_s``, only those not
    older than ``window_s`` before the newest time seen for that key), plus an
    exponentially weighted mean with half-life ``half_life_s`` of event time.
    ``update(key, value, ts)``; ``count/mean/median/p95/quantile/ewma(key)``.
    ``lazy_sort=True`` sorts a key's values when a quantile is asked for instead of
    on every update (same answers; for keys updated per event, queried rarely).
    Keys are LRU-evicted beyond ``max_keys``: an app with 5,000 endpoints and a
    scanner fed millions of lines keep a fixed footprint.

``LastValues(max_keys, max_samples)``
    The lean case of a lazily sorted ``RollingBaseline`` without a window or half-life:
    per key only the last ``max_samples`` values (no times, no means), sorted when a
    quantile is read. The same ``count/quantile/median/p95/max`` answers and the same
    LRU eviction, at a deque append per update (job durations: updated on every
    finished job, read only for the rare slow or stuck one).

``RecentVsBaseline(max_keys, recent_size, baseline_size)``
    Per key: a short "recent" window and a longer, *lagged* baseline made of the
    samples that fell out of the recent window. A spike therefore does not poison
    its own baseline until it has lasted ``recent_size`` samples; compare
    ``recent_median(key)`` against ``baseline_median(key)``; ``push(key, value, ts)``
    updates and returns both counts and medians in one call (the per-request path).

Both are deterministic: no wall clock, no randomness; the same updates in the same
order give the same answers. Memory is O(max_keys * samples).

    >>> b = RollingBaseline(max_keys=1000, max_samples=200)
    >>> for i, v in enumerate([3, 3, 4, 3]):
    ...     b.update("PostsController#index", v, ts=1000.0 + i)
    >>> b.median("PostsController#index"), b.count("PostsController#index")
    (3.0, 4)
"""
from __future__ import annotations

import bisect
import math
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from typing import Any, Deque, Hashable, Iterator, List, Optional, Tuple


def quantile(sorted_values: List[float], q: float) -> Optional[float]:
    """Linear-interpolated quantile of an already sorted list (q in 0..1)."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * min(max(q, 0.0), 1.0)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def _median(sorted_values: List[float]) -> Optional[float]:
    """``quantile(sorted_values, 0.5)`` with the same arithmetic, minus the generic steps (hot path)."""
    n = len(sorted_values)
    if n < 2:
        return float(sorted_values[0]) if n else None
    lo = (n - 1) >> 1  # floor((n - 1) * 0.5)
    frac = 0.0 if n & 1 else 0.5  # (n - 1) * 0.5 - lo
    return float(sorted_values[lo] + (sorted_values[lo + 1] - sorted_values[lo]) * frac)


class _Series:
    """The samples of one key, in arrival order and in value order.

    The value-ordered list is kept up to date on every update (``bisect.insort``/remove:
    O(1) median queries, for keys queried after each update), or, with ``lazy_sort``,
    dropped on update and rebuilt by the next query (for keys updated far more often
    than queried). Both give the same sorted values, hence the same quantiles.
    """

    __slots__ = ("samples", "max_samples", "total", "ewma", "ewma_ts", "first_ts", "last_ts", "_sorted", "_sum", "_lazy")

    def __init__(self, max_samples: int, lazy_sort: bool = False) -> None:
        self.samples: Deque[Tuple[float, float]] = deque()
        self.max_samples = max_samples
        self.total = 0  # every update ever, not only those still held
        self.ewma: Optional[float] = None
        self.ewma_ts: Optional[float] = None
        self.first_ts: Optional[float] = None
        self.last_ts: Optional[float] = None
        self._sorted: Optional[List[float]] = []  # None: stale (lazy_sort), rebuilt on the next query
        self._sum = 0.0
        self._lazy = lazy_sort

    def add(self, value: float, ts: float, window_s: Optional[float], half_life_s: Optional[float]) -> None:
        samples = self.samples
        if len(samples) >= self.max_samples:
            self.drop_oldest()
        samples.append((ts, value))
        if self._lazy:
            self._sorted = None
        else:
            bisect.insort(self._sorted, value)  # type: ignore[arg-type]
        self._sum += value
        self.total += 1
        if self.first_ts is None:
            self.first_ts = ts
        last_ts = self.last_ts
        if last_ts is None or ts > last_ts:
            self.last_ts = last_ts = ts
        if window_s is not None:
            self.expire(last_ts - window_s)
        if self.ewma is None or self.ewma_ts is None:
            self.ewma, self.ewma_ts = value, ts
        elif half_life_s:
            # the old mean's weight decays with elapsed event time; samples at the same
            # instant (or out of order) are averaged like a plain running mean
            dt = max(ts - self.ewma_ts, 0.0)
            keep = 0.5 ** (dt / half_life_s) if dt > 0 else 1.0 - 1.0 / min(self.total, len(samples) or 1)
            self.ewma = keep * self.ewma + (1.0 - keep) * value
            self.ewma_ts = max(ts, self.ewma_ts)
        else:
            self.ewma = self._sum / len(samples) if samples else value

    def drop_oldest(self) -> Tuple[float, float]:
        ts, value = self.samples.popleft()
        self._sum -= value
        ordered = self._sorted
        if ordered is not None:
            del ordered[bisect.bisect_left(ordered, value)]
        return ts, value

    def expire(self, oldest_ts: float) -> None:
        while self.samples and self.samples[0][0] < oldest_ts:
            self.drop_oldest()

    def sorted_values(self) -> List[float]:
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted([v for _, v in self.samples])
        return ordered


class _PerKey:
    """What both per-key baselines answer the same way: ``_table`` maps a key (LRU order) to its
    samples; ``quantile`` is each one's own."""

    _table: "OrderedDict[Hashable, Any]"

    def quantile(self, key: Hashable, q: float) -> Optional[float]:  # pragma: no cover - interface
        raise NotImplementedError

    def __contains__(self, key: Hashable) -> bool:
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)

    def keys(self) -> Iterator[Hashable]:
        return iter(self._table)

    def forget(self, key: Hashable) -> None:
        self._table.pop(key, None)

    def median(self, key: Hashable) -> Optional[float]:
        return self.quantile(key, 0.5)

    def p95(self, key: Hashable) -> Optional[float]:
        return self.quantile(key, 0.95)


class RollingBaseline(_PerKey):
    """Per-key rolling statistics over the last N samples (and/or a time window).

    ``max_keys``     keys kept; the least recently *updated* key is evicted first
    ``max_samples``  values kept per key (a deque: oldest dropped first)
    ``window_s``     if set, values older than ``window_s`` before that key's newest
                     timestamp are dropped too
    ``half_life_s``  if set, ``ewma(key)`` is an exponentially weighted mean whose
                     weights halve every ``half_life_s`` seconds of *event* time;
                     otherwise ``ewma`` equals ``mean``
    ``lazy_sort``    sort a key's values when a quantile is asked for, not on every
                     update: for keys updated on every event but rarely queried
    """

    def __init__(
        self,
        max_keys: int = 5000,
        max_samples: int = 200,
        window_s: Optional[float] = None,
        half_life_s: Optional[float] = None,
        lazy_sort: bool = False,
    ) -> None:
        if max_keys < 1 or max_samples < 1:
            raise ValueError("max_keys and max_samples must be >= 1")
        self.max_keys = max_keys
        self.max_samples = max_samples
        self.window_s = window_s
        self.half_life_s = half_life_s
        self.lazy_sort = lazy_sort
        self._table: "OrderedDict[Hashable, _Series]" = OrderedDict()
        self.evicted = 0  # keys dropped by the LRU, for self-metrics

    def update(self, key: Hashable, value: float, ts: float) -> Optional[Hashable]:
        """Add one sample; returns the key the LRU evicted to make room, if any."""
        evicted: Optional[Hashable] = None
        series = self._table.get(key)
        if series is None:
            series = self._table[key] = _Series(self.max_samples, self.lazy_sort)
            if len(self._table) > self.max_keys:
                evicted = self._table.popitem(last=False)[0]
                self.evicted += 1
        else:
            self._table.move_to_end(key)
        series.add(float(value), float(ts), self.window_s, self.half_life_s)
        return evicted

    def count(self, key: Hashable) -> int:
        """Samples currently held for ``key`` (0 for an unknown key)."""
        series = self._table.get(key)
        return len(series.samples) if series else 0

    def total(self, key: Hashable) -> int:
        """Updates ever made to ``key`` since it was (last) created."""
        series = self._table.get(key)
        return series.total if series else 0

    def first_seen(self, key: Hashable) -> Optional[float]:
        series = self._table.get(key)
        return series.first_ts if series else None

    def last_seen(self, key: Hashable) -> Optional[float]:
        series = self._table.get(key)
        return series.last_ts if series else None

    def samples(self, key: Hashable) -> List[Tuple[float, float]]:
        """The (ts, value) pairs held for ``key``, oldest first (a copy)."""
        series = self._table.get(key)
        return list(series.samples) if series else []

    def mean(self, key: Hashable) -> Optional[float]:
        series = self._table.get(key)
        if not series or not series.samples:
            return None
        return series._sum / len(series.samples)

    def quantile(self, key: Hashable, q: float) -> Optional[float]:
        series = self._table.get(key)
        return quantile(series.sorted_values(), q) if series else None

    def max(self, key: Hashable) -> Optional[float]:
        series = self._table.get(key)
        values = series.sorted_values() if series else []
        return values[-1] if values else None

    def ewma(self, key: Hashable) -> Optional[float]:
        series = self._table.get(key)
        return series.ewma if series else None


class LastValues(_PerKey):
    """Per key, the last ``max_samples`` values; quantiles sort them when read (see the module doc).

    Answers exactly what ``RollingBaseline(max_keys, max_samples, lazy_sort=True)`` answers for
    ``count``, ``quantile``, ``median``, ``p95``, ``max``, ``keys`` and ``update``'s evicted key.
    """

    def __init__(self, max_keys: int = 5000, max_samples: int = 200) -> None:
        if max_keys < 1 or max_samples < 1:
            raise ValueError("max_keys and max_samples must be >= 1")
        self.max_keys = max_keys
        self.max_samples = max_samples
        # key -> [values oldest first, their sorted copy or None when stale]
        self._table: "OrderedDict[Hashable, list]" = OrderedDict()  # type: ignore[type-arg]
        self.evicted = 0

    def update(self, key: Hashable, value: float, ts: Optional[float] = None) -> Optional[Hashable]:  # noqa: ARG002 - ts: RollingBaseline's signature
        """Add one value; returns the key the LRU evicted to make room, if any."""
        entry = self._table.get(key)
        if entry is not None:  # hot path: a known key
            self._table.move_to_end(key)
            entry[0].append(float(value))
            entry[1] = None
            return None
        evicted: Optional[Hashable] = None
        self._table[key] = [deque((float(value),), maxlen=self.max_samples), None]
        if len(self._table) > self.max_keys:
            evicted = self._table.popitem(last=False)[0]
            self.evicted += 1
        return evicted

    def _sorted(self, key: Hashable) -> List[float]:
        entry = self._table.get(key)
        if entry is None:
            return []
        ordered = entry[1]
        if ordered is None:
            ordered = entry[1] = sorted(entry[0])
        return ordered  # type: ignore[no-any-return]

    def count(self, key: Hashable) -> int:
        entry = self._table.get(key)
        return len(entry[0]) if entry is not None else 0

    def quantile(self, key: Hashable, q: float) -> Optional[float]:
        return quantile(self._sorted(key), q) if key in self._table else None

    def max(self, key: Hashable) -> Optional[float]:
        values = self._sorted(key)
        return values[-1] if values else None


class RecentVsBaseline:
    """A short recent window per key, and a lagged baseline fed by what leaves it.

    Sample i enters ``recent``; when ``recent`` holds more than ``recent_size`` values
    its oldest moves into ``baseline`` (itself capped at ``baseline_size``). So the
    baseline answers "what was normal before the last ``recent_size`` samples", and a
    jump shows as ``recent_median / baseline_median`` until the new level has lasted
    long enough to become the baseline (a steady level therefore never looks like a
    spike). ``baseline_count`` is how much history backs the comparison.
    """

    def __init__(self, max_keys: int = 5000, recent_size: int = 20, baseline_size: int = 200) -> None:
        if recent_size < 1:
            raise ValueError("recent_size must be >= 1")
        self.recent = RollingBaseline(max_keys=max_keys, max_samples=recent_size + 1)
        self.baseline = RollingBaseline(max_keys=max_keys, max_samples=baseline_size)
        self.recent_size = recent_size

    def update(self, key: Hashable, value: float, ts: float) -> None:
        recent = self.recent
        evicted = recent.update(key, value, ts)
        if evicted is not None:
            self.baseline.forget(evicted)  # a key evicted from one side must not linger on the other
        series = recent._table[key]
        if len(series.samples) > self.recent_size:
            old_ts, old_value = series.drop_oldest()
            self.baseline.update(key, old_value, old_ts)

    def push(self, key: Hashable, value: float, ts: float) -> Tuple[int, int, Optional[float], Optional[float]]:
        """``update``, then (recent_count, baseline_count, recent_median, baseline_median) of ``key``.

        The same numbers as the four separate calls, in one step: a detector that compares
        the windows after every sample (once per request) calls this. ``update`` and the four
        readers are the reference (tests/detectors/shared/test_baseline_fast_paths.py holds
        this to them, answers and the state left behind).
        """
        by_key = self.recent._table
        recent = by_key.get(key)
        base = self.baseline._table.get(key) if recent is not None else None
        if base is None:  # a new key, or one still filling its windows: the generic steps
            self.update(key, value, ts)
            recent = by_key[key]
            base = self.baseline._table.get(key)
            if base is None:
                return len(recent.samples), 0, _median(recent.sorted_values()), None
            ordered, n = recent._sorted, len(recent.samples)
        else:
            # hot path (both windows exist, once per request): update()'s steps with their calls
            # inlined -- RollingBaseline.update and _Series.add(value, ts, None, None) of ``recent``,
            # its drop_oldest, the same add of that sample to ``baseline`` (and its drop_oldest).
            # A series in a table has had an add, so add's first-sample branches (first_ts, ewma
            # still None) and its window/half-life branches (neither side has one) cannot run here.
            value = float(value)
            ts = float(ts)
            by_key.move_to_end(key)
            samples = recent.samples
            if len(samples) >= recent.max_samples:  # only after recent.update() alone filled it
                recent.drop_oldest()
            samples.append((ts, value))
            ordered = recent._sorted
            insort(ordered, value)  # type: ignore[arg-type]
            total = recent._sum + value
            recent.total += 1
            if ts > recent.last_ts:  # type: ignore[operator]
                recent.last_ts = ts
            n = len(samples)
            recent.ewma = total / n
            if n > self.recent_size:
                moved = samples.popleft()  # recent.drop_oldest(); the same (ts, value) pair enters baseline
                old_ts, old_value = moved
                recent._sum = total - old_value
                del ordered[bisect_left(ordered, old_value)]  # type: ignore[arg-type]
                n -= 1
                self.baseline._table.move_to_end(key)
                base_samples = base.samples  # base.add(old_value, old_ts, None, None) from here on
                base_ordered = base._sorted
                base_total = base._sum
                if len(base_samples) >= base.max_samples:  # base.drop_oldest()
                    dropped = base_samples.popleft()[1]
                    base_total -= dropped
                    del base_ordered[bisect_left(base_ordered, dropped)]  # type: ignore[arg-type]
                base_samples.append(moved)
                insort(base_ordered, old_value)  # type: ignore[arg-type]
                base_total += old_value
                base._sum = base_total
                base.total += 1
                if old_ts > base.last_ts:  # type: ignore[operator]
                    base.last_ts = old_ts
                base.ewma = base_total / len(base_samples)
            else:
                recent._sum = total
        # _median of both sorted windows, inlined (neither is empty here)
        lo = (n - 1) >> 1
        now = float(ordered[lo] + (ordered[lo + 1] - ordered[lo]) * (0.0 if n & 1 else 0.5)) if n > 1 else float(ordered[0])  # type: ignore[index]
        ordered, m = base._sorted, len(base.samples)
        lo = (m - 1) >> 1
        before = float(ordered[lo] + (ordered[lo + 1] - ordered[lo]) * (0.0 if m & 1 else 0.5)) if m > 1 else float(ordered[0])  # type: ignore[index]
        return n, m, now, before

    def recent_count(self, key: Hashable) -> int:
        return self.recent.count(key)

    def baseline_count(self, key: Hashable) -> int:
        return self.baseline.count(key)

    def recent_median(self, key: Hashable) -> Optional[float]:
        return self.recent.median(key)

    def baseline_median(self, key: Hashable) -> Optional[float]:
        return self.baseline.median(key)
