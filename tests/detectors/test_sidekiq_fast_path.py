"""sidekiq_failures' hot path (feed's start/done lines, the cached oldest pending failure, the
inlined per-class updates) against the step-by-step code it replaced, on random job streams.

``Reference`` is the detector with feed and _done as they were before the hot path: touch() and
started()/finished() as separate calls, Outcomes.update and LastValues.update called, the oldest
pending failure read from ``failed`` on every line. Both must report the same findings at every
flush and keep the same state.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from hypothesis import given, settings, strategies as st

from agent.events import Event, Job, Process
from detectors.sidekiq_failures import SidekiqFailuresDetector, SidekiqFailuresSettings
from support import replay_with_flushes


class Reference(SidekiqFailuresDetector):
    """feed and _done of the detector before its hot path, verbatim but for the names of settings."""

    def feed(self, event: Event) -> None:
        ts = event.ts
        if ts is not None:
            now = self.now
            if now is None or ts > now:
                if now is None:
                    self.deploys.watch(ts)
                self.now = ts
                failed = self.failed
                if failed and ts - next(iter(failed.values())).last_ts >= self.s.recovery_grace_s:
                    self._settle(ts, final=False)
        if isinstance(event, Job):
            health = self.health
            health.touch(event)
            state = event.state
            if state == "start":
                health.started(event)
            elif state == "done":
                self._done(event)
            elif state == "fail":
                self._fail(event)
            elif state == "dead":
                self._dead(event)
        elif isinstance(event, Process):
            self.health.process(event)

    def _done(self, job: Job) -> None:
        health = self.health
        health.finished(job)
        cls = job.job_class
        ts = job.ts
        if ts is not None:
            last_done = self.last_done
            if cls not in last_done and len(last_done) >= self.s.max_problems:
                last_done.pop(next(iter(last_done)))
            last_done[cls] = ts
            if self.failing:
                self.failing.pop(cls, None)
            self.outcomes.update(cls, False)
        jid = job.jid
        if jid:
            pending = self.failed.pop(jid, None) if self.failed else None
            if pending is not None:
                known = self.problems.get(pending.key)
                if known is not None:
                    known.recovered += 1
            elif jid in self.settled:
                self._late_recovery(jid)
        elapsed = job.elapsed_s
        if elapsed is not None and ts is not None:
            if not elapsed < self.s.slow_min_s:
                health.check_slow(job)
            self.durations.update(cls, elapsed)


class NotAJob(Job):
    """A Job of another exact type: feed takes the generic path (_job) for it."""


def state_of(d: SidekiqFailuresDetector) -> Tuple[object, ...]:
    h = d.health
    return (
        d.now,
        [(k, j.jid, j.line) for k, j in h.running.items()],
        [(k, p.last_ts, p.last_event.line if p.last_event else None, p.suspect_since, p.stopped) for k, p in h.procs.items()],
        list(d.last_done.items()),
        [(k, list(v)) for k, v in d.outcomes._keys.items()],
        [(k, list(v[0]), v[0].maxlen) for k, v in d.durations._table.items()],
        [(jid, p.key, p.last_ts, [j.line for j in p.attempts]) for jid, p in d.failed.items()],
        list(d.settled.items()),
        list(d.failing.items()),
        [(k, p.count, p.recovered, sorted(p.signals), p.severity) for k, p in d.problems.items()],
    )


STEP = st.tuples(
    st.sampled_from([None, -40.0, 0.0, 0.0, 1.0, 5.0, 30.0, 119.0, 121.0, 400.0, 2000.0]),  # time step (None: no time)
    st.sampled_from(["start", "start", "done", "done", "fail", "dead", "retry", "boot", "stopped"]),
    st.integers(0, 7),  # jid
    st.integers(0, 2),  # job class
    st.integers(0, 2),  # pid
    st.integers(0, 2),  # tid
    st.integers(0, 1),  # source
    st.sampled_from([None, 0.2, 3.0, 75.0, 2500.0]),  # elapsed
    st.sampled_from(["RuntimeError", "RuntimeError", "Net::ReadTimeout", "Sidekiq::Shutdown"]),
    st.sampled_from([None, None, 1]),  # retry_count
    st.booleans(),  # an exact Job, or another type (the generic path)
    st.integers(0, 9),  # 0: a periodic flush after this line
)


def events_of(steps: List[tuple]) -> List[Tuple[Event, Optional[float]]]:
    t = 1_714_564_800.0
    out: List[Tuple[Event, Optional[float]]] = []
    for n, (dt, state, jid, cls, pid, tid, src, elapsed, error, retry, exact, flush) in enumerate(steps):
        if dt is not None:
            t += dt
        ts = None if dt is None else t
        source = f"/var/log/sidekiq{src}.log"
        raw = f"line {n}"
        event: Event
        if state in ("boot", "stopped"):
            event = Process(ts=ts, source=source, line=n, raw=raw, component="sidekiq", state=state, pid=str(pid))
        else:
            kind = Job if exact else NotAJob
            event = kind(ts=ts, source=source, line=n, raw=raw, state=state, job_class=f"Job{cls}",
                         jid=f"j{jid}" if jid else "", queue="default", tid=f"t{tid}", pid=str(pid),
                         elapsed_s=elapsed if state in ("done", "fail") else None,
                         error_class=error if state in ("fail", "dead") else "", error_message="boom",
                         retry_count=retry if state == "fail" else None)
        out.append((event, t - 120.0 if flush == 0 else None))
    return out


def assert_oldest_pending_known_or_unknown(d: SidekiqFailuresDetector) -> None:
    """The cached time of the oldest pending failure is unknown (None) or the true one: never stale."""
    cached = d._oldest_pending_ts
    assert cached is None or cached == (next(iter(d.failed.values())).last_ts if d.failed else float("inf"))


def run(detector: SidekiqFailuresDetector, stream: List[Tuple[Event, Optional[float]]]) -> List[object]:
    return replay_with_flushes(detector, stream, state_of, assert_oldest_pending_known_or_unknown)


SMALL = SidekiqFailuresSettings(total_failure_min_jobs=2, slow_min_samples=2, stuck_after_s=600.0, slow_min_s=60.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=120), st.booleans())
def test_the_hot_path_reports_and_keeps_what_the_step_by_step_code_did(steps, small) -> None:
    stream = events_of(steps)
    s = SMALL if small else SidekiqFailuresSettings()
    assert run(SidekiqFailuresDetector(s), stream) == run(Reference(s), stream)


def test_a_recovery_moves_the_settling_deadline_to_the_next_pending_failure() -> None:
    """j1 fails, then j2 with an earlier stamp (merged files), j1 recovers: j2 settles at its own
    deadline (120 s after its attempt), not at j1's."""
    t = 1_714_564_800.0

    def job(dt: float, state: str, jid: str) -> Job:
        return Job(ts=t + dt, source="s", line=int(dt), raw=f"{state} {jid}", state=state, job_class="A", jid=jid,
                   tid="t", pid="1", error_class="RuntimeError" if state == "fail" else "")

    stream = [(e, None) for e in [job(100, "fail", "j1"), job(60, "fail", "j2"), job(101, "done", "j1"),
                                  job(181, "start", "j3"), job(182, "start", "j4")]]
    detector = SidekiqFailuresDetector()
    for event, _ in stream[:4]:
        detector.feed(event)
    assert not detector.failed  # j2 settled by j3's line
    assert run(SidekiqFailuresDetector(), stream) == run(Reference(), stream)
