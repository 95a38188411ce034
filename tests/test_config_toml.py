"""The TOML railwatch writes parses back (tomli-w), and config check/show take their path as people pass it."""
from __future__ import annotations

from pathlib import Path


from agent.cli import cli
from agent.cli_ops import render_config
from agent.config import parse, tomllib
from support import cli_runner

AWKWARD = '''
[app]
root = "{root}"
host = "hôte\\tweb\\u001f-🚨"

[[sources]]
path = "{root}/log/prod\\u0007uction.log"

[state]
dir = "{root}/state"

[sinks."équipe-café"]
type = "webhook"
url = "http://127.0.0.1:9/hook"
headers = {{ "X-Équipe" = "a\\tb\\u001fc", "X-Emoji" = "🚨" }}
'''


runner = cli_runner


def write_awkward(tmp_path: Path) -> str:
    path = tmp_path / "railwatch.toml"
    path.write_text(AWKWARD.format(root=tmp_path), encoding="utf-8")
    return str(path)


def test_config_show_round_trips_a_non_ascii_sink_name_and_control_characters(tmp_path):
    result = runner().invoke(cli, ["config", "show", write_awkward(tmp_path)])
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)  # the hand-written writer left \x07 raw and "équipe-café" bare here
    sink = shown["sinks"]["équipe-café"]
    assert sink["headers"] == "********"  # header values may carry credentials: masked, never shown
    assert shown["app"]["host"] == "hôte\tweb\x1f-🚨"
    assert [s["path"] for s in shown["sources"]] == [f"{tmp_path}/log/prod\x07uction.log"]
    del sink["headers"]
    sink["url"] = "http://127.0.0.1:9/hook"  # masked as a secret too
    again = parse(shown)  # and what it shows (secrets put back) is a configuration railwatch accepts
    assert [s.name for s in again.sinks] == ["équipe-café"]


def test_config_show_accepts_the_config_option_its_hint_names(tmp_path, monkeypatch):
    monkeypatch.setattr("agent.cli_daemon.DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))  # whatever /etc holds
    path = write_awkward(tmp_path)
    bare = runner().invoke(cli, ["config", "show"])
    assert bare.exit_code == 2 and "pass --config FILE" in bare.stderr
    by_option = runner().invoke(cli, ["config", "show", "--config", path])
    assert by_option.exit_code == 0, by_option.output
    assert by_option.stdout == runner().invoke(cli, ["config", "show", path]).stdout


def test_config_check_reads_stdin_for_dash(tmp_path):
    text = AWKWARD.format(root=tmp_path)
    ok = runner().invoke(cli, ["config", "check", "-"], input=text)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("-: OK: 1 source(s)")
    bad = runner().invoke(cli, ["config", "check", "-"], input="[app\n")
    assert bad.exit_code == 2 and "-: not valid TOML" in bad.stderr


def test_init_config_for_an_app_path_with_an_emoji_is_valid_toml(tmp_path):
    root = tmp_path / "app 🚀"
    (root / "log").mkdir(parents=True)
    text = render_config(str(root), "production", str(tmp_path / "state\x07"), [str(root / "log" / "production.log")], [])
    data = tomllib.loads(text)  # json.dumps wrote the emoji as a surrogate pair TOML rejects
    assert data["app"]["root"] == str(root) and data["state"]["dir"] == str(tmp_path / "state\x07")
