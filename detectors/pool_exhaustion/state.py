"""What the pool_exhaustion detector keeps per incident in the making (see detector.py)."""
from __future__ import annotations

from collections import Counter, deque
from typing import Deque, Dict, List, Tuple

from agent.events import Evidence


class Episode:
    """One incident in the making: errors of one pool kind, no gap longer than episode_gap_s."""

    def __init__(self, key: Tuple[str, str, str], ts: float, cap: int) -> None:
        self.key, self.first, self.last, self.cap = key, ts, ts, cap
        self.app_count = self.server_count = 0
        self.reported = 0
        self.emitted_critical = False
        # error times inside the sliding critical window, per side (app errors, server log lines)
        self.windows: Dict[bool, Deque[float]] = {False: deque(), True: deque()}
        self.window_max: Dict[bool, int] = {False: 0, True: 0}
        self.by_origin: Counter = Counter()
        self.endpoints: Counter = Counter()
        self.job_classes: Counter = Counter()
        self.pids: Counter = Counter()
        self.wordings: Counter = Counter()
        self.timeouts: Counter = Counter()
        self.waited: List[float] = []  # [min, max] once seen
        self.pool_sizes: Counter = Counter()
        self.samples: List[Evidence] = []
        self.failed_requests: List[Evidence] = []
        self.failed_ms: List[float] = []
        self.holders: List[Tuple[float, float, float, Dict[str, object], Evidence]] = []
        self.metric_peak: Dict[str, float] = {}
        self.exclusive_only = key[1] == "ActiveRecord::ExclusiveConnectionTimeoutError"

    @property
    def count(self) -> int:
        return self.app_count or self.server_count

    @property
    def max_in_window(self) -> int:
        return self.window_max[not self.app_count]

    def bump(self, counter: Counter, key: str) -> None:
        if key in counter or len(counter) < self.cap:
            counter[key] += 1
        else:
            counter["(other)"] += 1
