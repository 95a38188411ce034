"""Time series of the signals the detectors decide on, aggregated while scanning.

The collector rides in the pipeline next to the detectors (it has their ``kinds`` /
``feed`` / ``flush`` shape and never reports findings), so it sees exactly the events
they see. Memory stays bounded whatever the log size:

* counts go into buckets of ``width`` seconds; when the span of the log needs more than
  ``MAX_BUCKETS`` buckets the width steps up the ``WIDTHS`` ladder (each width a multiple
  of the one before, so buckets merge exactly) and every series is re-bucketed;
* at most ``MAX_KEYS`` endpoints / error classes / job classes are tracked per family
  (the first ones seen; later keys are counted in ``dropped_keys``).

A 1 GB log therefore costs at most MAX_KEYS × MAX_BUCKETS small lists per family.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from agent.events import Event

#: bucket widths in seconds; each divides the next, so re-bucketing only merges
WIDTHS: Tuple[int, ...] = (1, 2, 10, 30, 60, 120, 600, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 300
MAX_KEYS = 200
MAX_DEPLOYS = 50
ALL = "*"  # the key of the all-requests series

# counter slots of one bucket, per family
REQ_COUNT, REQ_5XX, REQ_DB_MS, REQ_DB_N, REQ_QUERIES, REQ_QUERIES_N = range(6)
JOB_DONE, JOB_FAIL = range(2)

Buckets = Dict[int, List[float]]


class SeriesCollector:
    """Per-bucket counters of requests (per endpoint), errors (per class) and jobs (per class)."""

    name = "series"
    kinds: FrozenSet[str] = frozenset({"request", "error", "job", "deploy"})

    def __init__(self) -> None:
        self.width = WIDTHS[0]
        self.requests: Dict[str, Buckets] = {}
        self.errors: Dict[str, Buckets] = {}
        self.jobs: Dict[str, Buckets] = {}
        self.deploys: List[Tuple[float, str]] = []
        self.first_ts: Optional[float] = None
        self.last_ts: Optional[float] = None
        self.dropped_keys = 0
        self._lo: Optional[int] = None  # smallest / largest bucket index seen
        self._hi: Optional[int] = None
        # per family, the slots of bucket _cached_idx looked up so far, by key: caches
        # emptied when the bucket changes or the width does (_widen makes new slot lists)
        self._cached_idx: Optional[int] = None
        self._cached_requests: Dict[str, List[float]] = {}
        self._cached_errors: Dict[str, List[float]] = {}
        self._cached_jobs: Dict[str, List[float]] = {}

    # -- the detector-shaped interface the pipeline calls -----------------------------
    def feed(self, event: Event) -> None:
        if event.kind in self.kinds:
            for _, exc in self.feed_batch((event,)):
                raise exc

    def feed_batch(self, events: Sequence[Event]) -> List[Tuple[int, Exception]]:
        """``feed`` on each event of the batch in one loop: the pipeline hands the collector
        whole batches (no call per event). An event it cannot count (a non-numeric field,
        say) is skipped and returned as (its index, the exception), for the pipeline to report.

        Hot path (every request and job line). The first/last times live in locals, stored
        back before ``_extend`` (which reads them) and when the loop ends; width, bucket range
        and cached bucket are reloaded after any call that may change them (``_index``,
        ``_extend``). An event in the cached bucket skips the bucket arithmetic: ``ts // width``
        is that bucket exactly when ``start <= ts < start + width``. ``PlainSeries`` in
        tests/test_series_cache.py (``_index``/``_slot`` per event) is the reference."""
        skipped: List[Tuple[int, Exception]] = []
        kinds = self.kinds
        deploys = self.deploys
        cached_requests, cached_errors, cached_jobs = self._cached_requests, self._cached_errors, self._cached_jobs
        first, last = self.first_ts, self.last_ts
        width, lo, hi, cached_idx = self.width, self._lo, self._hi, self._cached_idx
        start = end = 0  # the cached bucket's time range; empty while there is none
        if cached_idx is not None:
            start = cached_idx * width
            end = start + width
        try:
            for position, event in enumerate(events):
                kind = event.kind
                if kind not in kinds:
                    continue
                try:
                    ts = event.ts
                    if ts is None:
                        continue
                    if kind == "deploy":
                        if len(deploys) < MAX_DEPLOYS:
                            deploys.append((ts, getattr(event, "revision", "")))
                        continue
                    if first is None:
                        idx = self._index(ts)
                        first, last = self.first_ts, self.last_ts
                        width, lo, hi, cached_idx = self.width, self._lo, self._hi, self._cached_idx
                    else:  # _index inlined
                        if ts < first:
                            first = ts
                        elif ts > last:  # type: ignore[operator]
                            last = ts
                        if start <= ts < end:
                            idx = cached_idx  # type: ignore[assignment]
                        else:
                            idx = int(ts // width)
                            if idx < lo or idx > hi:  # type: ignore[operator]
                                self.first_ts, self.last_ts = first, last
                                idx = self._extend(ts, idx)
                                width, lo, hi, cached_idx = self.width, self._lo, self._hi, self._cached_idx
                    if idx != cached_idx:
                        self._forget_cached(idx)
                        cached_idx = idx
                        start = idx * width
                        end = start + width
                    if kind == "request":
                        status = event.status  # type: ignore[attr-defined]
                        is_5xx = 1.0 if status is not None and status >= 500 else 0.0
                        db_ms = event.db_ms  # type: ignore[attr-defined]
                        queries = event.queries  # type: ignore[attr-defined]
                        for key in (ALL, event.endpoint):  # type: ignore[attr-defined]
                            if not key:
                                continue
                            slot = cached_requests.get(key)
                            if slot is None:
                                slot = self._cached_slot(self.requests, cached_requests, key, idx, 6)
                                if slot is None:
                                    continue
                            slot[REQ_COUNT] += 1
                            slot[REQ_5XX] += is_5xx
                            if db_ms is not None:
                                slot[REQ_DB_MS] += db_ms
                                slot[REQ_DB_N] += 1
                            if queries is not None:
                                slot[REQ_QUERIES] += queries
                                slot[REQ_QUERIES_N] += 1
                    elif kind == "error":
                        key = event.error_class or "?"  # type: ignore[attr-defined]
                        slot = cached_errors.get(key) or self._cached_slot(self.errors, cached_errors, key, idx, 1)
                        if slot is not None:
                            slot[0] += 1
                    else:  # job
                        state = event.state  # type: ignore[attr-defined]
                        if state == "done" or state == "fail":
                            key = event.job_class or "?"  # type: ignore[attr-defined]
                            slot = cached_jobs.get(key) or self._cached_slot(self.jobs, cached_jobs, key, idx, 2)
                            if slot is not None:
                                slot[JOB_DONE if state == "done" else JOB_FAIL] += 1
                except Exception as exc:  # noqa: BLE001 - reported by the pipeline, like a detector's
                    skipped.append((position, exc))
        finally:
            self.first_ts, self.last_ts = first, last
        return skipped

    def flush(self, until: Optional[float]) -> list:  # noqa: ARG002 - never reports findings
        return []

    # -- bucketing ---------------------------------------------------------------------
    def _index(self, ts: float) -> int:
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        return self._extend(ts, int(ts // self.width))

    def _extend(self, ts: float, idx: int) -> int:
        """Take in bucket ``idx`` of ``ts`` (first/last times already updated); its index after any widening."""
        lo, hi = self._lo, self._hi
        if lo is None or idx < lo:
            lo = self._lo = idx
        if hi is None or idx > hi:
            hi = self._hi = idx
        # at the widest width re-bucketing would merge nothing: a log spanning more than
        # MAX_BUCKETS days (or one line stamped years off) keeps one bucket per day seen,
        # instead of copying every series on every event (issue 18: 3,400 lines/s)
        if hi - lo >= MAX_BUCKETS and self.width < WIDTHS[-1]:
            self._widen()
            idx = int(ts // self.width)
        return idx

    def _widen(self) -> None:
        assert self.first_ts is not None and self.last_ts is not None
        width = self.width
        for candidate in WIDTHS:
            width = candidate
            if candidate > self.width and int(self.last_ts // candidate) - int(self.first_ts // candidate) < MAX_BUCKETS:
                break
        factor = width // self.width
        for family in (self.requests, self.errors, self.jobs):
            for key, buckets in family.items():
                merged: Buckets = {}
                for idx, counts in buckets.items():
                    into = merged.get(idx // factor)
                    if into is None:
                        merged[idx // factor] = list(counts)
                    else:
                        for i, value in enumerate(counts):
                            into[i] += value
                family[key] = merged
        self.width = width
        self._forget_cached(None)
        self._lo = int(self.first_ts // width)
        self._hi = int(self.last_ts // width)

    def _forget_cached(self, idx: Optional[int]) -> None:
        self._cached_idx = idx
        self._cached_requests.clear()
        self._cached_errors.clear()
        self._cached_jobs.clear()

    def _cached_slot(self, family: Dict[str, Buckets], cached: Dict[str, List[float]], key: str, idx: int, size: int) -> Optional[List[float]]:
        slot = self._slot(family, key, idx, size)
        if slot is not None:  # a key past MAX_KEYS is counted in dropped_keys on every event, as before
            cached[key] = slot
        return slot

    def _slot(self, family: Dict[str, Buckets], key: str, idx: int, size: int) -> Optional[List[float]]:
        buckets = family.get(key)
        if buckets is None:
            if len(family) >= MAX_KEYS:
                self.dropped_keys += 1
                return None
            buckets = family[key] = {}
        slot = buckets.get(idx)
        if slot is None:
            slot = buckets[idx] = [0.0] * size
        return slot

    # -- reading -----------------------------------------------------------------------
    def axis(self) -> Tuple[float, int]:
        """Start time of the first bucket and the number of buckets of the whole log."""
        if self._lo is None or self._hi is None:
            return 0.0, 0
        return float(self._lo * self.width), self._hi - self._lo + 1

    def column(self, family: Dict[str, Buckets], key: str, slot: int, per: Optional[int] = None) -> Optional[List[float]]:
        """One counter of one key over the whole axis, zero-filled; ``per`` divides by another slot."""
        buckets = family.get(key)
        if buckets is None or self._lo is None:
            return None
        _, n = self.axis()
        out = [0.0] * n
        for idx, counts in buckets.items():
            pos = idx - self._lo
            if 0 <= pos < n:
                if per is None:
                    out[pos] = counts[slot]
                elif counts[per]:
                    out[pos] = round(counts[slot] / counts[per], 2)
        return out
