"""The daemon's configuration: one TOML file, parsed once into frozen dataclasses.

    [app]            root = "/srv/app"  env = "production"
    [[sources]]      path = "log/production.log" (or a glob), format = "rails", start = "end"
    [tail]           start = "end" | "beginning", poll_interval_s, watch (inotify)
    [detectors.<n>]  enabled = true, plus that detector's Settings fields
    [sinks.<n>]      type = "directory" | "webhook" | "pagerduty" | "alertmanager" | "slack", options
    [incidents]      the incident lifecycle (quiet_period_s, cooldown_s, rate_limit…)
    [bundle_store]   type = "s3": upload bundles, pre-signed links in every payload (agent.bundle.remote)
    [retention]      pruning incident directories/bundles by age and size, store vacuum (agent.incidents.prune)
    [delivery]       outbox retries: backoff cap, probe interval of a down sink, recovery rate
    [metrics]        listen = "127.0.0.1:19394" ("off" to disable)
    [collectors.psutil|puma|sidekiq|postgres]
    [limits]         max_line, read_budget_bytes, metric_queue, checkpoint_interval_s…
    [state]          dir = "/var/lib/railwatch"

``parse`` reports every problem at once, each with the key's dotted path
(``collectors.puma.interval_s: expected a number > 0``), as a ``ConfigError``. Nothing
here reads the environment: the CLI passes what it needs. Relative paths are taken
from ``app.root`` (sources) or the config file's directory (state).

With ``app.root`` set and no ``[[sources]]``, the logs are discovered (``discover``):
``log/<env>.log`` and ``log/sidekiq.log``, Capistrano's ``shared/log`` included, and
Puma's control app from ``config/puma.rb`` (``activate_control_app``).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 servers
    import tomli as tomllib

from agent.cli_names import DEFAULT_STATE_DIR  # noqa: F401 - defined there so the CLI starts without this module
from agent.config_values import DEFAULT_METRICS_LISTEN, has, http_url, listen_problem, mask, regex, scheme, split_listen, suggest, table
from agent.bundle.remote import BundleStoreSettings
from agent.incidents.delivery import DeliverySettings
from agent.incidents.lifecycle import LifecycleSettings
from agent.incidents.prune import RetentionSettings
from agent.parsers import BY_NAME
from agent.settings import bounds_of, setting
from agent.sinks import SinkConfig, parse_sink
from detectors import REGISTRY
from detectors.base import Settings

DEFAULT_CONFIG_PATH = "/etc/railwatch/railwatch.toml"
STARTS = ("end", "beginning")


class ConfigError(ValueError):
    """Every problem found in a configuration, one line each."""

    def __init__(self, errors: List[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class AppConfig:
    root: str = setting("")  # the Rails root (or Capistrano deploy root)
    env: str = setting("production")
    host: str = setting("")  # the name incidents report this host by ("" = the machine's hostname)


@dataclass(frozen=True)
class SourceConfig:
    path: str = setting("", required=True)  # a file or a glob
    format: str = setting("", choices=("",) + tuple(BY_NAME))  # "" sniffs the format per file
    start: str = setting("", choices=("",) + STARTS)  # "" takes [tail] start


@dataclass(frozen=True)
class TailConfig:
    start: str = setting("end", choices=STARTS)  # where a file seen for the first time starts (a checkpoint wins)
    poll_interval_s: float = setting(0.25, above=0.0)  # files are checked this often even without inotify events
    watch: bool = setting(True)  # wake on files appearing/moving/going (watchdog, inotify); off = polling only


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = setting(DEFAULT_METRICS_LISTEN)  # "off" disables /metrics and /healthz

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        return None if self.listen == "off" else split_listen(self.listen)


@dataclass(frozen=True)
class PsutilConfig:
    enabled: bool = setting(True)
    interval_s: float = setting(10.0, above=0.0)
    puma_match: str = setting(r"(?:^|[\s/])puma(?:[\s:]|$)")  # "puma 6.4.2 (tcp://…) [app]", "puma: cluster worker 0: …"
    sidekiq_match: str = setting(r"(?:^|[\s/])sidekiq(?:[\s:]|$)")  # "sidekiq 7.2.0 app [0 of 5 busy]"
    db_ports: Tuple[int, ...] = setting((5432, 6432, 3306), min=1, max=65535)
    redis_ports: Tuple[int, ...] = setting((6379,), min=1, max=65535)


@dataclass(frozen=True)
class PumaConfig:
    enabled: bool = setting(False)
    url: str = setting("http://127.0.0.1:9293")  # the control app (activate_control_app / --control-url)
    token: str = setting("", secret=True)
    interval_s: float = setting(5.0, above=0.0)
    timeout_s: float = setting(2.0, above=0.0)


@dataclass(frozen=True)
class SidekiqConfig:
    enabled: bool = setting(False)
    redis_url: str = setting("redis://127.0.0.1:6379/0", secret=True)
    namespace: str = setting("")  # redis-namespace prefix (Sidekiq <= 6)
    interval_s: float = setting(10.0, above=0.0)
    timeout_s: float = setting(2.0, above=0.0)
    max_queues: int = setting(100, min=1)


@dataclass(frozen=True)
class PostgresConfig:
    enabled: bool = setting(False)
    dsn: str = setting("postgresql://postgres@127.0.0.1:5432/postgres", secret=True)
    interval_s: float = setting(15.0, above=0.0)
    timeout_s: float = setting(5.0, above=0.0)
    statements: bool = setting(True)  # pg_stat_statements call deltas, when the extension is there
    top_statements: int = setting(20, min=1)


@dataclass(frozen=True)
class CollectorsConfig:
    psutil: PsutilConfig = PsutilConfig()
    puma: PumaConfig = PumaConfig()
    sidekiq: SidekiqConfig = SidekiqConfig()
    postgres: PostgresConfig = PostgresConfig()


@dataclass(frozen=True)
class LimitsConfig:
    max_line: int = setting(64 * 1024, min=256, max=16 << 20)  # longer lines are cut
    read_budget_bytes: int = setting(4 << 20, min=64 * 1024, max=1 << 30)  # read per loop turn: a burst falls behind (lag) instead of piling up
    metric_queue: int = setting(10_000, min=10, max=10_000_000)  # collector samples waiting for the loop; beyond, samples are dropped
    checkpoint_interval_s: float = setting(2.0, above=0.0)  # at most this much is re-read after a SIGKILL
    flush_interval_s: float = setting(0.5, above=0.0)  # detectors are asked for findings this often
    stall_after_s: float = setting(120.0, above=0.0)  # /healthz fails when a source is behind and unread this long
    outbox_stuck_after_s: float = setting(900.0, above=0.0)  # …or an undelivered update is this old
    sink_failing_after_s: float = setting(300.0, above=0.0)  # /healthz degraded when a sink fails this long


@dataclass(frozen=True)
class StateConfig:
    dir: str = setting(DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class Config:
    app: AppConfig = AppConfig()
    sources: Tuple[SourceConfig, ...] = ()
    tail: TailConfig = TailConfig()
    detectors: Mapping[str, Settings] = field(default_factory=dict)  # configured settings by detector
    disabled_detectors: Tuple[str, ...] = ()
    sinks: Tuple[SinkConfig, ...] = ()  # typed and validated once, here; agent.sinks.build_sinks makes the sinks
    incidents: LifecycleSettings = LifecycleSettings()
    metrics: MetricsConfig = MetricsConfig()
    collectors: CollectorsConfig = CollectorsConfig()
    limits: LimitsConfig = LimitsConfig()
    state: StateConfig = StateConfig()
    origin: str = ""  # the file read, "" for a command-line-only configuration
    delivery: DeliverySettings = DeliverySettings()
    bundle_store: BundleStoreSettings = BundleStoreSettings()
    retention: RetentionSettings = RetentionSettings()

    @property
    def enabled_detectors(self) -> List[str]:
        return [n for n in REGISTRY if n not in self.disabled_detectors]


# ----------------------------------------------------------------------------- reading

def read_toml(path: str, max_bytes: int = 1 << 20) -> Dict[str, Any]:
    """The TOML document at ``path``: a regular file of at most ``max_bytes`` (1 MiB), UTF-8.

    Anything else is a ConfigError with one line: a FIFO or device (``/dev/zero``) is
    refused before it is read (opened O_NONBLOCK, so a FIFO cannot block), a bigger file is
    not read into memory, invalid UTF-8 is named by its byte offset."""
    import stat  # noqa: PLC0415 - local: the rest of this module is being rewritten elsewhere

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError([f"{path}: not a regular file (a FIFO, device or socket cannot be a config)"])
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    if len(raw) > max_bytes:
        raise ConfigError([f"{path}: larger than {max_bytes} bytes; not a railwatch config"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 (invalid byte at offset {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None


def load(path: str, require_sources: bool = True) -> Config:
    return parse(read_toml(path), origin=path, require_sources=require_sources)


def parse(data: Mapping[str, Any], origin: str = "", require_sources: bool = True) -> Config:
    """Validate a whole configuration; raises ConfigError listing every problem.

    ``require_sources=False`` is for ``scan --config``: scan takes its logs from the
    command line, and everything else in the file applies as it does for ``run``.
    """
    errors: List[str] = []
    base = os.path.dirname(os.path.abspath(origin)) if origin else os.getcwd()
    known = {"app", "sources", "tail", "detectors", "sinks", "incidents", "metrics", "collectors", "limits", "state",
             "delivery", "bundle_store", "retention"}
    for key in data:
        if key not in known:
            errors.append(f"{key}: unknown section{suggest(key, known)}")
    app = table(AppConfig, data.get("app"), "app", errors)
    if app.root:
        app = AppConfig(root=os.path.abspath(os.path.join(base, app.root)), env=app.env, host=app.host)
    tail = table(TailConfig, data.get("tail"), "tail", errors)
    sources = _sources(data.get("sources"), app, base, errors)
    detectors, disabled = _detectors(data.get("detectors"), errors)
    metrics = table(MetricsConfig, data.get("metrics"), "metrics", errors, {"listen": listen_problem})
    collectors = _collectors(data.get("collectors"), errors)
    limits = table(LimitsConfig, data.get("limits"), "limits", errors)
    state = table(StateConfig, data.get("state"), "state", errors)
    state = StateConfig(dir=os.path.abspath(os.path.join(base, state.dir)))
    incidents = table(LifecycleSettings, data.get("incidents"), "incidents", errors)
    sinks = _sinks(data.get("sinks"), errors)
    delivery = table(DeliverySettings, data.get("delivery"), "delivery", errors)
    bundle_store = table(BundleStoreSettings, data.get("bundle_store"), "bundle_store", errors, BundleStoreSettings.CHECKS)
    errors.extend(f"bundle_store.{key}: {problem}" for key, problem in bundle_store.problems().items())
    retention = table(RetentionSettings, data.get("retention"), "retention", errors)
    if app.root and not sources:
        found, _notes = discover(app.root, app.env)
        sources = tuple(SourceConfig(p) for p in found)
        puma = discover_puma_control(app.root)
        if puma is not None and not has(data, "collectors", "puma"):
            collectors = CollectorsConfig(collectors.psutil, PumaConfig(True, puma[0], puma[1]), collectors.sidekiq, collectors.postgres)
    if not sources and require_sources:
        errors.append("sources: no log to follow (add [[sources]] path = …, or set app.root, or pass --log/--app)")
    if errors:
        raise ConfigError(errors)
    return Config(app, sources, tail, detectors, disabled, sinks, incidents, metrics, collectors, limits, state, origin,
                  delivery=delivery, bundle_store=bundle_store, retention=retention)


def apply_overrides(
    data: Mapping[str, Any], app: Optional[str] = None, logs: Tuple[str, ...] = (), state_dir: Optional[str] = None,
    metrics_listen: Optional[str] = None, start: Optional[str] = None,
) -> Dict[str, Any]:
    """The file's tables with the command line's options laid over them."""
    out: Dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if app is not None:
        out.setdefault("app", {})["root"] = os.path.abspath(app)
    if logs:
        out["sources"] = list(out.get("sources") or []) + [{"path": os.path.abspath(p)} for p in logs]
    if state_dir is not None:
        out.setdefault("state", {})["dir"] = os.path.abspath(state_dir)
    if metrics_listen is not None:
        out.setdefault("metrics", {})["listen"] = metrics_listen
    if start is not None:
        out.setdefault("tail", {})["start"] = start
    return out


# ----------------------------------------------------------------------------- sections

def _sources(raw: Any, app: AppConfig, base: str, errors: List[str]) -> Tuple[SourceConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append("sources: expected an array of tables ([[sources]])")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"sources[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: expected a table")
            continue
        src = table(SourceConfig, item, where, errors)
        if src is not None and src.path:
            root = app.root or base
            out.append(SourceConfig(os.path.abspath(os.path.join(root, src.path)), src.format, src.start))
    return tuple(out)


def _detectors(raw: Any, errors: List[str]) -> Tuple[Dict[str, Settings], Tuple[str, ...]]:
    settings: Dict[str, Settings] = {}
    disabled: List[str] = []
    if raw is None:
        return settings, ()
    if not isinstance(raw, dict):
        errors.append("detectors: expected a table of [detectors.<name>] tables")
        return settings, ()
    for name, given in raw.items():
        where = f"detectors.{name}"
        if name not in REGISTRY:
            errors.append(f"{where}: unknown detector{suggest(name, REGISTRY)}; choose from: {', '.join(REGISTRY)}")
            continue
        if not isinstance(given, dict):
            errors.append(f"{where}: expected a table")
            continue
        values = dict(given)
        switch = table(DetectorSwitch, {"enabled": values.pop("enabled")} if "enabled" in values else {}, where, errors)
        if not switch.enabled:
            disabled.append(name)
        settings[name] = table(REGISTRY[name].settings_type, values, where, errors)
    return settings, tuple(disabled)


@dataclass(frozen=True)
class DetectorSwitch:
    """``enabled`` in a ``[detectors.<name>]`` table, beside that detector's own settings."""

    enabled: bool = setting(True)


def _sinks(raw: Any, errors: List[str]) -> Tuple[SinkConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        errors.append("sinks: expected a table of [sinks.<name>] tables")
        return ()
    parsed = [parse_sink(name, options, errors) for name, options in raw.items()]
    return tuple(p for p in parsed if p is not None)


def _collectors(raw: Any, errors: List[str]) -> CollectorsConfig:
    if raw is None:
        return CollectorsConfig()
    if not isinstance(raw, dict):
        errors.append("collectors: expected a table")
        return CollectorsConfig()
    for key in raw:
        if key not in ("psutil", "puma", "sidekiq", "postgres"):
            errors.append(f"collectors.{key}: unknown collector{suggest(key, ('psutil', 'puma', 'sidekiq', 'postgres'))}")
    return CollectorsConfig(
        psutil=table(PsutilConfig, raw.get("psutil"), "collectors.psutil", errors, {"puma_match": regex, "sidekiq_match": regex}),
        puma=table(PumaConfig, raw.get("puma"), "collectors.puma", errors, {"url": http_url}),
        sidekiq=table(SidekiqConfig, raw.get("sidekiq"), "collectors.sidekiq", errors,
                      {"redis_url": scheme("redis://", "rediss://", "unix://")}),
        postgres=table(PostgresConfig, raw.get("postgres"), "collectors.postgres", errors),
    )


# ----------------------------------------------------------------------------- discovery

def app_dirs(root: str) -> List[str]:
    """The app's own directory: ``root``, or ``root/current`` in a Capistrano layout."""
    current = os.path.join(root, "current")
    return [current] if os.path.isdir(os.path.join(current, "config")) or os.path.isdir(os.path.join(current, "log")) else [root]


def discover(root: str, env: str = "production") -> Tuple[List[str], List[str]]:
    """Log files of a Rails root (Capistrano's ``shared/log`` included); (paths, notes)."""
    log_dirs = [os.path.join(root, "shared", "log")] + [os.path.join(d, "log") for d in app_dirs(root)]
    seen, dirs = set(), []
    for d in log_dirs:
        if os.path.isdir(d) and os.path.realpath(d) not in seen:
            seen.add(os.path.realpath(d))
            dirs.append(d)
    paths: List[str] = []
    notes: List[str] = []
    for name in (f"{env}.log", "sidekiq.log"):
        found = [os.path.join(d, name) for d in dirs if os.path.isfile(os.path.join(d, name))]
        if found:
            paths.append(found[0])
        elif name == f"{env}.log":
            where = os.path.join(dirs[0] if dirs else os.path.join(app_dirs(root)[0], "log"), name)
            paths.append(where)  # followed once it appears
            notes.append(f"{where}: not there yet; it will be read once it appears")
    return paths, notes


_CONTROL = re.compile(
    r"""^\s*activate_control_app\s*\(?\s*["'](?P<url>[^"']+)["'](?:\s*,\s*\{?\s*(?:auth_token:|:auth_token\s*=>)\s*["'](?P<token>[^"']*)["'])?""",
    re.M,
)


def discover_puma_control(root: str) -> Optional[Tuple[str, str]]:
    """Puma's control app from config/puma.rb: (http URL, token), when it is a TCP one."""
    path = os.path.join(app_dirs(root)[0], "config", "puma.rb")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            m = _CONTROL.search(fh.read(200_000))
    except OSError:
        return None
    if m is None or not re.fullmatch(r"tcp://[\w.\-]+:\d+", m.group("url")):
        return None  # unix sockets need a transport requests lacks; "#{ENV[…]}" ports are unknown here
    return "http://" + m.group("url")[len("tcp://"):], m.group("token") or ""


# ----------------------------------------------------------------------------- showing

def effective(config: Config) -> Dict[str, Any]:
    """The configuration as plain tables, secrets masked (``railwatch config show``)."""
    out: Dict[str, Any] = {
        "app": asdict(config.app), "sources": [asdict(s) for s in config.sources], "tail": asdict(config.tail),
        "detectors": {n: dict(asdict(config.detectors.get(n) or REGISTRY[n].settings_type()), enabled=n not in config.disabled_detectors)
                      for n in REGISTRY},
        "sinks": {s.name: s.table() for s in config.sinks}, "incidents": asdict(config.incidents),
        "metrics": asdict(config.metrics), "collectors": asdict(config.collectors), "limits": asdict(config.limits),
        "state": asdict(config.state), "delivery": asdict(config.delivery), "retention": asdict(config.retention),
        "bundle_store": {f.name: "********" if bounds_of(f).secret and getattr(config.bundle_store, f.name)
                         else getattr(config.bundle_store, f.name) for f in fields(config.bundle_store)},
    }
    if not config.sinks:
        out["sinks"] = {"local": {"type": "directory", "path": os.path.join(config.state.dir, "incidents")}}
    return mask(out, "")
