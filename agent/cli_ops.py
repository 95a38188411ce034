"""Operations commands: ``railwatch doctor``, ``railwatch demo`` and ``railwatch init-config``.

Registered in agent/cli.py (``_register_subcommands``). Exit status: doctor 0 when
nothing fails, 1 when a check fails, 2 on a usage error; demo 0 when incidents were
opened; init-config 0, or 2 when the app directory is missing.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import List, Optional, Tuple

import click

from agent.cli_common import EXIT_FAILED, EXIT_OK, fail
from agent.config import DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, app_dirs, discover, discover_puma_control


@click.command("doctor")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"The configuration to check (default {DEFAULT_CONFIG_PATH} when --app and --log are not given).")
@click.option("--app", "app_dir", type=click.Path(file_okay=False), default=None, help="Check a Rails root's discovered logs instead.")
@click.option("--log", "logs", multiple=True, metavar="PATH", help="Also check this log (repeatable).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help="Override the configuration's state directory.")
@click.option("--user", default=None, metavar="NAME",
              help="When run as root: check as this user (default railwatch, the service's user, when it exists).")
@click.option("--stale-after", type=click.FloatRange(min=1), default=3600.0, show_default=True, metavar="SECONDS",
              help="Warn about a log not written for this long.")
@click.option("--json", "as_json", is_flag=True, help="The checks as a JSON list.")
def doctor(config_path: Optional[str], app_dir: Optional[str], logs: Tuple[str, ...], state_dir: Optional[str],
           user: Optional[str], stale_after: float, as_json: bool) -> None:
    """Check that everything the daemon needs is in reach, with what to do for each failure.

    \b
    Checks: the configuration; each log (readable, recently written); the state
    directory (writable); Puma and Sidekiq processes; the Postgres, Redis and Puma
    control endpoints of the enabled collectors; a dry run of each sink.
    Exit status 1 when any check fails.
    """
    from dataclasses import asdict

    from agent.doctor import FAIL, render, run_as, run_checks, service_user

    if config_path is None and not app_dir and not logs:
        config_path = DEFAULT_CONFIG_PATH
    try:
        as_user = service_user(user)
    except ValueError as exc:
        fail(str(exc))

    def checks() -> List:  # type: ignore[type-arg]
        return run_checks(config_path, app_dir, logs, state_dir, stale_after)

    results = run_as(as_user, checks) if as_user else checks()
    if as_json:
        click.echo(json.dumps([asdict(c) for c in results], indent=2))
    else:
        if as_user:
            click.echo(f"(checked as user {as_user}, as the service runs)")
        click.echo(render(results, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ), nl=False)
    sys.exit(EXIT_FAILED if any(c.status == FAIL for c in results) else EXIT_OK)


@click.command("demo")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Where the demo's logs, incidents and bundles go (default: a new temporary directory, kept).")
@click.option("--speed", type=click.FloatRange(min=0.5), default=8.0, show_default=True,
              help="Replay this many times faster than the logs were written.")
@click.option("--verbose", is_flag=True, help="Show the daemon's own log lines too.")
def demo(state_dir: Optional[str], speed: float, verbose: bool) -> None:
    """See railwatch work without a Rails app: real logs of an N+1, a pool exhaustion and a
    Sidekiq retry storm replayed into a live agent, and the incidents and bundles it opens."""
    from agent.demo import describe, run_demo

    state_dir = os.path.abspath(state_dir) if state_dir else tempfile.mkdtemp(prefix="railwatch-demo-")
    started = time.monotonic()
    try:
        incidents = run_demo(state_dir, speed=speed, say=click.echo, verbose=verbose)
    except (OSError, RuntimeError, ValueError) as exc:
        fail(f"demo: {exc}", EXIT_FAILED)
    for line in describe(incidents, state_dir):
        click.echo(line)
    click.echo(f"\n(demo took {time.monotonic() - started:.0f} s)")
    sys.exit(EXIT_OK if incidents else EXIT_FAILED)


@click.command("init-config")
@click.option("--app", "app_dir", type=click.Path(file_okay=False), required=True,
              help="Rails root (or Capistrano deploy root) whose logs and Puma control app to discover.")
@click.option("--env", "rails_env", default="production", show_default=True, help="RAILS_ENV: which log/<env>.log.")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True, help="The daemon's state directory.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here (default stdout).")
@click.option("--print-log-dirs", is_flag=True, help="Only print the discovered logs' directories, one per line.")
def init_config(app_dir: str, rails_env: str, state_dir: str, output: Optional[str], print_log_dirs: bool) -> None:
    """Write a starting configuration for a Rails app (what install.sh puts in /etc/railwatch)."""
    if not os.path.isdir(app_dir):
        fail(f"{app_dir}: not a directory")
    root = os.path.abspath(app_dir)
    logs, notes = discover(root, rails_env)
    if print_log_dirs:
        for d in dict.fromkeys(os.path.dirname(p) for p in logs):
            click.echo(d)
        return
    text = render_config(root, rails_env, state_dir, logs, notes)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


def render_config(root: str, env: str, state_dir: str, logs: List[str], notes: List[str]) -> str:
    """A small, valid config: the app, the state dir and what was discovered; the rest commented."""
    from agent.tomlwrite import value as toml_value  # tomli-w quotes it (json.dumps escapes an emoji as invalid TOML)
    app = app_dirs(root)[0]
    lines = [
        f"# railwatch configuration for {root}",
        f"# Generated by `railwatch init-config` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Edit freely:",
        "# install.sh never overwrites a file you changed. Every key, with its default and meaning,",
        "# is in railwatch.example.toml beside this file. After an edit: `railwatch doctor`, then",
        "# `systemctl reload railwatch` (SIGHUP).",
        "",
        "[app]",
        f"root = {toml_value(root)}",
        f"env = {toml_value(env)}",
        "",
        "# The logs are discovered from app.root each time railwatch starts. Found now:",
    ]
    lines += [f"#   {p}" for p in logs] + [f"#   ({n})" for n in notes]
    lines += [
        "# To choose them yourself, list them instead (a path or a glob each):",
        "# [[sources]]",
        f"# path = {toml_value(logs[0] if logs else os.path.join(app, 'log', env + '.log'))}",
        "",
        "[state]",
        f"dir = {toml_value(state_dir)}",
        "",
        "[metrics]",
        "# /metrics and /healthz (Prometheus); \"off\" to disable",
        'listen = "127.0.0.1:19394"',
        "",
    ]
    puma = discover_puma_control(root)
    if puma is not None:
        lines += ["# Puma's control app, found in config/puma.rb (activate_control_app)", "[collectors.puma]",
                  "enabled = true", f"url = {toml_value(puma[0])}", f"token = {toml_value(puma[1])}", ""]
    else:
        lines += ["# Puma's thread-pool saturation (backlog, pool_capacity) needs its control app: add",
                  '#   activate_control_app "tcp://127.0.0.1:9293", { auth_token: "<secret>" }',
                  "# to config/puma.rb, then:",
                  "# [collectors.puma]", "# enabled = true", '# url = "http://127.0.0.1:9293"', '# token = "<secret>"', ""]
    lines += [
        "# Sidekiq's queues, latency and retry/dead sets, from its Redis (needs the redis package):",
        "# [collectors.sidekiq]", "# enabled = true", '# redis_url = "redis://127.0.0.1:6379/0"', "",
        "# Database connections and pg_stat_statements (needs the psycopg package; a read-only role is enough):",
        "# [collectors.postgres]", "# enabled = true", '# dsn = "postgresql://railwatch@127.0.0.1:5432/app_production"', "",
        "# Where incidents go. Without any [sinks.*], they are written under <state dir>/incidents.",
        "# [sinks.oncall]", '# type = "slack"', '# url = "https://hooks.slack.com/services/…"', "",
    ]
    return "\n".join(lines)


__all__ = ["demo", "doctor", "init_config", "render_config"]
