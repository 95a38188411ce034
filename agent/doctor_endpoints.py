"""The endpoint probes of ``railwatch doctor`` (agent.doctor): do the enabled collectors' services answer?

Postgres and Redis are asked through their client libraries when railwatch's venv has them
(psycopg: ``SHOW server_version``; redis: ``PING``), else at the wire level (an SSLRequest, to
which a PostgreSQL server answers one byte; a RESP ``PING``), which proves the service is there
but warns that the collector would be skipped. Puma's control app is asked for ``/stats``.
Messages never carry a password: URLs are shown masked.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import List, Tuple
from urllib.parse import urlsplit

from agent.config import Config

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def check_endpoints(cfg: Config, timeout: float = 3.0) -> List[Check]:
    col = cfg.collectors
    out = []
    if col.postgres.enabled:
        out.append(_postgres(col.postgres.dsn, min(col.postgres.timeout_s, timeout)))
    else:
        out.append(Check("postgres", SKIP, "collectors.postgres is disabled",
                         "enable it for connection counts and pg_stat_statements (see railwatch.example.toml)"))
    if col.sidekiq.enabled:
        out.append(_redis(col.sidekiq.redis_url, min(col.sidekiq.timeout_s, timeout)))
    else:
        out.append(Check("redis (sidekiq)", SKIP, "collectors.sidekiq is disabled",
                         "enable it for queue sizes, latency and the retry/dead sets"))
    if col.puma.enabled:
        out.append(_puma(col.puma.url, col.puma.token, min(col.puma.timeout_s, timeout)))
    else:
        out.append(Check("puma control app", SKIP, "collectors.puma is disabled",
                         "add `activate_control_app \"tcp://127.0.0.1:9293\", { auth_token: \"…\" }` to config/puma.rb and "
                         "set [collectors.puma]"))
    return out


def _host_port(url: str, default_port: int) -> Tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _postgres(dsn: str, timeout: float) -> Check:
    from agent.config_values import mask_url

    shown = mask_url(dsn, hide_path=False)
    try:
        import psycopg
    except ImportError:
        psycopg = None
    if psycopg is not None:
        try:
            with psycopg.connect(dsn, connect_timeout=max(int(timeout), 1), autocommit=True, application_name="railwatch-doctor") as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
                has_pss = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return Check("postgres", FAIL, f"{shown}: {type(exc).__name__}: {_first_line(exc)}",
                         "check collectors.postgres.dsn (host, port, user, password, database) and pg_hba.conf")
        note = "" if has_pss else "; pg_stat_statements not installed in this database (statement metrics off)"
        return Check("postgres", PASS, f"{shown}: PostgreSQL {version}{note}")
    host, port = _host_port(dsn, 5432)
    try:  # without psycopg: a Postgres server answers an SSLRequest with one byte, S or N
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
            answer = s.recv(1)
    except OSError as exc:
        return Check("postgres", FAIL, f"{host}:{port}: {exc.strerror or exc}", "is PostgreSQL running and listening there?")
    if answer not in (b"S", b"N"):
        return Check("postgres", FAIL, f"{host}:{port}: answered, but not as PostgreSQL", "check the port in collectors.postgres.dsn")
    return Check("postgres", WARN, f"{host}:{port}: PostgreSQL answers, but the psycopg package is missing",
                 _install_hint("postgres", "psycopg[binary]>=3.1"))


def _install_hint(extra: str, requirement: str) -> str:
    """railwatch is not on a package index: name the install script's option and this venv's pip."""
    import shlex
    import sys

    return (f"re-run packaging/install.sh with `--extras {extra}`, or install it into railwatch's virtualenv: "
            f"`{shlex.quote(sys.executable)} -m pip install '{requirement}'`; until then the collector is skipped")


def _redis(url: str, timeout: float) -> Check:
    from agent.config_values import mask_url

    shown = mask_url(url, hide_path=False)
    try:
        import redis
    except ImportError:
        redis = None
    if redis is not None:
        try:
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                client.ping()
                processes = client.scard("processes")
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001
            return Check("redis (sidekiq)", FAIL, f"{shown}: {type(exc).__name__}: {_first_line(exc)}",
                         "check collectors.sidekiq.redis_url (host, port, db, password): use the URL Sidekiq uses")
        return Check("redis (sidekiq)", PASS, f"{shown}: PONG, {processes} Sidekiq process(es) registered")
    try:
        if url.startswith("unix://"):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(timeout)
            s.connect(urlsplit(url).path)
        else:
            s = socket.create_connection(_host_port(url, 6379), timeout=timeout)
        with s:
            s.sendall(b"PING\r\n")
            answer = s.recv(64)
    except OSError as exc:
        return Check("redis (sidekiq)", FAIL, f"{shown}: {exc.strerror or exc}", "is Redis running and listening there?")
    if not answer.startswith((b"+PONG", b"-NOAUTH")):
        return Check("redis (sidekiq)", FAIL, f"{shown}: answered, but not as Redis", "check collectors.sidekiq.redis_url")
    return Check("redis (sidekiq)", WARN, f"{shown}: Redis answers, but the redis package is missing",
                 _install_hint("redis", "redis>=4"))


def _puma(url: str, token: str, timeout: float) -> Check:
    import requests

    try:
        r = requests.get(url.rstrip("/") + "/stats", params={"token": token} if token else None, timeout=timeout)
    except requests.RequestException as exc:
        return Check("puma control app", FAIL, f"{url}: {type(exc).__name__}",
                     "is `activate_control_app` in config/puma.rb, and does collectors.puma.url match it?")
    if r.status_code in (401, 403):
        return Check("puma control app", FAIL, f"{url}: HTTP {r.status_code}",
                     "collectors.puma.token must be the control app's auth_token")
    try:
        stats = r.json()
    except ValueError:
        stats = None
    if r.status_code != 200 or not isinstance(stats, dict):
        return Check("puma control app", FAIL, f"{url}: HTTP {r.status_code}, not Puma's /stats", "check collectors.puma.url")
    shape = f"{stats.get('workers')} worker(s)" if "worker_status" in stats else f"max_threads {stats.get('max_threads')}"
    return Check("puma control app", PASS, f"{url}: /stats answers ({shape}, backlog {stats.get('backlog', 0)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
