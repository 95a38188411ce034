"""Triage text for pool-exhaustion incidents (rails-signals.md E.1): what happened, the likely
cause from the app's own settings, containment and prevention specific to the pool that ran dry."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from agent.events import Triage
from detectors.base import AppFacts

__all__ = ["triage_for"]


def triage_for(key: Tuple[str, str, str], d: Dict[str, object], facts: AppFacts) -> Tuple[str, Triage]:
    """Title and triage for an incident ``key`` = (pool, error_class, metric) from its details."""
    pool, error_class, metric = key
    if metric:
        return _metric_triage(pool, metric, d, facts)
    if pool == "database":
        if error_class.endswith("ExclusiveConnectionTimeoutError"):
            return _exclusive_triage(d)
        return _app_pool_triage(d, facts)
    if pool == "database_server":
        return _server_triage(d, facts)
    if pool == "pgbouncer":
        return _pgbouncer_triage(error_class, d)
    return _redis_triage(d, facts)


def _impact(d: Dict[str, object]) -> str:
    share = d.get("error_share")
    requests = d.get("requests_in_window") or 0
    text = f"{d['errors']} error(s)"
    if isinstance(share, float):
        text += f", {share:.0%} of the {requests} requests completed in the window"
    endpoints = d.get("endpoints") or []
    jobs = d.get("job_classes") or []
    where = [f"{name} ({n})" for name, n in list(endpoints)[:3] + list(jobs)[:3]]  # type: ignore[call-overload]
    if where:
        text += "; hit: " + ", ".join(where)
    return text


def _deploy_note(d: Dict[str, object]) -> str:
    deploy = d.get("during_deploy")
    if not isinstance(deploy, dict):
        return ""
    if deploy["kind"] == "deploy":
        rev = f" of revision {str(deploy['revision'])[:12]}" if deploy.get("revision") else ""
        what = f"{deploy['seconds_before']:g}s after the deploy{rev}"
    else:
        what = f"{deploy['seconds_before']:g}s after a {deploy['component']} restart"
    if (d.get("errors") or 0) <= 2:  # type: ignore[operator]
        return f" It came {what}: a one-off timeout while processes boot and overlap is common."
    return f" It started {what}, but a sustained burst is not boot noise: check what that change did to connection demand."


def _holders_text(d: Dict[str, object]) -> str:
    holders = d.get("holders") or []
    if not holders:
        return ""
    groups: "OrderedDict[str, List[Dict[str, object]]]" = OrderedDict()  # longest first, by endpoint/job
    for h in holders:  # type: ignore[union-attr]
        name = f"job {h['job_class']}" if h.get("job_class") is not None else str(h.get("endpoint") or "(request)")
        groups.setdefault(name, []).append(h)
    parts = []
    for name, hs in list(groups.items())[:3]:
        top = hs[0]
        times = f" x{len(hs)}" if len(hs) > 1 else ""
        if top.get("job_class") is not None:
            parts.append(f"{name}{times} (up to {top['elapsed_s']:.1f}s)")
        else:
            db = f", ActiveRecord {top['db_ms']:.0f}ms" if top.get("db_ms") is not None else ""
            parts.append(f"{name}{times} (up to {top['duration_ms']:.0f}ms{db})")
    return " Longest requests/jobs overlapping the errors (likely connection holders): " + "; ".join(parts) + "."


def _compare(pool: Optional[int], what: str, n: Optional[int], unit: str) -> str:
    if pool is None or n is None:
        return ""
    if pool < n:
        return f"pool {pool} < {what} {n}: up to {n - pool} {unit} per process can wait for a connection."
    if pool == n:
        return f"pool {pool} = {what} {n}: no spare connection for anything else in the process (load_async executor, Thread.new, ActionCable)."
    return f"pool {pool} > {what} {n}."


def _app_pool_triage(d: Dict[str, object], facts: AppFacts) -> Tuple[str, Triage]:
    timeouts = d.get("checkout_timeout_s") or []
    waited = d.get("waited_s")
    wait_text = f"; threads waited up to {waited['max']:g}s" if isinstance(waited, dict) else ""  # type: ignore[index]
    timeout_text = f" (checkout_timeout {timeouts[0]:g}s)" if timeouts else ""  # type: ignore[index]
    title = "ActiveRecord connection pool exhausted (ConnectionTimeoutError)"
    summary = f"{title}: {_impact(d)}{wait_text}{timeout_text}."
    pool = facts.db_pool
    sizes = d.get("pool_size_in_message") or []
    if pool is None and sizes:
        pool = sizes[0]  # type: ignore[index]
    web = any(k in ("rails", "lograge") for k in (d.get("errors_by_origin") or {}))  # type: ignore[union-attr]
    jobs = bool(d.get("job_classes"))
    tiers = []  # (what, unit, knob, configured threads) for the tiers that failed
    if web or not jobs:
        tiers.append(("Puma max threads", "web threads", "Puma threads (RAILS_MAX_THREADS)", facts.puma_max_threads))
    if jobs or not web:
        tiers.append(("Sidekiq concurrency", "job threads", "Sidekiq concurrency", facts.sidekiq_concurrency))
    causes = [_compare(pool, what, n, unit) for what, unit, _, n in tiers] if pool is not None else []
    causes = [c for c in causes if c]
    starved = [(knob, n) for _, _, knob, n in tiers if pool is not None and n is not None and pool < n]
    if not causes:
        causes.append(
            "App settings unknown (pass --app DIR): compare `pool` (Rails 8.1: `max_connections`) in "
            "config/database.yml (production) with `threads` in config/puma.rb (RAILS_MAX_THREADS) "
            "and `concurrency` in config/sidekiq.yml."
        )
    elif not starved:
        causes.append(
            "The pool covers the configured threads, so connections are held too long (slow queries, "
            "long transactions, network calls inside a transaction) or leaked (threads started by app code)."
        )
    active = d.get("processes_active") or 0
    if d.get("processes") == 1 and active > 1 and (d.get("errors") or 0) >= 3:  # type: ignore[operator]
        causes.append(
            f"All errors came from one process (pid {d['pids'][0]}) of {active} active: a connection leak in that process is likely."  # type: ignore[index]
        )
    elif isinstance(active, int) and active > 1 and d.get("processes") == active:
        causes.append(f"All {active} active processes failed: capacity, not a leak in one process.")
    cause = " ".join(causes) + _holders_text(d) + _deploy_note(d)
    containment = []
    if starved:
        need = max(n for _, n in starved)
        knobs = " / ".join(k for k, _ in starved)
        containment.append(
            f"Make pool >= threads: raise `pool` to {need} (+ load_async executor threads + 1) or lower "
            f"{knobs} to {pool}, then rolling-restart; first check the database's max_connections has room "
            "for the larger pools."
        )
    if d.get("holders"):
        containment.append("Time-box or shed the slow endpoint/job holding connections (listed above): rate-limit, feature-flag, or set a statement_timeout.")
    containment += [
        "If only one process fails, restart it (leaked connections show as `dead` in ActiveRecord::Base.connection_pool.stat).",
        "Shed load on the hot endpoint while the pool recovers.",
    ]
    prevention = [
        "Size `pool` >= max(Puma threads, Sidekiq concurrency) + async executor threads + 1, and keep the fleet total under the database's max_connections.",
        "Hold connections briefly: no network calls inside transactions; `ActiveRecord::Base.connection_pool.with_connection` in app threads.",
        "Set statement_timeout / idle_in_transaction_session_timeout (database.yml `variables:`).",
        "Export connection_pool.stat (busy, dead, waiting) and Puma pool_capacity to catch saturation before timeouts.",
    ]
    return title, Triage(summary, cause, containment, prevention)


def _exclusive_triage(d: Dict[str, object]) -> Tuple[str, Triage]:
    title = "ActiveRecord could not take ownership of all pool connections (ExclusiveConnectionTimeoutError)"
    cause = (
        "Raised by pool-wide operations (disconnect!, clear_reloadable_connections!, reaping on fork or code reload) "
        "when requests still hold connections after 2 x checkout_timeout: a deploy/restart symptom more than a load problem."
        + _holders_text(d) + _deploy_note(d)
    )
    return title, Triage(
        f"{title}: {_impact(d)}.", cause,
        ["If limited to a deploy or restart, no action; if it repeats, find the requests holding connections (above)."],
        ["Disconnect in `before_fork` / reconnect in `on_worker_boot` only when needed; keep long work out of requests."],
    )


def _server_triage(d: Dict[str, object], facts: AppFacts) -> Tuple[str, Triage]:
    mysql = any("mysql" in w for w in (d.get("wordings") or {}))  # type: ignore[union-attr]
    title = "Database refused connections: max_connections reached"
    pool = facts.db_pool
    if pool is not None:
        web = max(facts.puma_workers or 0, 1) * pool
        demand = (
            f"Each Puma process opens up to pool={pool} connections, so this host's web tier alone can hold "
            f"{max(facts.puma_workers or 0, 1)} x {pool} = {web}; each Sidekiq process adds up to {pool}. "
            "Multiply by hosts and add consoles, cron, migrations and other apps."
        )
    else:
        demand = "Connection demand = hosts x (Puma workers x pool + Sidekiq processes x pool) + consoles, cron and migrations (pass --app DIR for the pool size)."
    limit = d.get("pg_max_connections")
    demand += f" The server's max_connections is {limit:g}." if isinstance(limit, float) else ""
    check = (
        "Check `SHOW VARIABLES LIKE 'max_connections';` and `SHOW STATUS LIKE 'Threads_connected';`."
        if mysql else
        "Check `SHOW max_connections;` and `SELECT state, count(*) FROM pg_stat_activity GROUP BY 1;`: many `idle` "
        "means pools too big for the fleet, many `idle in transaction` means leaked transactions."
    )
    return title, Triage(
        f"{title}: {_impact(d)}.", f"{demand} {check}{_deploy_note(d)}",
        [
            "Stop or slow scale-out; roll back the change that raised connection demand.",
            "Lower per-process pool or the process count; terminate `idle in transaction` sessions older than a few minutes.",
            "Route through PgBouncer in transaction mode (prepared_statements: false, advisory_locks: false).",
        ],
        [
            "Budget connections: hosts x processes x pool < max_connections - reserved slots, with room for deploy overlap.",
            "Set idle_in_transaction_session_timeout and statement_timeout; alert on connections / max_connections.",
        ],
    )


def _pgbouncer_triage(limit: str, d: Dict[str, object]) -> Tuple[str, Triage]:
    if limit == "query_wait_timeout":
        title = "PgBouncer clients waited too long for a server connection (query_wait_timeout)"
        cause = "default_pool_size is too small for the load, or server connections are held by long transactions."
    else:
        title = f"PgBouncer refused clients ({limit} reached)"
        cause = f"More client connections (hosts x processes x pool) than PgBouncer's {limit} allows."
    return title, Triage(
        f"{title}: {_impact(d)}.",
        cause + " Check `SHOW POOLS;` (cl_waiting, maxwait) and `SHOW CONFIG;` on the PgBouncer admin console." + _deploy_note(d),
        [f"Raise {limit if limit != 'query_wait_timeout' else 'default_pool_size'} within the database's max_connections, or lower app pools.",
         "Find and end long transactions holding server connections (pg_stat_activity)."],
        ["Size max_client_conn for the whole fleet's pools; transaction pooling needs prepared_statements: false and advisory_locks: false."],
    )


def _redis_triage(d: Dict[str, object], facts: AppFacts) -> Tuple[str, Triage]:
    waited = d.get("waited_s")
    sizes = d.get("pool_size_in_message") or []
    title = "connection_pool exhausted (ConnectionPool::TimeoutError)"
    cause = (
        "'Waited 1 sec' is Sidekiq's Redis client pool (pool_timeout 1 s): more threads push jobs than it has connections."
        if isinstance(waited, dict) and waited["min"] == 1.0 else
        "A connection_pool (Sidekiq's Redis, Rails cache, ActionCable or an HTTP client) had no free connection within its timeout."
    )
    if sizes and facts.puma_max_threads:
        cause += f" Pool size {sizes[0]} is shared by up to {facts.puma_max_threads} Puma threads per process."  # type: ignore[index]
    return title, Triage(
        f"{title}: {_impact(d)}.", cause + " Redis latency makes it worse: check `redis-cli --latency` and `INFO clients`." + _deploy_note(d),
        ["Raise the client pool size for web processes (Sidekiq.configure_client { |c| c.redis = { size: N } }) to >= Puma threads.",
         "Check Redis latency and connected_clients vs maxclients."],
        ["Size every connection_pool >= the threads that share it; watch Redis round-trip time."],
    )


def _metric_triage(pool: str, metric: str, d: Dict[str, object], facts: AppFacts) -> Tuple[str, Triage]:
    where = ", ".join(d.get("pids") or []) or "-"  # type: ignore[arg-type]
    texts = {
        "puma.pool_capacity": ("Puma thread pool saturated (backlog > 0, pool_capacity 0)",
                               "Every Puma thread is busy and requests queue in the backlog: slow requests (often waiting on the database pool) or too few threads."),
        "db.pool": ("ActiveRecord pool at capacity with threads waiting (pool.stat)",
                    "busy + dead connections fill the pool while threads wait; `dead` > 0 means connections leaked by dead threads."),
        "pg.connections": ("Postgres connections at max_connections",
                           "The server is at its connection limit; new connections will be refused."),
    }
    title, cause = texts.get(metric, (f"{metric} saturated", ""))
    return title, Triage(
        f"{title} for {d['errors']} sample(s) in a row or more ({where}).", cause,
        ["Correlate with the pool errors of the same time; shed load or scale out."],
        ["Keep pools >= threads and alert on these metrics before errors start."],
    )
