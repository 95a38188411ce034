"""A request keeps a shape's first statement as a tuple and builds its ``Group`` only when a
second one comes (``LAZY_GROUPS``); with ``LAZY_GROUPS = False`` every statement goes into a
``Group`` from the first one on, the reference. Both must give the same findings, also when
one statement is enough to qualify and when ``max_groups_per_request`` is reached."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings, strategies as st

import detectors.n_plus_one.detector as detector_module
from agent.events import Event, Request, Sql
from agent.sources.replay import iter_events
from detectors.n_plus_one import NPlusOneDetector, NPlusOneSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
LOGS = [FIXTURES / "e2e" / "debug" / "production.log", FIXTURES / "n_plus_one" / "overlapped.log",
        FIXTURES / "n_plus_one" / "simple.log"]


def _findings(events: List[Event], lazy: bool, **config) -> list:  # type: ignore[no-untyped-def,type-arg]
    saved = detector_module.LAZY_GROUPS
    detector_module.LAZY_GROUPS = lazy
    try:
        d = NPlusOneDetector(NPlusOneSettings(**config))
        out = []
        for i, event in enumerate(events):
            d.feed(event)
            if i % 97 == 96:  # flushes part-way too: open requests are finished by time there
                out += [f.to_dict() for f in d.flush(event.ts)]
        return out + [f.to_dict() for f in d.flush(None)]
    finally:
        detector_module.LAZY_GROUPS = saved


@pytest.mark.parametrize("config", [{}, {"min_repeats": 1, "min_repeats_aggregate": 1, "min_repeats_fast": 1},
                                    {"min_repeats": 2, "min_repeats_fast": 2, "max_groups_per_request": 3}])
def test_fixture_logs_give_the_same_findings_with_and_without_lazy_groups(config) -> None:  # type: ignore[no-untyped-def]
    events = [e for log in LOGS for e in iter_events(str(log))]
    assert sum(isinstance(e, Sql) for e in events) > 100
    assert _findings(events, True, **config) == _findings(events, False, **config)


_SHAPES = [
    ("Author Load", 'SELECT "authors".* FROM "authors" WHERE "authors"."id" = $1 LIMIT $2', '[["id", {n}], ["LIMIT", 1]]'),
    ("Comment Count", 'SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = $1', '[["post_id", {n}]]'),
    ("Tag Load", 'SELECT "tags".* FROM "tags" WHERE "tags"."id" = $1', '[["id", {n}]]'),
    ("Post Load", 'SELECT "posts".* FROM "posts" ORDER BY "posts"."id" ASC LIMIT $1', '[["LIMIT", 30]]'),
]
_statement = st.tuples(st.integers(0, len(_SHAPES) - 1), st.integers(0, 3), st.sampled_from([0.0, 0.4, 30.0]))
_request = st.tuples(st.lists(_statement, max_size=14), st.sampled_from(["PostsController#index", "TagsController#show"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_request, min_size=1, max_size=12), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4))
def test_random_requests_give_the_same_findings_with_and_without_lazy_groups(
        requests, min_repeats, min_aggregate, min_fast, max_groups) -> None:  # type: ignore[no-untyped-def]
    events: List[Event] = []
    ts = 1_714_564_800.0
    for n, (statements, endpoint) in enumerate(requests):
        rid = f"req-{n}"
        for shape, bind, ms in statements:
            name, sql, binds = _SHAPES[shape]
            ts += 0.01
            events.append(Sql(ts=ts, source="t.log", line=len(events) + 1, request_id=rid, name=name, duration_ms=ms,
                              sql=sql, binds=binds.format(n=bind)))
        ts += 0.01
        events.append(Request(ts=ts, source="t.log", line=len(events) + 1, request_id=rid, endpoint=endpoint, status=200))
    config = {"min_repeats": min_repeats, "min_repeats_aggregate": min_aggregate, "min_repeats_fast": min_fast,
              "min_total_ms": 1.0, "max_groups_per_request": max_groups}
    assert _findings(events, True, **config) == _findings(events, False, **config)
