"""The detector interface and the context every detector is built with.

A detector is a small state machine over a stream of events. It declares a ``name``,
the event ``kinds`` it wants (the pipeline only hands it those), and a typed frozen
``Settings`` dataclass whose every field is a threshold with a default. It never does
I/O, never sleeps and never reads the wall clock: windows use ``event.ts``.

    feed(event)          consume one event (cheap; return early on what it ignores)
    flush(until)         return the findings that are complete up to event time
                         ``until`` (None = end of input), and forget what it can
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, FrozenSet, List, Mapping, Optional, Tuple

from agent.events import Event, Finding
from agent.settings import table


@dataclass(frozen=True)
class AppFacts:
    """What is known about the Rails app, from ``--app DIR`` or the daemon's config.

    Every field is optional: triage says "check X" when a fact is missing.
    """

    root: str = ""
    db_pool: Optional[int] = None  # database.yml `pool` / `max_connections` (production)
    db_checkout_timeout: Optional[float] = None
    puma_max_threads: Optional[int] = None
    puma_workers: Optional[int] = None
    sidekiq_concurrency: Optional[int] = None
    revision: str = ""  # REVISION file
    revision_time: Optional[float] = None  # its mtime: when that deploy happened
    notes: Tuple[str, ...] = ()  # what could not be read, said once


@dataclass
class DetectorContext:
    facts: AppFacts = field(default_factory=AppFacts)


@dataclass(frozen=True)
class Settings:
    """Base for a detector's settings; subclasses add fields declared with ``agent.settings.setting``."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], path: str = "") -> "Settings":
        """Build from a config table with the one validator; ValueError lists every problem by path."""
        errors: List[str] = []
        built = table(cls, values, path, errors)
        if errors:
            raise ValueError("; ".join(errors))
        return built  # type: ignore[no-any-return]


class Detector:
    """Base class with the plumbing; subclasses set the class attributes."""

    name: ClassVar[str] = ""
    kinds: ClassVar[FrozenSet[str]] = frozenset()
    settings_type: ClassVar[type] = Settings

    def __init__(self, settings: Optional[Settings] = None, context: Optional[DetectorContext] = None) -> None:
        self.settings = settings if settings is not None else self.settings_type()
        self.context = context if context is not None else DetectorContext()

    def feed(self, event: Event) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self, until: Optional[float]) -> List[Finding]:  # pragma: no cover - interface
        raise NotImplementedError
