"""The pipeline: dispatch by event kind, periodic flushes in event time, failure isolation."""
from __future__ import annotations

from typing import List, Optional

from agent.events import Finding, Request, Sql
from agent.pipeline import DISABLE_AFTER_ERRORS, ERROR_WINDOW_EVENTS, REORDER_SLACK_S, Pipeline
from detectors.base import Detector


class Recorder(Detector):
    name = "recorder"
    kinds = frozenset({"request"})

    def __init__(self) -> None:
        super().__init__()
        self.fed: List[int] = []
        self.flushes: List[Optional[float]] = []

    def feed(self, event) -> None:  # type: ignore[no-untyped-def]
        self.fed.append(event.line)

    def flush(self, until: Optional[float]) -> List[Finding]:
        self.flushes.append(until)
        return []


class Broken(Recorder):
    name = "broken"

    def feed(self, event) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


class BrokenOnOddLines(Recorder):
    """Raises on some events only: a detector that one kind of hostile line trips."""

    name = "odd"

    def feed(self, event) -> None:  # type: ignore[no-untyped-def]
        if event.line % 2:
            raise ValueError(f"cannot read line {event.line}")
        super().feed(event)


class BrokenFlush(Recorder):
    name = "broken_flush"

    def flush(self, until: Optional[float]) -> List[Finding]:
        raise RuntimeError("flush boom")


def test_a_detector_that_raises_on_one_event_skips_it_and_keeps_running():
    odd, recorder = BrokenOnOddLines(), Recorder()
    messages: List[str] = []
    pipeline = Pipeline([odd, recorder], on_error=messages.append)
    pipeline.feed_batch([Request(ts=1.0, line=n) for n in (2, 3, 4)])
    pipeline.feed(Request(ts=2.0, line=6))
    assert odd.fed == [2, 4, 6] and recorder.fed == [2, 3, 4, 6]
    assert pipeline.errors == {"odd": 1} and pipeline.disabled == {}
    assert pipeline.detectors == [odd, recorder]
    assert len(messages) == 1 and "odd" in messages[0] and ":3 " in messages[0] and "skipped" in messages[0]


def test_sparse_errors_never_disable_a_detector():
    odd = BrokenOnOddLines()
    pipeline = Pipeline([odd])
    # one bad event in every ERROR_WINDOW_EVENTS / 2: many errors in all, never DISABLE_AFTER_ERRORS in one window
    gap = ERROR_WINDOW_EVENTS // 2
    lines = [n * 2 + (1 if n % gap == 0 else 0) for n in range(gap * (DISABLE_AFTER_ERRORS + 5))]
    pipeline.feed_batch([Request(ts=1.0, line=n) for n in lines])
    assert pipeline.errors["odd"] == DISABLE_AFTER_ERRORS + 5
    assert pipeline.disabled == {} and pipeline.detectors == [odd]


def test_a_detector_that_keeps_raising_is_disabled_with_its_reason_and_the_others_see_every_event():
    broken, recorder = Broken(), Recorder()
    messages: List[str] = []
    pipeline = Pipeline([broken, recorder], on_error=messages.append)
    pipeline.feed_batch([Request(ts=1.0, line=n) for n in range(1, 31)])
    assert recorder.fed == list(range(1, 31))
    assert pipeline.detectors == [recorder]
    assert pipeline.errors == {"broken": DISABLE_AFTER_ERRORS}
    assert set(pipeline.disabled) == {"broken"}
    assert "RuntimeError: boom" in pipeline.disabled["broken"] and f":{DISABLE_AFTER_ERRORS} " in pipeline.disabled["broken"]
    assert len(messages) == DISABLE_AFTER_ERRORS and "disabled for this run" in messages[-1]


def test_a_failing_flush_is_counted_like_a_failing_feed():
    broken, recorder = BrokenFlush(), Recorder()
    messages: List[str] = []
    pipeline = Pipeline([broken, recorder], on_error=messages.append)
    pipeline.flush(None)
    assert pipeline.errors == {"broken_flush": 1} and recorder.flushes == [None]
    for _ in range(DISABLE_AFTER_ERRORS - 1):
        pipeline.flush(None)
    assert "broken_flush" in pipeline.disabled and pipeline.detectors == [recorder]


def test_events_go_only_to_detectors_that_asked_for_their_kind():
    recorder = Recorder()
    pipeline = Pipeline([recorder])
    pipeline.feed_batch([Sql(ts=1.0, line=1), Request(ts=1.0, line=2)])
    assert recorder.fed == [2]
    assert pipeline.events == 2


def test_a_batch_flushes_at_the_same_event_times_as_feeding_one_by_one():
    times = [0.0, 30.0, 61.0, 90.0, 125.0, 200.0, 201.0]
    one_by_one, batched = Recorder(), Recorder()
    single = Pipeline([one_by_one])
    for n, ts in enumerate(times):
        single.feed(Request(ts=ts, line=n))
    Pipeline([batched]).feed_batch([Request(ts=ts, line=n) for n, ts in enumerate(times)])
    assert batched.flushes == one_by_one.flushes == [61.0 - REORDER_SLACK_S, 125.0 - REORDER_SLACK_S, 200.0 - REORDER_SLACK_S]


def _stamped(ts):  # type: ignore[no-untyped-def]
    from agent.events import Metric

    return Metric(source="t.log", line=1, ts=ts, name="x", value=1.0)


def test_one_line_stamped_far_away_does_not_move_the_event_clock():
    from agent.pipeline import Pipeline

    now = 1_800_000_000.0
    p = Pipeline([], flush_every=60.0)
    p.feed_batch([_stamped(now + i) for i in range(5)])
    p.feed_batch([_stamped(4_102_444_800.0)])  # 2100-01-01: one hostile line
    p.feed_batch([_stamped(0.0)])  # 1970 too
    p.feed_batch([_stamped(now + 10)])
    assert p.high_water == now + 10


def test_a_log_that_resumes_hours_later_moves_the_clock_once_confirmed():
    from agent.pipeline import Pipeline

    now = 1_800_000_000.0
    later = now + 86_400.0
    p = Pipeline([], flush_every=60.0)
    p.feed_batch([_stamped(now + i) for i in range(5)])
    p.feed_batch([_stamped(later + i) for i in range(3)])
    assert p.high_water == later + 2


class BatchRecorder:
    """A member fed whole batches (like the scan's series collector); it skips odd lines as failures."""

    name = "batch"
    kinds = frozenset({"request"})

    def __init__(self, fail_odd: bool = False) -> None:
        self.fed: List[int] = []
        self.fail_odd = fail_odd

    def feed_batch(self, events):  # type: ignore[no-untyped-def]
        skipped = []
        for i, event in enumerate(events):
            if event.kind not in self.kinds:
                continue
            if self.fail_odd and event.line % 2:
                skipped.append((i, ValueError(f"cannot count line {event.line}")))
                continue
            self.fed.append(event.line)
        return skipped

    def flush(self, until: Optional[float]) -> List[Finding]:
        return []


def test_a_batch_member_gets_every_batch_whole_and_its_skipped_events_count_as_errors():
    batch, recorder = BatchRecorder(fail_odd=True), Recorder()
    messages: List[str] = []
    pipeline = Pipeline([batch, recorder], on_error=messages.append)
    pipeline.feed_batch([Sql(ts=1.0, line=1), Request(ts=1.0, line=2), Request(ts=1.0, line=3)])
    pipeline.feed(Request(ts=2.0, line=4))
    assert batch.fed == [2, 4] and recorder.fed == [2, 3, 4]
    assert pipeline.errors == {"batch": 1} and len(messages) == 1 and ":3 " in messages[0]


def test_a_batch_member_that_keeps_failing_is_disabled_and_fed_no_more():
    batch = BatchRecorder(fail_odd=True)
    pipeline = Pipeline([batch])
    pipeline.feed_batch([Request(ts=1.0, line=2 * n + 1) for n in range(DISABLE_AFTER_ERRORS)])
    assert set(pipeline.disabled) == {"batch"} and pipeline.detectors == []
    pipeline.feed_batch([Request(ts=1.0, line=100)])
    assert batch.fed == []
