"""`railwatch init-config --app DIR`: the configuration install.sh writes to /etc/railwatch."""
from __future__ import annotations

from click.testing import CliRunner

from agent.cli import cli
from agent.config import load


def test_generated_config_is_valid_and_follows_the_discovered_logs(tmp_path, helpers):
    app = helpers.make_app(tmp_path)
    (app / "log" / "sidekiq.log").write_text("")
    out = tmp_path / "railwatch.toml"
    result = CliRunner().invoke(cli, ["init-config", "--app", str(app), "--state-dir", str(tmp_path / "state"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load(str(out))
    assert [s.path for s in cfg.sources] == [str(app / "log" / "production.log"), str(app / "log" / "sidekiq.log")]
    assert cfg.state.dir == str(tmp_path / "state")
    assert not cfg.collectors.puma.enabled  # the reference puma.rb takes its control port from ENV: unknown here


def test_puma_control_app_is_written_out_when_puma_rb_names_it(tmp_path, helpers):
    app = helpers.make_app(tmp_path)
    (app / "config" / "puma.rb").write_text('threads 5, 5\nactivate_control_app "tcp://127.0.0.1:9293", { auth_token: "s3cret" }\n')
    result = CliRunner().invoke(cli, ["init-config", "--app", str(app)])
    assert result.exit_code == 0
    assert '[collectors.puma]\nenabled = true\nurl = "http://127.0.0.1:9293"\ntoken = "s3cret"' in result.output


def test_log_dirs_are_printed_for_the_installer(tmp_path, helpers):
    app = helpers.make_app(tmp_path)
    result = CliRunner().invoke(cli, ["init-config", "--app", str(app), "--print-log-dirs"])
    assert result.output.splitlines() == [str(app / "log")]


def test_missing_app_directory_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["init-config", "--app", str(tmp_path / "nope")])
    assert result.exit_code == 2
