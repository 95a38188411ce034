"""pool_exhaustion's hot path (feed's inlined job lines, _on_request's inlined _active and
_remember, settings read once) against the code it replaced, on random streams of requests,
job lines and errors.

``Reference`` is the detector with feed, _on_job and _on_request as they were before: it must
report the same findings at every flush and keep the same tables.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

from hypothesis import given, settings, strategies as st

from agent.events import Error, Event, Job, Request
from detectors.pool_exhaustion.detector import CLOSED_JOB_STATES, PoolExhaustionDetector, PoolExhaustionSettings
from detectors.pool_exhaustion.signals import classify
from support import replay_with_flushes


class Reference(PoolExhaustionDetector):
    """feed, _on_job and _on_request before the hot path, verbatim but for the names of settings."""

    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is None or not math.isfinite(ts):
            return
        if isinstance(event, Error):
            signal = classify(event.error_class, event.message)
            if signal is not None:
                self._on_error(event, signal)
        elif isinstance(event, Request):
            self._on_request(event)
        elif isinstance(event, Job):
            self._on_job(event)

    def _on_job(self, job: Job) -> None:
        pid = job.pid
        if pid:
            if pid == self._newest_pid and self._newest_tier == "jobs":
                self.active_pids[self._newest_key] = job.ts or 0.0
            else:
                self._active("jobs", pid, job.ts or 0.0)
        state = job.state
        if state == "start":
            return
        if state == "fail" and (job.error_class or job.error_message):
            signal = classify(job.error_class, job.error_message)
            if signal is not None:
                if not self._paired_job_failure("job", job.pid, job.ts, job.jid, job.job_class, signal):
                    ep = self._occurrence(signal, job)
                    if ep is None:
                        return
                    ep.bump(ep.by_origin, "sidekiq")
                    if job.job_class:
                        ep.bump(ep.job_classes, job.job_class)
                return
        if job.state in CLOSED_JOB_STATES and job.elapsed_s is not None and job.elapsed_s * 1000.0 >= self.s.holder_min_ms:
            end = job.ts or 0.0
            info = {"job_class": job.job_class, "jid": job.jid, "elapsed_s": job.elapsed_s, "state": job.state, "pid": job.pid}
            self._holder(job.elapsed_s * 1000.0, end - job.elapsed_s, end, info, job)

    def _on_request(self, r: Request) -> None:
        ts = r.ts or 0.0
        self._active("web", r.pid, ts)
        second = int(ts)
        self.per_second[second] = self.per_second.get(second, 0) + 1
        if len(self.per_second) > self.s.max_request_seconds:
            self.per_second.popitem(last=False)
        if r.error:
            cls, _, message = r.error.partition(": ")
            signal = classify(cls, message)
            if signal is not None and not (r.request_id and r.request_id in self.failed_rids):
                ep = self._occurrence(signal, r)
                if ep is None:
                    return
                ep.bump(ep.by_origin, "lograge")
                ep.bump(ep.endpoints, r.endpoint or f"{r.method} {r.path}".strip() or "(unknown)")
                self._failed_request(ep, r)
                if r.request_id:
                    self._remember(self.failed_rids, r.request_id, ep.key)
                return
        if r.request_id:
            key = self.failed_rids.get(r.request_id)
            if key is not None and key in self.episodes:
                self._failed_request(self.episodes[key], r)
                return
            self._remember(self.requests, r.request_id, r)
        duration = r.duration_ms or 0.0
        if duration >= self.s.holder_min_ms and (r.db_ms is None or r.db_ms >= self.s.holder_min_db_ms):
            label = r.endpoint or f"{r.method} {r.path}".strip()
            info = {
                "endpoint": label, "path": r.path, "status": r.status, "duration_ms": duration,
                "db_ms": r.db_ms, "request_id": r.request_id, "pid": r.pid,
            }
            self._holder(r.db_ms if r.db_ms is not None else duration, ts - duration / 1000.0, ts, info, r)


class NotAJob(Job):
    """A Job of another exact type: feed takes its isinstance chain (_on_job) for it."""


class NotARequest(Request):
    """A Request of another exact type: feed takes its isinstance chain for it."""


TIMEOUT = "could not obtain a connection from the pool within 5.000 seconds (waited 5.001 seconds); all pooled connections were in use"


def state_of(d: PoolExhaustionDetector) -> Tuple[object, ...]:
    return (
        list(d.active_pids.items()),
        list(d.per_second.items()),
        [(rid, r.line) for rid, r in d.requests.items()],
        list(d.failed_rids.items()),
        [(h[0], h[1], h[2], h[3]) for h in d.holders],
        [(k, ep.first, ep.last, ep.app_count, dict(ep.endpoints), dict(ep.job_classes), len(ep.holders), ep.failed_ms)
         for k, ep in d.episodes.items()],
        d.late_dropped,
    )


STEP = st.tuples(
    st.sampled_from([None, math.nan, -30.0, -0.5, 0.0, 0.3, 1.0, 1.0, 2.0, 40.0, 400.0]),  # time step (None: no time)
    st.sampled_from(["request", "request", "request", "start", "done", "fail", "error"]),
    st.integers(0, 6),  # request id / jid (0: none)
    st.sampled_from(["", "1", "2", "3"]),  # pid
    st.sampled_from([None, 0.0, 12.0, 800.0, 1000.0, 1500.0, 6000.0]),  # duration (ms for requests, s/1000 for jobs)
    st.sampled_from([None, 100.0, 900.0]),  # db_ms
    st.booleans(),  # the error is a pool timeout (lograge error=, job fail, error record)
    st.booleans(),  # the exact type, or a subclass (the isinstance chain)
    st.integers(0, 9),  # 0: a periodic flush after this line
)


def events_of(steps: List[tuple]) -> List[Tuple[Event, Optional[float]]]:
    t = 1_714_564_800.0
    out: List[Tuple[Event, Optional[float]]] = []
    for n, (dt, kind, rid, pid, duration, db_ms, pool_error, exact, flush) in enumerate(steps):
        ts: Optional[float] = None
        if dt is not None and math.isnan(dt):
            ts = math.nan
        elif dt is not None:
            t += dt
            ts = t
        raw = f"line {n}"
        event: Event
        if kind == "request":
            kind_type = Request if exact else NotARequest
            event = kind_type(ts=ts, source="production.log", line=n, raw=raw, request_id=f"r{rid}" if rid else "",
                              method="GET", path=f"/p{rid % 3}", endpoint="" if rid == 5 else f"P#{rid % 3}", status=200,
                              duration_ms=duration, db_ms=db_ms, pid=pid,
                              error=f"ActiveRecord::ConnectionTimeoutError: {TIMEOUT}" if pool_error and rid % 2 else "")
        elif kind == "error":
            event = Error(ts=ts, source="production.log", line=n, raw=raw, origin="rails",
                          error_class="ActiveRecord::ConnectionTimeoutError" if pool_error else "RuntimeError",
                          message=TIMEOUT if pool_error else "boom", request_id=f"r{rid}" if rid else "", pid=pid)
        else:
            job_type = Job if exact else NotAJob
            elapsed = None if duration is None or kind == "start" else duration / 1000.0
            event = job_type(ts=ts, source="sidekiq.log", line=n, raw=raw, state=kind, job_class=f"J{rid % 2}",
                             jid=f"j{rid}" if rid else "", tid="t", pid=pid, elapsed_s=elapsed,
                             error_class="ActiveRecord::ConnectionTimeoutError" if kind == "fail" and pool_error else "",
                             error_message=TIMEOUT if kind == "fail" and pool_error else "")
        out.append((event, t - 120.0 if flush == 0 else None))
    return out


def run(detector: PoolExhaustionDetector, stream: List[Tuple[Event, Optional[float]]]) -> List[object]:
    return replay_with_flushes(detector, stream, state_of)


SMALL = PoolExhaustionSettings(max_tracked_requests=3, max_request_seconds=4, holder_min_ms=1000.0, episode_gap_s=60.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=120), st.booleans())
def test_the_hot_path_reports_and_keeps_what_the_code_before_it_did(steps, small) -> None:
    stream = events_of(steps)
    s = SMALL if small else PoolExhaustionSettings()
    assert run(PoolExhaustionDetector(s), stream) == run(Reference(s), stream)
