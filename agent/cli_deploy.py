"""``railwatch deploy --revision R``: tell the agent a deploy happened, so it verifies the fix.

Every open or recently resolved incident then enters "verifying on R" (agent.incidents.verify):
its own signal is watched on the traffic served after the marker, and it resolves as
"fixed in R" or escalates as "not fixed by R". Two ways to deliver the marker:

* default: a marker file in the state directory (``STATE_DIR/deploys/``); the running agent
  reads it within a second, an agent that is down reads it when it starts;
* ``--url http://127.0.0.1:19394``: ``POST /deploy`` to the agent's listener (another host,
  a container: Kamal's ``post-deploy`` hook, a CI job).

A new ``REVISION`` in the app root (Capistrano) is noticed without this command.
Exit status: 0 marker delivered, 1 the agent did not accept it, 2 usage.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Optional

import click

from agent.cli_common import EXIT_FAILED, fail, say
from agent.clock import Clock
from agent.config import DEFAULT_STATE_DIR
from agent.incidents.deploy_markers import clean_revision, write_marker


@click.command("deploy")
@click.option("--revision", required=True, help="The revision now serving (git SHA, tag, release name).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=DEFAULT_STATE_DIR, show_default=True,
              envvar="RAILWATCH_STATE_DIR", help="The running agent's state directory (the marker goes there).")
@click.option("--url", default=None, help="POST the marker to the agent's listener instead, e.g. http://127.0.0.1:19394.")
@click.option("--at", "at", type=float, default=None, help="When the new revision started serving (epoch seconds; default now).")
def deploy(revision: str, state_dir: str, url: Optional[str], at: Optional[float]) -> None:
    """Mark a deploy: open and recently resolved incidents are verified on it."""
    rev = clean_revision(revision)
    if not rev:
        fail("--revision must not be empty")
    when = at if at is not None else Clock().now()
    if url is None:
        try:
            path = write_marker(state_dir, rev, when)
        except OSError as exc:
            fail(f"cannot write the deploy marker under {state_dir}: {exc.strerror or exc}")
        say(f"deploy of {rev} marked ({path}); the agent verifies open incidents on it")
        return
    body = json.dumps({"revision": rev, "at": when}).encode()
    request = urllib.request.Request(url.rstrip("/") + "/deploy", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            say(f"deploy of {rev} accepted by {url}: {r.read().decode(errors='replace').strip()}")
    except urllib.error.HTTPError as exc:
        click.echo(f"railwatch: {url} refused the marker: HTTP {exc.code} {exc.read().decode(errors='replace')[:200]}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except OSError as exc:
        click.echo(f"railwatch: cannot reach the agent at {url}: {exc}", err=True)
        raise SystemExit(EXIT_FAILED) from None
