"""Bounded state of the sidekiq_failures detector: one problem (per job class and error), failed jobs
awaiting recovery, per-class outcome shares, and what is known of each Sidekiq process.

Every container is capped (deque maxlen, key limits, or by the settings its caller applies) so a storm
cannot grow memory.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from itertools import islice
from typing import Deque, Dict, Hashable, List, Optional, Set, Tuple

from agent.events import Event, Evidence, Job, severity_rank


def rank(severity: Optional[str]) -> int:
    return -1 if severity is None else severity_rank(severity)


def remember(table: "OrderedDict[Hashable, object]", key: Hashable, value: object, cap: int) -> None:
    """Put ``key`` last in ``table`` and forget the oldest entry past ``cap``."""
    table[key] = value
    if len(table) > cap:
        table.popitem(last=False)


class Problem:
    """What is known about one problem; ``reported_*`` is what the last finding said."""

    def __init__(self, subject: Dict[str, str]) -> None:
        self.subject = subject
        self.first_ts: Optional[float] = None
        self.last_ts: Optional[float] = None
        self.times: Deque[Tuple[float, str]] = deque(maxlen=10000)  # unrecovered attempts (ts, jid), or occurrences
        self.dead: Deque[float] = deque(maxlen=10000)
        self.count = 0  # occurrences (unrecovered attempts) since the problem opened
        self.jobs: Set[str] = set()
        self.recovered = 0
        self.dead_total = 0
        self.retry_max: Optional[int] = None
        self.sample: Optional[Event] = None
        self.signals: Set[str] = set()
        self.severity: Optional[str] = None
        self.reported_count = 0
        self.reported_severity: Optional[str] = None
        self.evidence: List[Evidence] = []
        self.new_reason = ""
        self.facts: Dict[str, object] = {}
        self.evaluated_at = float("-inf")

    def occur(self, ts: float, event: Optional[Event], cap: int) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if event is not None and len(self.evidence) < cap:
            self.evidence.append(Evidence.of(event))

    def raise_to(self, severity: Optional[str], signal: str) -> None:
        if severity is None:
            return
        self.signals.add(signal)
        if rank(severity) > rank(self.severity):
            self.severity = severity

    def in_window(self, now: float, window: float, keep: float) -> List[Tuple[float, str]]:
        """Occurrences in (now - window, now]; forgets those older than ``keep`` before now."""
        for series in (self.times, self.dead):
            while series and (series[0] if isinstance(series[0], float) else series[0][0]) < now - keep:  # type: ignore[index]
                series.popleft()
        return [t for t in self.times if now - window < t[0] <= now]


class Problems:
    """The open problems by key, oldest first, at most ``cap`` (the oldest is forgotten).

    One table for the whole detector: the failure part and the health part open problems in it,
    and the detector reports and forgets them.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._by_key: "OrderedDict[Tuple[str, ...], Problem]" = OrderedDict()

    def open(self, key: Tuple[str, ...], subject: Dict[str, str]) -> Problem:
        """The problem of ``key``, opened with ``subject`` if it is new."""
        p = self._by_key.get(key)
        if p is None:
            p = self._by_key[key] = Problem(subject)
            if len(self._by_key) > self.cap:
                self._by_key.popitem(last=False)
        return p

    def get(self, key: Tuple[str, ...]) -> Optional[Problem]:
        return self._by_key.get(key)

    def items(self) -> List[Tuple[Tuple[str, ...], Problem]]:
        """A copy, oldest first: the caller may forget problems while it walks them."""
        return list(self._by_key.items())

    def forget(self, key: Tuple[str, ...]) -> None:
        del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)


class Outcomes:
    """Per job class, the failed share of the last ``recent`` outcomes and of the ``baseline`` before them.

    Both windows are one deque of the last ``recent + baseline`` outcomes (True = failed): the
    recent window is its tail, the baseline the rest. An update is an append (it runs on every
    job, the hottest path of the detector); the shares are summed when read (on failures only).
    The sums are of 0/1 integers, so they are exact whatever the order they are taken in.
    """

    def __init__(self, max_keys: int, recent: int = 20, baseline: int = 500) -> None:
        self.max_keys, self.recent_size, self.baseline_size = max_keys, recent, baseline
        self._keys: "OrderedDict[str, Deque[bool]]" = OrderedDict()  # the oldest *created* key is dropped first

    def update(self, key: str, failed: bool) -> None:
        history = self._keys.get(key)
        if history is None:
            history = self._keys[key] = deque(maxlen=self.recent_size + self.baseline_size)
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        history.append(failed)

    def rates(self, key: str) -> Tuple[Optional[float], Optional[float], int]:
        """(recent failed share, baseline failed share, baseline size)."""
        history = self._keys.get(key)
        if not history:
            return None, None, 0
        n = len(history)
        recent_n = min(n, self.recent_size)
        recent_failed = sum(islice(reversed(history), recent_n))
        baseline_n = n - recent_n
        r = recent_failed / recent_n
        b = (sum(history) - recent_failed) / baseline_n if baseline_n else None
        return r, b, baseline_n


class FailedJob:
    """A job (jid) with failed attempts, waiting to recover or not."""

    __slots__ = ("key", "attempts", "last_ts")

    def __init__(self, key: Tuple[str, str]) -> None:
        self.key = key
        self.attempts: List[Job] = []
        self.last_ts = 0.0


class ProcessState:
    __slots__ = ("pid", "source", "boot", "last_ts", "last_event", "stopped", "shutting", "suspect_since", "boot_event")

    def __init__(self, pid: str, source: str) -> None:
        self.pid, self.source = pid, source
        self.boot: Optional[float] = None
        self.last_ts = 0.0
        self.last_event: Optional[Event] = None
        self.stopped = False
        self.shutting = False
        self.suspect_since: Optional[float] = None
        self.boot_event: Optional[Event] = None
