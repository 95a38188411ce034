"""``railwatch incidents|bundle|test-incident`` and the scan -> incidents path, through click's runner."""
from __future__ import annotations

import json
import os

import click
from click.testing import CliRunner

import agent.cli_incidents as commands
from agent.cli_incidents import open_incidents_from_scan
from agent.incidents import IncidentStore
from agent.scan import ScanResult


@click.group()
def cli():
    pass


cli.add_command(commands.incidents)
cli.add_command(commands.bundle)
cli.add_command(commands.test_incident)  # what agent/cli.py registers


def run(*args):
    return CliRunner().invoke(cli, list(args))


def scanned(targets, *subjects):
    findings = [targets.make_finding(subject={"endpoint": s}) for s in subjects]
    return ScanResult(files=[], incidents=findings, errors=[], detectors=["pool_exhaustion"])


def test_scan_findings_open_incidents_with_bundles_in_the_default_directory_sink(tmp_path, targets):
    state = str(tmp_path / "state")
    updates = open_incidents_from_scan(scanned(targets, "A#a", "B#b"), state, snapshot=lambda: {})
    assert [u.kind for u in updates] == ["open", "open"]
    for u in updates:
        where = os.path.join(state, "incidents", u.incident.id)
        with open(os.path.join(where, "incident.json")) as fh:
            assert json.load(fh)["incident"]["id"] == u.incident.id
        assert os.path.isfile(os.path.join(where, "bundle.tar.gz"))
    again = open_incidents_from_scan(scanned(targets, "A#a"), state, snapshot=lambda: {})
    assert again == []  # the same bug seen again updates the open incident; nothing new to tell


def test_list_show_and_resolve(tmp_path, targets):
    state = str(tmp_path / "state")
    (u,) = open_incidents_from_scan(scanned(targets, "OrdersController#create"), state, snapshot=lambda: {})
    listed = run("incidents", "list", "--state-dir", state)
    assert listed.exit_code == 0 and u.incident.id in listed.output and "open" in listed.output
    shown = run("incidents", "show", u.incident.id[:8], "--state-dir", state)
    assert shown.exit_code == 0, shown.output
    assert "More Puma threads" in shown.output and "→ local: delivered" in shown.output
    resolved = run("incidents", "resolve", u.incident.id, "--state-dir", state)
    assert resolved.exit_code == 0 and "resolved" in resolved.output and "pending 0" in resolved.output
    data = json.loads(run("incidents", "list", "--json", "--status", "resolved", "--state-dir", state).output)
    assert [i["id"] for i in data] == [u.incident.id] and data[0]["resolved_reason"] == "manual"
    assert run("incidents", "resolve", u.incident.id, "--state-dir", state).exit_code == 2


def test_an_unknown_incident_is_a_usage_error(tmp_path):
    IncidentStore(str(tmp_path / "s")).close()  # an empty store: `show` opens it read-only, never creates it
    result = run("incidents", "show", "nope", "--state-dir", str(tmp_path / "s"))
    assert result.exit_code == 2 and "no incident 'nope'" in result.output


def test_bundle_prints_the_path_and_rebuilds_on_request(tmp_path, targets):
    state = str(tmp_path / "state")
    (u,) = open_incidents_from_scan(scanned(targets, "A#a"), state, snapshot=lambda: {})
    result = run("bundle", u.incident.id, "--state-dir", state)
    assert result.exit_code == 0 and result.output.strip() == u.incident.bundle_path
    os.unlink(u.incident.bundle_path)
    rebuilt = run("bundle", u.incident.id, "--state-dir", state)
    assert rebuilt.exit_code == 0 and os.path.isfile(rebuilt.output.strip())


def test_test_incident_reports_which_sinks_accepted_it(tmp_path, target):
    hook = target("webhook", secret="FAKEs")
    pd = target("pagerduty")
    config = tmp_path / "railwatch.toml"
    config.write_text(
        f'[sinks.hook]\ntype = "webhook"\nurl = "{hook.url}/in"\nsecret = "FAKEs"\n\n'
        f'[sinks.pager]\ntype = "pagerduty"\nurl = "{pd.url}"\nrouting_key = "{"T" * 32}"\n\n'
        '[sinks.gone]\ntype = "slack"\nurl = "http://127.0.0.1:9/services/x"\n'
    )
    result = run("test-incident", "--state-dir", str(tmp_path / "state"), "--config", str(config))
    assert result.exit_code == 1, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "accepted" in lines["hook"] and "accepted" in lines["pager"] and "would retry" in lines["gone"]
    assert hook.received[0].json["incident"]["test"] is True
    assert hook.received[0].json["incident"]["title"].startswith("[TEST]")
    assert [r.json["event_action"] for r in pd.received] == ["trigger", "resolve"]
    assert pd.received[0].json["payload"]["severity"] == "info" and hook.violations == pd.violations == []


def test_a_bad_sink_config_is_a_usage_error_that_does_not_echo_secrets(tmp_path):
    config = tmp_path / "railwatch.toml"
    config.write_text('[sinks.pager]\ntype = "pagerduty"\nrouting_key = "FAKEshortKEY"\n')
    result = run("test-incident", "--state-dir", str(tmp_path / "state"), "--config", str(config))
    assert result.exit_code == 2 and "sinks.pager.routing_key" in result.output
    assert "FAKEshortKEY" not in result.output
