"""SeriesCollector's inlined feed (cached bucket slots) counts exactly what the plain per-event lookups count."""
from __future__ import annotations

from hypothesis import example, given, settings, strategies as st

import agent.series as series_module
from agent.events import Deploy, Error, Job, Request
from agent.series import ALL, JOB_DONE, JOB_FAIL, REQ_5XX, REQ_COUNT, REQ_DB_MS, REQ_DB_N, REQ_QUERIES, REQ_QUERIES_N, SeriesCollector


class PlainSeries(SeriesCollector):
    """The reference: every event looks its bucket and slot up through _index and _slot."""

    def feed(self, event):  # type: ignore[no-untyped-def]
        ts = event.ts
        if ts is None:
            return
        if event.kind == "deploy":
            if len(self.deploys) < series_module.MAX_DEPLOYS:
                self.deploys.append((ts, getattr(event, "revision", "")))
            return
        idx = self._index(ts)
        if event.kind == "request":
            failed = 1.0 if event.status is not None and event.status >= 500 else 0.0
            for key in (ALL, event.endpoint):
                slot = self._slot(self.requests, key, idx, 6) if key else None
                if slot is None:
                    continue
                slot[REQ_COUNT] += 1
                slot[REQ_5XX] += failed
                if event.db_ms is not None:
                    slot[REQ_DB_MS] += event.db_ms
                    slot[REQ_DB_N] += 1
                if event.queries is not None:
                    slot[REQ_QUERIES] += event.queries
                    slot[REQ_QUERIES_N] += 1
        elif event.kind == "error":
            slot = self._slot(self.errors, event.error_class or "?", idx, 1)
            if slot is not None:
                slot[0] += 1
        elif event.state in ("done", "fail"):
            slot = self._slot(self.jobs, event.job_class or "?", idx, 2)
            if slot is not None:
                slot[JOB_DONE if event.state == "done" else JOB_FAIL] += 1


def _state(s: SeriesCollector) -> tuple:  # type: ignore[type-arg]
    return (s.width, s._lo, s._hi, s.first_ts, s.last_ts, s.dropped_keys, s.deploys, s.requests, s.errors, s.jobs, s.axis())


_times = st.one_of(
    st.floats(1.7e9, 1.7e9 + 50, allow_nan=False),  # many events in few buckets
    st.floats(1.7e9 - 2e5, 1.7e9 + 5e6, allow_nan=False),  # spans that widen the buckets
    st.none(),
)
_keys = st.sampled_from(["", "A#a", "B#b", "C#c", "D#d"])
_events = st.lists(st.one_of(
    st.builds(Request, ts=_times, endpoint=_keys, status=st.sampled_from([None, 200, 500, 503]),
              db_ms=st.sampled_from([None, 0.0, 1.5]), queries=st.sampled_from([None, 0, 7])),
    st.builds(Job, ts=_times, state=st.sampled_from(["start", "done", "fail", "dead"]), job_class=_keys),
    st.builds(Error, ts=_times, error_class=_keys),
    st.builds(Deploy, ts=_times),
), max_size=300)


@settings(max_examples=300, deadline=None)
@given(_events, st.sampled_from([3, 200]), st.sampled_from([5, 300]))
def test_cached_feed_counts_what_plain_lookups_count(events, max_keys, max_buckets) -> None:
    saved = series_module.MAX_KEYS, series_module.MAX_BUCKETS
    series_module.MAX_KEYS, series_module.MAX_BUCKETS = max_keys, max_buckets  # small: key overflow and widening
    try:
        fast, plain = SeriesCollector(), PlainSeries()
        for event in events:
            fast.feed(event)
            plain.feed(event)
            assert _state(fast) == _state(plain)
    finally:
        series_module.MAX_KEYS, series_module.MAX_BUCKETS = saved


@settings(max_examples=100, deadline=None)
@given(_events)
def test_a_whole_batch_counts_what_event_by_event_counts(events) -> None:
    batched, plain = SeriesCollector(), PlainSeries()
    assert batched.feed_batch(events) == []
    for event in events:
        plain.feed(event)
    assert _state(batched) == _state(plain)


def test_an_event_it_cannot_count_is_skipped_and_returned_with_its_index() -> None:
    s = SeriesCollector()
    bad = Request(ts=1.7e9, endpoint="A#a", status="500")  # type: ignore[arg-type]  # not a number
    skipped = s.feed_batch([Request(ts=1.7e9, endpoint="A#a", status=200), bad, Job(ts=1.7e9, state="done", job_class="J")])
    assert [(i, type(exc)) for i, exc in skipped] == [(1, TypeError)]
    assert s.column(s.jobs, "J", JOB_DONE) == [1.0]
    try:
        s.feed(bad)
    except TypeError:
        pass
    else:
        raise AssertionError("feed() must raise what it could not count, as before")


_edge_times = st.one_of(_times, st.integers(1_700_000_000, 1_700_000_012).map(float))  # on bucket bounds
_hostile_events = st.lists(st.one_of(
    st.builds(Request, ts=_edge_times, endpoint=_keys, status=st.sampled_from([None, 200, 503, "500"]),
              db_ms=st.sampled_from([None, 1.5, "x"]), queries=st.sampled_from([None, 7])),
    st.builds(Job, ts=_edge_times, state=st.sampled_from(["start", "done", "fail"]), job_class=_keys),
    st.builds(Error, ts=_edge_times, error_class=_keys),
    st.builds(Deploy, ts=_edge_times),
), max_size=300)


@settings(max_examples=300, deadline=None)
@example([Request(ts=1.7e9, endpoint="A#a"), Request(ts=1.7e9 + 1, endpoint="A#a")], [], 200, 300)  # the next bucket's first instant
@given(_hostile_events, st.lists(st.integers(0, 300), max_size=6), st.sampled_from([3, 200]), st.sampled_from([5, 300]))
def test_batches_keep_the_clock_in_locals_and_count_what_plain_lookups_count(events, cuts, max_keys, max_buckets) -> None:
    """Whole batches (the clock in locals, the cached-bucket shortcut), cut anywhere, with events
    that raise part-way: the same skipped indices and the same state as the reference."""
    saved = series_module.MAX_KEYS, series_module.MAX_BUCKETS
    series_module.MAX_KEYS, series_module.MAX_BUCKETS = max_keys, max_buckets
    try:
        fast, plain = SeriesCollector(), PlainSeries()
        bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
        for lo, hi in zip(bounds, bounds[1:]):
            batch = events[lo:hi]
            got = [(i, type(exc)) for i, exc in fast.feed_batch(batch)]
            want = []
            for i, event in enumerate(batch):
                try:
                    plain.feed(event)
                except TypeError as exc:
                    want.append((i, type(exc)))
            assert got == want
            assert _state(fast) == _state(plain)
    finally:
        series_module.MAX_KEYS, series_module.MAX_BUCKETS = saved
