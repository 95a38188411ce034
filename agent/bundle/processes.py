"""A bundle's process snapshot: Puma and Sidekiq processes (pid, threads, RSS, CPU, open
connections to Postgres, PgBouncer and Redis) and the host's load and memory, via psutil.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional

from agent.clock import Clock
from agent.scrub import scrub_cmdline
from agent.timeparse import to_iso

DB_PORTS = {5432: "postgres", 6432: "pgbouncer", 6379: "redis"}


def _role(cmdline: str) -> Optional[str]:
    low = cmdline.lower()
    if "sidekiq" in low and "railwatch" not in low:
        return "sidekiq"
    if "puma" in low and "railwatch" not in low:
        return "puma"
    return None


def _connections(proc: Any) -> Optional[Dict[str, int]]:
    get: Callable[..., Any] = getattr(proc, "net_connections", None) or proc.connections
    counts = {name: 0 for name in DB_PORTS.values()}
    for c in get(kind="tcp"):
        port = c.raddr.port if c.raddr else None
        if port in DB_PORTS and c.status == "ESTABLISHED":
            counts[DB_PORTS[port]] += 1
    return counts


def snapshot_processes(clock: Optional[Clock] = None, sample_seconds: float = 0.25) -> Dict[str, Any]:
    """Puma and Sidekiq processes (matched by command line) and host load/memory, via psutil."""
    import psutil

    clock = clock or Clock()
    errors: List[str] = []
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        cmd = " ".join(scrub_cmdline(p.info.get("cmdline") or [])) or (p.info.get("name") or "")
        role = _role(cmd)
        if role:
            try:
                p.cpu_percent(None)  # prime: the next call measures over the sample interval
            except psutil.Error:
                continue
            found.append((p, role, cmd))
    if found:
        clock.sleep(sample_seconds)
    processes = []
    for p, role, cmd in found:
        entry: Dict[str, Any] = {"pid": p.pid, "role": role, "cmdline": cmd[:500]}
        try:
            with p.oneshot():
                entry.update(threads=p.num_threads(), rss_bytes=p.memory_info().rss, cpu_percent=p.cpu_percent(None),
                             ppid=p.ppid(), create_time=to_iso(p.create_time()))
        except psutil.Error as exc:
            errors.append(f"pid {p.pid}: {type(exc).__name__}")
            continue
        try:
            entry["db_connections"] = _connections(p)
        except (psutil.Error, OSError) as exc:
            entry["db_connections"] = None
            errors.append(f"pid {p.pid}: connections unreadable ({type(exc).__name__}; run as the app's user or root)")
        processes.append(entry)
    vm = psutil.virtual_memory()
    host: Dict[str, Any] = {
        "cpus": psutil.cpu_count(),
        "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
        "swap": {"total": psutil.swap_memory().total, "used": psutil.swap_memory().used},
    }
    try:
        host["load_average"] = list(os.getloadavg())
    except (OSError, AttributeError):
        host["load_average"] = None
    return {"processes": processes, "host": host, "errors": errors}
