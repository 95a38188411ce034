"""The ``railwatch`` command line. Options, wiring and exit codes only.

Exit status: 0 no incident at or above ``--fail-on``; 1 some; 2 usage or input error.
"""
from __future__ import annotations

import os
import sys
import time
from typing import List, Optional, Tuple

import click

from agent import __version__
from agent.cli_common import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, fail, say
from agent.cli_names import DEFAULT_STATE_DIR, LOG_FORMAT_NAMES
from agent.timeparse import parse_duration, parse_iso

# Subcommands other than scan, imported only when asked for: `railwatch scan` must not pay
# for the daemon, the incident store and the sinks (issue 18: start-up <= 0.1 s).
LAZY_COMMANDS = {
    "run": "agent.cli_daemon",
    "config": "agent.cli_daemon",
    "incidents": "agent.cli_incidents",
    "bundle": "agent.cli_incidents",
    "test-incident": ("agent.cli_incidents", "test_incident"),
    "doctor": "agent.cli_ops",
    "demo": "agent.cli_ops",
    "init-config": ("agent.cli_ops", "init_config"),
    "status": "agent.cli_status",
    "deploy": "agent.cli_deploy",
}


class LazyGroup(click.Group):
    """A click group whose subcommands (see LAZY_COMMANDS) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in LAZY_COMMANDS:
            return found
        where = LAZY_COMMANDS[cmd_name]
        module_name, attr = where if isinstance(where, tuple) else (where, cmd_name)
        import importlib

        command = getattr(importlib.import_module(module_name), attr)
        self.add_command(command, cmd_name)
        return command


def _parse_time(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[float]:
    """An ISO-8601 time, or a duration (``1h``, ``2h30m``) meaning that long before the wall clock now."""
    if value is None:
        return None
    text = value.strip()
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    ts = parse_iso(text)
    if ts is None and len(text) == 10:
        ts = parse_iso(text + "T00:00:00")
    if ts is None:
        raise click.BadParameter("expected an ISO-8601 time (2026-11-26T10:00:00Z, 2026-11-26) or a duration before now (90s, 15m, 2h30m, 2d)")
    return ts


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="railwatch")
def cli() -> None:
    """railwatch: finds connection-pool exhaustion, N+1 spikes and Sidekiq failure storms
    in a Rails app's logs, and says what broke, where, since when, and what to do."""


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text", show_default=True,
              help="Report format (html: one self-contained file with a timeline per incident).")
@click.option("--detector", "detectors", multiple=True, metavar="NAME", help="Run only this detector (repeatable).")
@click.option("--log-format", type=click.Choice(LOG_FORMAT_NAMES), default=None, help="Force the log format instead of sniffing it per file.")
@click.option("--since", callback=_parse_time, metavar="TIME", help="Ignore events before this time: ISO-8601 (UTC if no zone) or a duration before now (1h, 2h30m, 2d).")
@click.option("--until", "until_", callback=_parse_time, metavar="TIME", help="Ignore events after this time.")
@click.option("--fail-on", type=click.Choice(["critical", "warning", "never"]), default="critical", show_default=True,
              help="Exit 1 when an incident of this severity or worse is found.")
@click.option("--app", "app_dir", type=click.Path(file_okay=False), default=None,
              help="Rails app root: pool sizes, Puma threads, Sidekiq concurrency and REVISION feed the triage.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report here instead of stdout.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parse in up to this many processes (one big Rails log in byte ranges, several logs a log per process); the detectors run once: the same report.")
@click.option("--open-incidents", is_flag=True, help="Also open incidents (with bundles) from the findings, through the configured sinks.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, envvar="RAILWATCH_STATE_DIR",
              help=f"Incident store for --open-incidents (default {DEFAULT_STATE_DIR}).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Agent config, applied as `run` applies it: [detectors.*], [incidents], and the sinks --open-incidents uses.")
def scan(
    paths: Tuple[str, ...], fmt: str, detectors: Tuple[str, ...], log_format: Optional[str], since: Optional[float],
    until_: Optional[float], fail_on: str, app_dir: Optional[str], output: Optional[str], jobs: int,
    open_incidents: bool, state_dir: Optional[str], config_path: Optional[str],
) -> None:
    """Scan log files (plain, .gz, .bz2, directories, globs, - for stdin) and report incidents.

    \b
    Examples:
      railwatch scan log/production.log* log/sidekiq.log
      railwatch scan --format json --app /srv/app/current /srv/app/shared/log
    """
    from agent.cli_incidents import load_config
    from agent.report import render_json, render_markdown, render_text
    from agent.scan import UsageError, WorkerDied, scan as run_scan
    from detectors.base import AppFacts

    config = load_config(config_path)  # the same typed parse as `run`; a bad file exits 2 listing every problem

    facts = AppFacts()
    if app_dir is None and config is not None and os.path.isdir(config.app.root):
        app_dir = config.app.root  # the app facts the daemon reads from the same file
    if app_dir is not None:
        if not os.path.isdir(app_dir):
            fail(f"{app_dir}: --app must be a Rails app directory")
        from agent.appfacts import load_app_facts

        facts = load_app_facts(app_dir, env=dict(os.environ))
        for note in facts.notes:
            say(f"--app: {note}")
    progress = _Progress(paths) if sys.stderr.isatty() and fmt != "json" or _Progress.forced() else None
    try:
        result = run_scan(
            list(paths), detectors=list(detectors) or (config.enabled_detectors if config else None), facts=facts,
            settings=dict(config.detectors) if config else None, log_format=log_format, since=since,
            until=until_, on_bytes=progress.advance if progress else None, on_error=say, jobs=jobs,
        )
    except (UsageError, WorkerDied) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    finally:
        if progress:
            progress.done()
    if not result.files or all(f.format == "unknown" for f in result.files):
        fail("nothing could be scanned")  # only the errors: an empty report would read as "all clear"
    if open_incidents:
        default_state = config.state.dir if config else DEFAULT_STATE_DIR
        _open_incidents(result, state_dir or default_state, config_path, config, facts)
    # secrets never leave the host unscrubbed: reports get scrubbed copies of the findings
    from agent.scrub import scrub_finding

    result.incidents = [scrub_finding(f)[0] for f in result.incidents]
    if fmt == "json":
        text = render_json(result)
    elif fmt == "markdown":
        text = render_markdown(result)
    elif fmt == "html":
        from agent.report_html import render_html

        text = render_html(result)
    else:
        text = render_text(result, colour=output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
    sys.exit(_exit_status(result.incidents, fail_on))


def _open_incidents(result, state_dir: str, config_path: Optional[str], config, facts) -> None:  # type: ignore[no-untyped-def]
    from agent.cli_incidents import configured_sinks, open_incidents_from_scan

    try:
        sinks = configured_sinks(state_dir, config) if config else None
        updates = open_incidents_from_scan(result, state_dir, sinks, facts=facts, agent_config=config_path,
                                           settings=config.incidents if config else None,
                                           host=(config.app.host or None) if config else None)
    except (OSError, ValueError) as exc:
        fail(f"--open-incidents: {exc}")
    say(f"{len(updates)} incident update(s) recorded in {state_dir}")


def _exit_status(incidents: List, fail_on: str) -> int:  # type: ignore[type-arg]
    if fail_on == "never":
        return EXIT_OK
    wanted = ("critical",) if fail_on == "critical" else ("critical", "warning")
    return EXIT_FINDINGS if any(i.severity in wanted for i in incidents) else EXIT_OK


class _Progress:
    """A one-line progress bar on stderr for inputs worth waiting for."""

    MIN_BYTES = 50 * 1024 * 1024

    def __init__(self, paths: Tuple[str, ...]) -> None:
        from agent.sources.files import expand, file_size

        files, _ = expand(list(paths))
        self.total = sum(file_size(f.path) for f in files)
        self.seen = 0
        self.shown = -1
        self.enabled = self.total >= self.MIN_BYTES

    @staticmethod
    def forced() -> bool:
        return os.environ.get("RAILWATCH_PROGRESS") == "1"

    def advance(self, n: int) -> None:
        if not self.enabled:
            return
        self.seen += n  # compressed files report uncompressed bytes: the bar is approximate
        pct = min(99, self.seen * 100 // max(self.total, 1))
        if pct != self.shown:
            self.shown = pct
            sys.stderr.write(f"\rscanning… {pct:3d}%")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\r" + " " * 20 + "\r")
            sys.stderr.flush()


def main() -> None:
    cli(prog_name="railwatch")


if __name__ == "__main__":  # pragma: no cover
    main()
