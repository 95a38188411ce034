"""The daemon's commands: ``railwatch run`` and ``railwatch config check|show``.

Registered in agent/cli.py with ``cli.add_command(run)`` and ``cli.add_command(config)``.
This is the only place of the daemon that reads ``os.environ`` (for the app's ERB
defaults in database.yml / puma.rb) and the default config path.

Exit status: 0 after a clean stop (SIGTERM/SIGINT) or a valid config; 2 on a bad
configuration or a setup error (state directory, metrics address in use).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional, Tuple

import click

from agent import tomlwrite
from agent.cli_common import fail_all
from agent.config import (
    DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, Config, ConfigError, apply_overrides, effective, parse, read_toml, tomllib,
)


def _config_from(config_path: Optional[str], app: Optional[str], logs: Tuple[str, ...], state_dir: Optional[str],
                 metrics_listen: Optional[str] = None, start: Optional[str] = None) -> Tuple[Config, Optional[str]]:
    """The effective configuration, and the file it came from (None for command-line only)."""
    path = config_path
    if path is None and not app and not logs and os.path.exists(DEFAULT_CONFIG_PATH):
        path = DEFAULT_CONFIG_PATH
    if path is None and not app and not logs:
        raise ConfigError([f"no configuration: pass --config FILE (default {DEFAULT_CONFIG_PATH}), --app DIR or --log PATH"])
    data: Dict[str, Any] = read_toml(path) if path else {}
    data = apply_overrides(data, app=app, logs=logs, state_dir=state_dir, metrics_listen=metrics_listen, start=start)
    return parse(data, origin=path or ""), path


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"TOML configuration (default {DEFAULT_CONFIG_PATH} when neither --app nor --log is given).")
@click.option("--app", "app_dir", type=click.Path(file_okay=False), default=None,
              help="Rails root (or Capistrano deploy root): discovers log/production.log, log/sidekiq.log and the app's settings.")
@click.option("--log", "logs", multiple=True, metavar="PATH", help="Follow this log file or glob (repeatable).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help=f"Incident store, tail positions and (without configured sinks) incidents/ (default {DEFAULT_STATE_DIR}).")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT", help="Serve /metrics and /healthz here (default 127.0.0.1:19394; off to disable).")
@click.option("--start", type=click.Choice(["end", "beginning"]), default=None,
              help="Where a log never seen before starts (default end; a saved position always wins).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True,
              help="Level of railwatch's own logs (stderr, logfmt).")
@click.option("--debug-counters", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Write the persisted line/event counts here at each checkpoint (tests, benchmarks).")
def run(config_path: Optional[str], app_dir: Optional[str], logs: Tuple[str, ...], state_dir: Optional[str],
        metrics_listen: Optional[str], start: Optional[str], log_level: str, debug_counters: Optional[str]) -> None:
    """Follow the app's logs and services and open incidents as problems start.

    \b
    Examples:
      railwatch run --config /etc/railwatch/railwatch.toml
      railwatch run --app /srv/app                       # discover the logs
      railwatch run --log log/production.log --state-dir /tmp/rw
    Signals: TERM/INT stop cleanly, HUP reloads the configuration.
    """
    from agent.daemon import Daemon
    from agent.logsetup import setup_logging

    setup_logging(log_level)
    try:
        config, path = _config_from(config_path, app_dir, logs, state_dir, metrics_listen, start)
    except ConfigError as exc:
        fail_all(exc.errors)
        return

    def reload() -> Config:
        return _config_from(path, app_dir, logs, state_dir, metrics_listen, start)[0]

    daemon = Daemon(config, environ=dict(os.environ), reload=reload if path else None, counters_path=debug_counters)
    sys.exit(daemon.run())


@click.group("config")
def config() -> None:
    """Check or show the daemon's configuration."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
def check(path: str) -> None:
    """Validate a configuration file ("-" reads stdin): every problem is listed with its key (exit 2)."""
    try:
        cfg = parse(_read_toml_or_stdin(path), origin=path if path != "-" else "")
    except ConfigError as exc:
        fail_all(exc.errors)
        return
    sinks = ", ".join(f"{s.name} ({s.type})" for s in cfg.sinks) or "local (directory)"
    collectors = [n for n in ("psutil", "puma", "sidekiq", "postgres") if getattr(cfg.collectors, n).enabled]
    click.echo(f"{path}: OK: {len(cfg.sources)} source(s), detectors {', '.join(cfg.enabled_detectors)}, sinks {sinks}, "
               f"collectors {', '.join(collectors) or 'none'}")


@config.command("show")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The same as PATH (as for run, whose hint names it).")
@click.option("--app", "app_dir", type=click.Path(file_okay=False), default=None, help="As for run.")
@click.option("--log", "logs", multiple=True, metavar="PATH", help="As for run.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help="As for run.")
def show(path: Optional[str], config_path: Optional[str], app_dir: Optional[str], logs: Tuple[str, ...],
         state_dir: Optional[str]) -> None:
    """Print the effective configuration (defaults filled in, logs discovered, secrets masked)."""
    if path and config_path and path != config_path:
        raise click.UsageError(f"two configurations given: {path} and --config {config_path}")
    path = path or config_path
    try:
        cfg, _ = _config_from(path, app_dir, logs, state_dir)
    except ConfigError as exc:
        fail_all(exc.errors)
        return
    click.echo(to_toml(effective(cfg)), nl=False)


def _read_toml_or_stdin(path: str) -> Dict[str, Any]:
    if path != "-":
        return read_toml(path)
    try:
        return tomllib.loads(sys.stdin.read())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"-: not valid TOML ({exc})"]) from None


def to_toml(data: Dict[str, Any]) -> str:
    """TOML for the plain tables ``effective`` returns (written by tomli-w: it parses back)."""
    return tomlwrite.dumps(data)
