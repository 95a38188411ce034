"""The pipeline: dispatch by event kind, periodic flushes in event time, failure isolation."""
from __future__ import annotations

from typing import List, Optional

from agent.events import Finding, Request, Sql
from agent.pipeline import REORDER_SLACK_S, Pipeline
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


def test_a_failing_detector_is_disabled_once_and_the_next_one_still_sees_every_event():
    broken, recorder = Broken(), Recorder()
    messages: List[str] = []
    pipeline = Pipeline([broken, recorder], on_error=messages.append)
    pipeline.feed_batch([Request(ts=1.0, line=n) for n in (1, 2, 3)])
    assert recorder.fed == [1, 2, 3]
    assert len(messages) == 1 and "broken" in messages[0] and ":1 " in messages[0]
    assert pipeline.detectors == [recorder]


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
