"""What every ``railwatch`` command shares: its exit statuses and how it speaks on stderr."""
from __future__ import annotations

import sys
from typing import NoReturn, Sequence

import click

EXIT_OK = 0
EXIT_FINDINGS = 1  # scan: an incident at or above --fail-on
EXIT_FAILED = 1  # doctor: a check failed; demo: no incident; test-incident: a sink did not accept
EXIT_USAGE = 2  # bad arguments, configuration or input
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def say(message: str) -> None:
    """One ``railwatch: …`` line on stderr."""
    click.echo(f"railwatch: {message}", err=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    say(message)
    sys.exit(code)


def fail_all(messages: Sequence[str], code: int = EXIT_USAGE) -> NoReturn:
    """Every message on its own line (a configuration's errors), then exit."""
    for message in messages:
        say(message)
    sys.exit(code)
