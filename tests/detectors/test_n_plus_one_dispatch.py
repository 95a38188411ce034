"""The N+1 detector's ``feed`` takes Request and Sql by exact type (hot path) and everything
else through ``_feed_any``'s isinstance chain, the reference: both give the same findings
and the same per-request state, and subclasses of Request/Sql still reach their handlers."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

from agent.events import Event, Request, Sql
from agent.sources.replay import iter_events
from detectors.n_plus_one import NPlusOneDetector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
LOGS = [FIXTURES / "e2e" / "debug" / "production.log", FIXTURES / "n_plus_one" / "overlapped.log",
        FIXTURES / "n_plus_one" / "simple.log", FIXTURES / "e2e" / "info" / "production.log"]


@dataclasses.dataclass(eq=False)
class SubRequest(Request):
    pass


@dataclasses.dataclass(eq=False)
class SubSql(Sql):
    pass


def _state(d: NPlusOneDetector) -> list:  # type: ignore[type-arg]
    found = [f.to_dict() for f in d.flush(None)]
    return [found, {k: list(v) for k, v in d._history.items()}, dict(d._paths), list(d._statements._pending),
            list(d._statements._last_request), sorted(d._sql_sources)]


def _events() -> List[Event]:
    events = [e for log in LOGS if log.exists() for e in iter_events(str(log))]
    assert sum(isinstance(e, Request) for e in events) > 50 and sum(isinstance(e, Sql) for e in events) > 50
    return events


def test_the_type_fast_path_equals_the_isinstance_chain() -> None:
    fast, chain = NPlusOneDetector(), NPlusOneDetector()
    for event in _events():
        fast.feed(event)
        chain._feed_any(event)
    assert _state(fast) == _state(chain)


def test_subclasses_of_request_and_sql_reach_the_same_handlers() -> None:
    plain, sub = NPlusOneDetector(), NPlusOneDetector()
    for event in _events():
        plain.feed(event)
        if type(event) in (Request, Sql):
            fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
            event = (SubRequest if type(event) is Request else SubSql)(**fields)
        sub.feed(event)
    assert _state(plain) == _state(sub)
