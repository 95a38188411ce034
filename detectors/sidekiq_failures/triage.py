"""Triage text of the sidekiq_failures detector: titles, summaries, likely causes, and the commands
to contain and prevent each problem (failures, long-running jobs, process exits, Redis, metrics).
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

from agent.events import Job, Triage
from agent.timeparse import to_iso
from detectors.shared.baseline import LastValues
from detectors.sidekiq_failures.state import Problem

# (error class pattern, likely cause, prevention) — the first hour of an expert's reading of the error
HINTS: Tuple[Tuple["re.Pattern[str]", str, str], ...] = (
    (re.compile(r"RecordNotFound|RecordInvalid|Deserialization"),
     "the record was deleted or changed before the job ran (enqueued inside a transaction that rolled back or before commit, or deleted since)",
     "enqueue in after_commit (or `perform_later` after the transaction); rescue ActiveRecord::RecordNotFound and return when a missing record is expected"),
    (re.compile(r"ConnectionTimeoutError|ConnectionNotEstablished|too many clients|remaining connection slots"),
     "the database pool is smaller than Sidekiq's concurrency, or the database refuses connections (see the pool_exhaustion detector)",
     "make the database pool >= Sidekiq concurrency (+ other threads); check max_connections / PgBouncer limits"),
    (re.compile(r"Timeout|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|SSL|Net::|HTTP|Faraday|Socket|BadGateway|Unavailable|Gateway"),
     "a downstream dependency (HTTP API, mail, payment or search service) is slow or down",
     "give every network call a short timeout and a circuit breaker; make the job idempotent so retries are safe"),
    (re.compile(r"NoMethodError|NameError|ArgumentError|TypeError|KeyError|NoMatchingPattern|FrozenError|ZeroDivision"),
     "a code bug (nil or wrong argument), usually from a recent deploy or a changed job payload",
     "add a test for the payload the job receives; keep job arguments simple (ids, strings) and backward compatible across deploys"),
    (re.compile(r"Redis|ConnectionPool::TimeoutError"),
     "Redis is unreachable or its connection pool is exhausted",
     "size the Redis pool for the threads that share it; monitor Redis memory, maxclients and latency"),
)
GEM_PATH = re.compile(r"/gems/|/rubies/|/lib/ruby/|/vendor/bundle/|/bundle/ruby/")
APP_PATH = re.compile(r"(?:^|/)(?:app|lib)/")
DEFAULT_MAX_RETRIES = 25


def top_app_frame(backtrace: Tuple[str, ...]) -> str:
    """The first frame in the app's own code (app/ or lib/, not inside a gem or Ruby)."""
    for frame in backtrace:
        if APP_PATH.search(frame) and not GEM_PATH.search(frame):
            return frame
    return ""


def retry_days_left(retry_count: Optional[int]) -> float:
    """Days Sidekiq keeps retrying after retry ``retry_count`` (delay count**4 + 15 + ~5*(count+1) s)."""
    start = 0 if retry_count is None else min(max(retry_count + 1, 0), DEFAULT_MAX_RETRIES)  # a hostile count stays in range
    return sum(c ** 4 + 15 + 4.5 * (c + 1) for c in range(start, DEFAULT_MAX_RETRIES)) / 86400.0


def _when(ts: Optional[float]) -> str:
    return to_iso(ts) or "?"


def failure_triage(p: Problem, last_done: Optional[float], deploy) -> Tuple[str, Triage]:  # type: ignore[no-untyped-def]
    cls, err = p.subject.get("job_class", "?"), p.subject.get("error_class") or "an error with no class logged"
    queue = p.subject.get("queue", "default")
    sample = p.sample if isinstance(p.sample, Job) else None
    message = (sample.error_message if sample else "").split("\n")[0][:300]
    frame = top_app_frame(sample.backtrace) if sample else ""
    dead, jobs = p.dead_total, len(p.jobs)
    if dead:
        recovery = f"{dead} job(s) exhausted their retries and sit in the dead set: they will not run again unless retried by hand"
    elif p.recovered:
        recovery = f"{p.recovered} job(s) recovered on retry, {jobs} did not (yet)"
    else:
        rc = p.retry_max
        recovery = (f"no job recovered on retry (highest retry_count {rc if rc is not None else 'none: first attempts'}); "
                    f"with the default {DEFAULT_MAX_RETRIES} retries Sidekiq keeps retrying for ~{retry_days_left(rc):.0f} more days")
    signals = (("failing_100pct", "failing 100%"), ("retry_storm", "retry storm"), ("dead", "jobs dying"),
               ("rate_spike", "failure-rate spike"), ("new_error", "new error"),
               ("still_failing_at_end", "still failing at the end of the log"))
    what = ", ".join(text for name, text in signals if name in p.signals) or "failing"
    title = f"Sidekiq {cls} {what}: {err}"
    succeeded = f"last success of {cls} at {_when(last_done)}" if last_done else f"no success of {cls} seen"
    summary = (f"{cls} failed {p.count} time(s) ({jobs} job(s)) with {err} between {_when(p.first_ts)} and {_when(p.last_ts)}; "
               f"{succeeded}; {recovery}.")
    if p.facts.get("still_failing_at_end"):
        summary += (f" {cls} was still failing when the log ended (failures younger than the recovery grace, "
                    f"no success of {cls} in the window): check it is still failing now.")
    cause = f"{err}: {message}" if message else err
    if frame:
        cause += f" — raised from {frame}"
    for pattern, hint, _ in HINTS:
        if pattern.search(err):
            cause += f". Likely: {hint}"
            break
    if p.new_reason:
        cause += f". This error is new ({p.new_reason})"
    if deploy is not None and p.first_ts is not None:
        cause += f"; it started {p.first_ts - deploy.ts:.0f} s after the deploy of {deploy.revision or 'a new release'} at {_when(deploy.ts)}: suspect that change"
    select = f"Sidekiq::RetrySet.new.select {{ |j| j.display_class == '{cls}' }}"
    containment = [
        f"Look at the failures: `{select}.first(5).map {{ |j| [j.jid, j['error_message'], j['retry_count']] }}`",
        f"Stop the bleeding if it keeps failing: disable {cls} (feature flag / early return), roll back the change or fix the dependency; "
        f"lower the concurrency of the processes serving queue '{queue}', or pause it (Sidekiq Pro/Enterprise: `Sidekiq::Queue.new('{queue}').pause!`)",
        f"Once fixed, re-run them in a controlled batch: `{select}.each(&:retry)`"
        + (f" and the dead ones: `Sidekiq::DeadSet.new.select {{ |j| j.display_class == '{cls}' }}.each(&:retry)`" if dead else ""),
        f"If these failures are expected and harmless, drop them instead: `{select}.each(&:delete)`",
    ]
    prevention = [hint for pattern, _, hint in HINTS if pattern.search(err)][:1] + [
        f"set `sidekiq_options retry:` to what {cls} can bear and clean up in `sidekiq_retries_exhausted`",
        "alert on the retry-set size and per-class failure rate (this detector) rather than on single failures",
    ]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def long_running_triage(p: Problem, durations: LastValues) -> Tuple[str, Triage]:
    cls = p.subject.get("job_class", "?")
    usual = durations.p95(cls)
    usual_text = f"its usual p95 is {usual:.1f} s" if usual is not None else "no usual duration known yet"
    parts = []
    if "stuck" in p.signals:
        parts.append(f"started but not finished for {float(p.facts.get('stuck_for_s', 0)):.0f} s while its process kept working")  # type: ignore[arg-type]
    if "slow" in p.signals:
        parts.append(f"took up to {float(p.facts.get('slowest_s', 0)):.0f} s")  # type: ignore[arg-type]
    if "interrupted" in p.signals:
        parts.append(f"was killed by {p.facts.get('interrupted')} shutdown(s) and pushed back to Redis")
    title = f"Sidekiq {cls} running far past its usual time" + (" (all threads stuck)" if "all_threads_stuck" in p.signals else "")
    summary = f"{cls} {'; '.join(parts) or 'ran long'} ({usual_text}); first {_when(p.first_ts)}, last {_when(p.last_ts)}."
    cause = ("a network call or lock wait without a timeout, or a job processing far more data than usual; "
             "a job longer than Sidekiq's shutdown timeout (-t, default 25 s) is killed and re-run at every deploy")
    containment = [
        "capture the thread backtraces: `kill -TTIN <pid>` (Sidekiq <= 7) or `kill -INFO <pid>` (8.x) and read the job's frames in the log",
        "quiet the process (`kill -TSTP <pid>`) and restart it if the job hangs; lower concurrency if it starves other queues",
        "check `Sidekiq::Workers.new.map { |_p, _t, w| w }.select { |w| w['run_at'] < Time.now.to_i - 600 }` for other long runners",
    ]
    prevention = ["give network calls and lock waits timeouts", "split big jobs into batches (find_in_batches) so each finishes well within the shutdown timeout",
                  "make the orchestrator's stop grace period >= Sidekiq -t + 5 s"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def process_triage(kind: str, p: Problem) -> Tuple[str, Triage]:
    exits = p.facts.get("exits") or []
    if kind == "restart_loop":
        title = "Sidekiq processes restarting repeatedly"
        summary = f"{p.facts.get('boots_in_window')} Sidekiq boots within the window (last {_when(p.last_ts)})."
    else:
        title = "Sidekiq process exited without shutting down (crash or kill)"
        summary = f"{p.count} unclean exit(s), {p.facts.get('unclean_exits_in_window')} in the last window; last {_when(p.last_ts)}: {exits[-3:]}."
    cause = ("the kernel OOM killer or the orchestrator's SIGKILL (stop grace period shorter than Sidekiq -t + 5 s), a signal Sidekiq "
             "does not handle (SIGHUP from a closed terminal), or a boot error in a restart loop")
    containment = ["check the host for OOM kills (`journalctl -k | grep -i 'killed process'`, container exit code 137) and the process RSS",
                   "in-flight jobs of a killed process are lost with the open-source fetch: re-enqueue them from your records",
                   "if it is a boot error, roll back the deploy that introduced it"]
    prevention = ["lower concurrency or memory per job; MALLOC_ARENA_MAX=2 or jemalloc", "stop with TSTP then TERM and a grace period >= -t + 5 s",
                  "run Sidekiq under systemd/your orchestrator, never from a terminal (nohup)"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def redis_triage(p: Problem) -> Tuple[str, Triage]:
    down = "redis_error" in p.signals or "redis_down" in p.signals
    title = "Sidekiq cannot reach Redis" if down else "Sidekiq's Redis connection is slow"
    outage = max(float(p.facts.get("outage_s", 0.0)), float(p.facts.get("longest_downtime_s", 0.0)))  # type: ignore[arg-type]
    summary = f"{p.count} Redis error line(s) between {_when(p.first_ts)} and {_when(p.last_ts)}; longest outage seen {outage:.0f} s."
    cause = ("Redis down, restarting, out of memory (`OOM command not allowed`), at maxclients, or unreachable over the network; "
             "a slow-RTT warning means a distant or CPU-starved Redis, or a CPU-saturated Sidekiq process")
    containment = ["`redis-cli -u $REDIS_URL ping` and `INFO memory`/`INFO clients`; fail over or restart Redis; free memory",
                   "jobs cannot be fetched or enqueued meanwhile: expect a backlog and retry bursts once it is back"]
    prevention = ["maxmemory-policy noeviction and memory alerts", "keep Redis in the same zone as Sidekiq", "size Sidekiq's Redis pools to its concurrency"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)


def metric_triage(kind: str, p: Problem) -> Tuple[str, Triage]:
    value = p.facts.get("value")
    if kind == "latency":
        queue = p.subject.get("queue", "?")
        title = f"Sidekiq queue '{queue}' latency is high"
        summary = f"the oldest job in '{queue}' has waited {value} s (last {_when(p.last_ts)})."
        cause = "not enough capacity for the enqueue rate, long or stuck jobs occupying the threads, or processes down"
        containment = ["add processes/concurrency for this queue or pause the noisiest producer", "look for stuck jobs and retry storms (this detector)"]
    else:
        which = "retry" if kind == "retry_set" else "dead"
        title = f"Sidekiq {which} set growing fast"
        summary = f"the {which} set grew by {value} within the window (last {_when(p.last_ts)})."
        cause = "a job class failing in bulk (see the failure incidents of the same time)"
        containment = [f"group the {which} set by class: `Sidekiq::{'RetrySet' if which == 'retry' else 'DeadSet'}.new.map(&:display_class).tally`"]
    prevention = ["alert on queue latency and retry-set size, not only on errors"]
    return title, Triage(summary=summary, likely_cause=cause, containment=containment, prevention=prevention)
