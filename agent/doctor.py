"""``railwatch doctor``: is everything the daemon needs in reach? One line per check.

Checks, in order: the configuration parses; each log is there, readable and being
written (its mtime); the state directory is writable; Puma and Sidekiq processes are
found (the psutil collector's patterns); the enabled collectors' endpoints answer
(Postgres, Redis, Puma's control app); each sink accepts a dry run. Every check is
``PASS``, ``WARN`` (works, but look), ``FAIL`` (the daemon will miss something: the
line says what to do) or ``SKIP`` (not configured). Any FAIL makes the exit status 1.

Run as root, the checks run in a child process that has dropped to the service's user
(``railwatch`` by default), so "readable" means readable by the daemon, not by root,
and nothing is created as root under the state directory.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Optional, Tuple

from agent.config import Config, ConfigError, apply_overrides, parse, read_toml
from agent.doctor_endpoints import FAIL, PASS, SKIP, WARN, Check, check_endpoints

NAME_WIDTH = 32  # the check-name column; a longer name gets a line of its own
STALE_AFTER_S = 3600.0  # a production log not written for an hour: is the app logging elsewhere?


# ----------------------------------------------------------------------------- configuration

def load_config(config_path: Optional[str], app: Optional[str], logs: Tuple[str, ...] = (),
                state_dir: Optional[str] = None) -> Tuple[Optional[Config], Check]:
    where = config_path or (f"--app {app}" if app else "--log")
    try:
        data: Dict[str, Any] = read_toml(config_path) if config_path else {}
        cfg = parse(apply_overrides(data, app=app, logs=logs, state_dir=state_dir), origin=config_path or "")
    except ConfigError as exc:
        return None, Check("config", FAIL, f"{where}: " + "; ".join(exc.errors), _config_fix(config_path))
    return cfg, Check("config", PASS, f"{where}: {len(cfg.sources)} log(s), detectors {', '.join(cfg.enabled_detectors)}")


def _config_fix(config_path: Optional[str]) -> str:
    """What to do depends on why: no file at all, an unreadable one, or keys that do not validate."""
    if config_path and not os.path.exists(config_path):
        return (f"write one: `railwatch init-config --app /path/to/rails/app > {config_path}` (or run doctor with "
                "--app DIR or --log FILE to check without a config file)")
    if config_path and not os.access(config_path, os.R_OK):
        return f"make {config_path} readable by {_whoami()} (the service's user)"
    return ("fix the keys named above (`railwatch config check FILE` lists them; every key is documented "
            "in railwatch.example.toml)")


# ----------------------------------------------------------------------------- files

def check_logs(cfg: Config, now: float, stale_after_s: float = STALE_AFTER_S) -> List[Check]:
    import glob

    out: List[Check] = []
    for source in cfg.sources:
        paths = sorted(glob.glob(source.path)) if glob.has_magic(source.path) else [source.path]
        if not paths:
            out.append(Check(f"log {source.path}", FAIL, "no file matches this pattern",
                             "correct the [[sources]] path, or check where the app writes its logs"))
        for path in paths[:20]:
            out.append(_check_log(path, now, stale_after_s))
    return out


def _check_log(path: str, now: float, stale_after_s: float) -> Check:
    name = f"log {path}"
    try:
        with open(path, "rb") as fh:
            fh.read(1)
            st = os.fstat(fh.fileno())
    except FileNotFoundError:
        return Check(name, FAIL, "does not exist",
                     "start the app, or point [[sources]] at the real file (an app logging to STDOUT "
                     "(RAILS_LOG_TO_STDOUT) writes to journald or its process manager instead)")
    except PermissionError:
        return Check(name, FAIL, f"not readable by {_whoami()}", _read_access_fix(path))
    except OSError as exc:
        return Check(name, FAIL, f"cannot read ({exc.strerror or exc})", "check the path and the filesystem")
    age = now - st.st_mtime
    if age > stale_after_s:
        return Check(name, WARN, f"readable, {st.st_size:,} bytes, but last written {_age(age)} ago",
                     "is the app writing elsewhere now (another log, STDOUT)? fine for a quiet Sidekiq")
    return Check(name, PASS, f"readable, {st.st_size:,} bytes, written {_age(age)} ago")


def _read_access_fix(path: str) -> str:
    directory = os.path.dirname(path) or "."
    user = _whoami()
    acl = (f"`setfacl -m u:{user}:rX {directory} && setfacl -d -m u:{user}:r {directory} && setfacl -m u:{user}:r {path}` "
           "(-d: files the app creates later, after rotation, inherit it)")
    try:
        import grp

        gid = os.stat(directory).st_gid
        group = grp.getgrgid(gid).gr_name
    except (OSError, KeyError, ImportError):
        return f"give {user} read access with an ACL: {acl}"
    if gid == 0:  # never hand out root's group to read a log
        return f"the log directory belongs to group root: give {user} an ACL instead: {acl}"
    return (f"`usermod -aG {group} {user}` and make the logs group-readable (chmod g+r), then restart railwatch; "
            f"or an ACL: {acl}")


def _nearest_existing(path: str) -> str:
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing parent decides whether it can be created
    return probe


def check_state_dir(cfg: Config) -> Check:
    path = cfg.state.dir
    probe = _nearest_existing(path)
    if probe != path:
        if os.access(probe, os.W_OK | os.X_OK):
            return Check("state dir", PASS, f"{path}: will be created (in {probe})")
        return Check("state dir", FAIL, f"{path}: missing, and {probe} is not writable by {_whoami()}",
                     f"`install -d -m 0700 -o {_whoami()} {path}` (or StateDirectory= in the unit)")
    try:
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=path, prefix=".doctor-")
        os.close(fd)
        os.unlink(tmp)
        free = os.statvfs(path)
    except OSError as exc:
        return Check("state dir", FAIL, f"{path}: not writable by {_whoami()} ({exc.strerror or exc})",
                     f"`chown -R {_whoami()} {path} && chmod 0700 {path}`")
    free_mb = free.f_bavail * free.f_frsize // (1 << 20)
    if free_mb < 100:
        return Check("state dir", WARN, f"{path}: writable, only {free_mb} MiB free",
                     "free some space: bundles and the incident store live here")
    return Check("state dir", PASS, f"{path}: writable, {free_mb:,} MiB free")


# ----------------------------------------------------------------------------- processes

def check_processes(cfg: Config, process_iter: Optional[Callable[..., Any]] = None) -> List[Check]:
    c = cfg.collectors.psutil
    if not c.enabled:
        return [Check("processes", SKIP, "collectors.psutil is disabled")]
    import psutil

    from agent.clock import Clock
    from agent.sources.collectors.processes import ProcessCollector

    finder = ProcessCollector(c.puma_match, c.sidekiq_match, c.db_ports, c.redis_ports, Clock(),
                              process_iter=process_iter or psutil.process_iter)
    found: Dict[str, List[int]] = {"puma": [], "sidekiq": []}
    for component, proc in finder.find():
        found[component].append(proc.pid)
    uses_sidekiq = (any(os.path.basename(s.path).startswith("sidekiq") for s in cfg.sources) or cfg.collectors.sidekiq.enabled
                    or (bool(cfg.app.root) and _app_file_exists(cfg.app.root, "config/sidekiq.yml")))
    out = []
    for component, key in (("puma", "puma_match"), ("sidekiq", "sidekiq_match")):
        pids = found[component]
        if pids:
            out.append(Check(f"{component} processes", PASS, f"{len(pids)} found (pid {', '.join(map(str, sorted(pids)[:8]))})"))
        elif component == "sidekiq" and not uses_sidekiq:
            out.append(Check("sidekiq processes", SKIP, "none found, and the app shows no sign of Sidekiq"))
        else:
            out.append(Check(f"{component} processes", FAIL, f"no process matches collectors.psutil.{key}",
                             f"is the app running on this host? If {component} runs under another process title, set "
                             f"collectors.psutil.{key} to a regex matching its command line (`ps -eo args | grep -i {component}`)"))
    return out


def _app_file_exists(root: str, rel: str) -> bool:
    from agent.config import app_dirs

    return any(os.path.isfile(os.path.join(d, rel)) for d in app_dirs(root))


# ----------------------------------------------------------------------------- sinks

def check_sinks(cfg: Config) -> List[Check]:
    import requests

    from agent.sinks import build_sinks

    try:
        sinks = build_sinks(cfg.sinks, cfg.state.dir, session=requests.Session())
    except ValueError as exc:
        return [Check("sinks", FAIL, str(exc), "fix the [sinks.<name>] tables")]
    out = []
    for name, sink in sinks.items():
        label = f"sink {name} ({getattr(sink, 'kind', '?')})"
        target = getattr(sink, "path", None) if getattr(sink, "kind", "") == "directory" else None
        if target and not os.path.exists(target):
            # its dry run would create the directory: doctor looks, it does not set up
            probe = _nearest_existing(target)
            if os.access(probe, os.W_OK | os.X_OK):
                out.append(Check(label, PASS, f"{target}: will be created by the daemon (in {probe})"))
            else:
                out.append(Check(label, FAIL, f"{target}: missing, and {probe} is not writable by {_whoami()}",
                                 f"`install -d -m 0700 -o {_whoami()} {target}`"))
            continue
        try:
            result = sink.dry_run()
        except Exception as exc:  # noqa: BLE001 - a sink that raises is a failing sink
            out.append(Check(label, FAIL, f"dry run raised {type(exc).__name__}", "see the sink's options"))
            continue
        if result.accepted:
            out.append(Check(label, PASS, result.detail))
        else:
            out.append(Check(label, FAIL, result.detail, "fix the sink's options or its target; "
                             "`railwatch test-incident` sends a marked test incident end to end"))
    return out + check_bundle_store(cfg)


def check_bundle_store(cfg: Config) -> List[Check]:
    """The bundle store's credentials and bucket, with one harmless request."""
    from agent.bundle.remote import make_bundle_store

    try:
        store = make_bundle_store(cfg.bundle_store)
        if store is None:
            return []
        result = store.check()
    except Exception as exc:  # noqa: BLE001 - e.g. the minio package missing, an unreadable key file
        return [Check("bundle store", FAIL, f"{type(exc).__name__}: {str(exc)[:200]}",
                      "pip install 'railwatch[s3]'; check [bundle_store]")]
    if result.accepted:
        return [Check("bundle store", PASS, result.detail)]
    return [Check("bundle store", FAIL, result.detail, "check [bundle_store] credentials (or the instance role) and bucket")]


# ----------------------------------------------------------------------------- running

def run_checks(config_path: Optional[str], app: Optional[str], logs: Tuple[str, ...] = (), state_dir: Optional[str] = None,
               stale_after_s: float = STALE_AFTER_S) -> List[Check]:
    cfg, first = load_config(config_path, app, logs, state_dir)
    checks = [first]
    if cfg is None:
        return checks
    checks += check_logs(cfg, time.time(), stale_after_s)
    checks.append(check_state_dir(cfg))
    checks += check_processes(cfg)
    checks += check_endpoints(cfg)
    checks += check_sinks(cfg)
    return checks


def check_interpreter() -> Check:
    """Can this user run this Python? (An interpreter under /root, e.g. pyenv's, is root's alone.)"""
    import sys

    for path in (sys.executable, os.path.dirname(os.__file__)):
        if not os.access(path, os.R_OK | os.X_OK):
            return Check("python", FAIL, f"{path} is not readable by {_whoami()}: the service cannot run this Python",
                         "install into a virtualenv made from the system Python (install.sh --python /usr/bin/python3)")
    return Check("python", PASS, f"{sys.executable} ({sys.version.split()[0]}) usable by {_whoami()}")


def _preload() -> None:
    """Import what the checks use while still root: the child may not be able to read every
    directory of this Python (an interpreter under /root, for one)."""
    import glob  # noqa: F401
    import grp  # noqa: F401
    import secrets  # noqa: F401 - redis and requests import these lazily
    import ssl  # noqa: F401
    import tempfile  # noqa: F401
    import uuid  # noqa: F401

    import psutil  # noqa: F401
    import requests  # noqa: F401

    import agent.sinks  # noqa: F401
    import agent.sources.collectors.processes  # noqa: F401
    for optional in ("psycopg", "redis"):
        try:
            __import__(optional)
        except ImportError:
            pass


def run_as(user: str, fn: Callable[[], List[Check]]) -> List[Check]:
    """``fn()`` in a child process running as ``user`` (with its groups); for root only."""
    import pwd

    entry = pwd.getpwnam(user)
    _preload()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(read_end)
            os.initgroups(user, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.environ.update(HOME=entry.pw_dir or "/", USER=user, LOGNAME=user)
            payload = json.dumps([asdict(c) for c in [check_interpreter()] + fn()]).encode()
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the parent gets an answer
            payload = json.dumps([asdict(Check("doctor", FAIL, f"checks as {user} failed: {type(exc).__name__}: {exc}"))]).encode()
            code = 1
        with os.fdopen(write_end, "wb") as fh:
            fh.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return [Check(**c) for c in json.loads(data.decode() or "[]")]


def service_user(requested: Optional[str]) -> Optional[str]:
    """The user to check as: ``requested``, else ``railwatch`` when root and that user exists; None = as we are."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    name = requested or "railwatch"
    try:
        pwd.getpwnam(name)
    except KeyError:
        if requested:
            raise ValueError(f"--user {requested}: no such user") from None
        return None
    return None if name == "root" else name


def render(checks: List[Check], colour: bool = False) -> str:
    colours = {PASS: "\033[32m", WARN: "\033[33m", FAIL: "\033[31m", SKIP: "\033[2m"}
    # names longer than the column (a long log path) are printed whole, the detail on the next line
    width = min(max((len(c.name) for c in checks), default=10), NAME_WIDTH)
    lines = []
    for c in checks:
        status = f"{colours[c.status]}{c.status}\033[0m" if colour else c.status
        if len(c.name) > width:
            lines.append(f"{status}  {c.name}")
            lines.append(f"{'':6}{'':<{width}}  {c.detail}")
        else:
            lines.append(f"{status}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f"{'':6}{'':<{width}}  → {c.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, WARN, FAIL, SKIP)}
    lines.append("")
    lines.append(f"{counts[PASS]} passed, {counts[WARN]} warning(s), {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines) + "\n"


def _whoami() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError, AttributeError):
        return "this user"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


__all__ = ["Check", "FAIL", "PASS", "SKIP", "WARN", "render", "run_as", "run_checks", "service_user"]
