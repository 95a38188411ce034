"""The daemon's configuration: every bad key reported by its dotted path, defaults, discovery, masking."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli_daemon import config as config_group
from agent.cli_daemon import to_toml
from agent.config import ConfigError, apply_overrides, discover, effective, load, parse

GOOD = """
[app]
root = "{root}"

[[sources]]
path = "log/production.log"

[[sources]]
path = "/var/log/postgresql/*.log"
format = "postgres"
start = "beginning"

[detectors.pool_exhaustion]
critical_errors = 5

[detectors.n_plus_one]
enabled = false

[sinks.pager]
type = "pagerduty"
routing_key = "0123456789abcdef0123456789abcdef"

[sinks.hook]
type = "webhook"
url = "https://hooks.example.com/railwatch/T0K3N?sig=abc"
secret = "hunter2"

[incidents]
quiet_period_s = "10m"
quiet_periods_s = {{ pool_exhaustion = 300 }}

[metrics]
listen = "0.0.0.0:9500"

[collectors.postgres]
enabled = true
dsn = "postgresql://app:s3cretpw@db.internal:5432/app_production"

[collectors.sidekiq]
enabled = true
redis_url = "redis://:redispw@cache:6379/0"

[limits]
checkpoint_interval_s = 1.5

[state]
dir = "state"
"""


def write(tmp_path: Path, text: str, name: str = "railwatch.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def errors_of(data) -> list:
    with pytest.raises(ConfigError) as exc:
        parse(data)
    return exc.value.errors


def test_a_full_configuration_is_typed_and_paths_are_resolved(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    path = write(tmp_path, GOOD.format(root=root))
    result = CliRunner().invoke(config_group, ["check", path])
    assert result.exit_code == 0, result.output
    from agent.config import load

    c = load(path)
    assert c.sources[0].path == str(root / "log" / "production.log")  # relative to app.root
    assert (c.sources[1].format, c.sources[1].start) == ("postgres", "beginning")
    assert c.detectors["pool_exhaustion"].critical_errors == 5
    assert "n_plus_one" not in c.enabled_detectors and "pool_exhaustion" in c.enabled_detectors
    assert [(s.name, s.type) for s in c.sinks] == [("pager", "pagerduty"), ("hook", "webhook")]
    assert c.incidents.quiet_for("pool_exhaustion") == 300 and c.incidents.quiet_period_s == 600
    assert c.metrics.address == ("0.0.0.0", 9500)
    assert c.collectors.postgres.enabled and not c.collectors.puma.enabled and c.collectors.psutil.enabled
    assert c.limits.checkpoint_interval_s == 1.5 and c.limits.max_line == 64 * 1024
    assert c.state.dir == str(tmp_path / "state")  # relative to the config file


def test_every_problem_is_reported_at_once_with_its_dotted_path():
    errors = errors_of({
        "app": {"evn": "production"},
        "sources": [{"path": "/x.log", "format": "nginx", "strat": "end"}, {"format": "rails"}],
        "detectors": {"pool_exhaustion": {"critical_errors": "many", "bogus": 1}, "nplus1": {}},
        "sinks": {"pager": {"type": "pagerduty", "routing_key": "short"}, "odd": {"type": "carrier-pigeon"}},
        "metrics": {"listen": "everywhere"},
        "collectors": {"puma": {"interval_s": 0, "url": "tcp://127.0.0.1:9293"}, "redis": {}},
        "limits": {"max_line": 10, "checkpoint_interval_s": "soon"},
        "tail": {"start": "middle"},
        "colectors": {},
    })
    for expected in (
        "app.evn: unknown option (did you mean 'env'?)",
        "sources[0].format: expected one of:",
        "sources[0].strat: unknown option (did you mean 'start'?)",
        "sources[1].path: required",
        "detectors.pool_exhaustion.critical_errors: expected an integer, got",
        "detectors.pool_exhaustion.bogus: unknown option",
        "detectors.nplus1: unknown detector",
        "sinks.pager.routing_key:",
        "sinks.odd.type: unknown sink type",
        "metrics.listen: expected HOST:PORT",
        "collectors.puma.interval_s: expected a number > 0",
        "collectors.puma.url: expected an http:// or https:// URL",
        "collectors.redis: unknown collector",
        "limits.max_line: expected at least 256",
        "limits.checkpoint_interval_s: expected a number, got 'soon'",
        "tail.start: expected one of: end, beginning",
        "colectors: unknown section (did you mean 'collectors'?)",
    ):
        assert any(e.startswith(expected) for e in errors), (expected, errors)


def test_config_check_exits_2_and_names_each_bad_key(tmp_path):
    path = write(tmp_path, '[[sources]]\npath = "/x.log"\n[collectors.psutil]\ninterval_s = -1\ndb_ports = [5432, 99999]\n')
    result = CliRunner().invoke(config_group, ["check", path])
    assert result.exit_code == 2
    assert "collectors.psutil.interval_s: expected a number > 0" in result.output
    assert "collectors.psutil.db_ports: expected a list of integers each between 1 and 65535" in result.output


def test_a_toml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "[app\nroot = 1\n")
    result = CliRunner().invoke(config_group, ["check", path])
    assert result.exit_code == 2 and "not valid TOML" in result.output and path in result.output


def test_a_config_without_any_source_is_refused():
    assert any(e.startswith("sources: no log to follow") for e in errors_of({}))


def test_command_line_logs_need_no_file_and_get_the_defaults(tmp_path):
    c = parse(apply_overrides({}, logs=("log/production.log",), state_dir=str(tmp_path)))
    assert c.sources[0].path == os.path.abspath("log/production.log")
    assert c.metrics.listen == "127.0.0.1:19394" and c.tail.start == "end"
    assert c.state.dir == str(tmp_path) and c.sinks == ()  # the directory sink under state/incidents is the default
    assert effective(c)["sinks"] == {"local": {"type": "directory", "path": str(tmp_path / "incidents")}}


def test_a_rails_root_is_discovered_with_capistranos_shared_log(tmp_path):
    root = tmp_path / "deploy"
    release = root / "releases" / "20240501"
    (root / "shared" / "log").mkdir(parents=True)
    (release / "config").mkdir(parents=True)
    (root / "shared" / "log" / "production.log").write_text("")
    (root / "shared" / "log" / "sidekiq.log").write_text("")
    os.symlink(root / "shared" / "log", release / "log")
    os.symlink(release, root / "current")
    (release / "config" / "puma.rb").write_text(
        'threads 5, 5\nactivate_control_app "tcp://127.0.0.1:9293", { auth_token: "ctl-token" }\n')
    c = parse(apply_overrides({}, app=str(root)))
    assert [s.path for s in c.sources] == [str(root / "shared" / "log" / "production.log"), str(root / "shared" / "log" / "sidekiq.log")]
    assert c.collectors.puma.enabled and c.collectors.puma.url == "http://127.0.0.1:9293" and c.collectors.puma.token == "ctl-token"


def test_a_plain_rails_root_without_logs_yet_waits_for_production_log(tmp_path):
    (tmp_path / "log").mkdir()
    paths, notes = discover(str(tmp_path), "staging")
    assert paths == [str(tmp_path / "log" / "staging.log")] and "not there yet" in notes[0]
    c = parse(apply_overrides({}, app=str(tmp_path)))
    assert not c.collectors.puma.enabled  # no control app configured in the app


def test_configured_sources_win_over_discovery(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "production.log").write_text("")
    c = parse({"app": {"root": str(tmp_path)}, "sources": [{"path": "log/custom.log"}]})
    assert [s.path for s in c.sources] == [str(tmp_path / "log" / "custom.log")]


def test_config_show_prints_the_effective_config_with_secrets_masked(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    path = write(tmp_path, GOOD.format(root=root))
    result = CliRunner().invoke(config_group, ["show", path])
    assert result.exit_code == 0, result.output
    text = result.output
    for secret in ("0123456789abcdef0123456789abcdef", "hunter2", "T0K3N", "sig=abc", "s3cretpw", "redispw"):
        assert secret not in text, secret
    assert 'dsn = "postgresql://app:********@db.internal:5432/app_production"' in text
    assert "[detectors.pool_exhaustion]" in text and "critical_errors = 5" in text
    assert 'listen = "0.0.0.0:9500"' in text
    from agent.config import tomllib  # the stdlib's, or the tomli backport on Python < 3.11

    shown = tomllib.loads(text)  # the output is TOML again
    assert shown["limits"]["checkpoint_interval_s"] == 1.5
    assert [s["format"] for s in shown["sources"]] == ["", "postgres"]  # "": sniffed


def test_to_toml_quotes_keys_that_need_it():
    from agent.config import tomllib

    data = {"a": {"b c": 1, "ok": [1, 2], "s": 'x"y'}}
    assert '"b c" = 1' in to_toml(data) and tomllib.loads(to_toml(data)) == data


def test_a_control_app_whose_port_comes_from_the_environment_is_not_guessed(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "puma.rb").write_text(
        'if ENV["PUMA_CONTROL_PORT"]\n  activate_control_app "tcp://127.0.0.1:#{ENV["PUMA_CONTROL_PORT"]}", { auth_token: "t" }\nend\n')
    assert not parse(apply_overrides({}, app=str(tmp_path))).collectors.puma.enabled


def test_app_host_names_the_reporting_host_and_survives_a_relative_root(tmp_path):
    cfg = tmp_path / "railwatch.toml"
    cfg.write_text('[app]\nroot = "app"\nhost = "web-7.prod"\n\n[[sources]]\npath = "app/log/production.log"\n')
    loaded = load(str(cfg))
    assert loaded.app.host == "web-7.prod"
    assert loaded.app.root == str(tmp_path / "app")


# ----------------------------------------------------------------------------- the one validator

def _settings_classes():
    from dataclasses import is_dataclass

    import agent.config as C
    from agent.incidents.lifecycle import LifecycleSettings
    from agent.sinks import TYPES
    from detectors import REGISTRY

    daemon = [C.AppConfig, C.SourceConfig, C.TailConfig, C.MetricsConfig, C.PsutilConfig, C.PumaConfig, C.SidekiqConfig,
              C.PostgresConfig, C.LimitsConfig, C.StateConfig, LifecycleSettings]
    classes = daemon + [d.settings_type for d in REGISTRY.values()] + [settings for settings, _ in TYPES.values()]
    assert all(is_dataclass(c) for c in classes)
    return classes


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_setting_is_declared_with_setting_and_numbers_have_bounds(cls):
    from dataclasses import fields

    from agent.settings import BOUNDS_KEY, bounds_of

    for f in fields(cls):
        assert BOUNDS_KEY in f.metadata, f"{cls.__name__}.{f.name}: declare it with setting()"
        b = bounds_of(f)
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            assert (b.min, b.max, b.above) != (None, None, None), f"{cls.__name__}.{f.name}: no bounds"


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_default_passes_its_own_bounds(cls):
    from dataclasses import asdict, fields

    from agent.settings import bounds_of, table

    given = {k: v for k, v in asdict(cls()).items() if not bounds_of(next(f for f in fields(cls) if f.name == k)).required}
    errors: list = []
    table(cls, given, "x", errors)
    assert [e for e in errors if not e.endswith(": required")] == []  # required keys have no default to check


@pytest.mark.parametrize("where, key, value, message", [
    ("limits", "max_line", 32 << 20, "limits.max_line: expected at most 16777216, got 33554432"),
    ("limits", "flush_interval_s", float("inf"), "limits.flush_interval_s: expected a finite number, got inf"),
    ("incidents", "quiet_period_s", float("nan"), "incidents.quiet_period_s: expected a finite number, got nan"),
    ("incidents", "quiet_periods_s", {"n_plus_one": 0}, "incidents.quiet_periods_s: expected a table of numbers each > 0"),
    ("incidents", "rate_limit", 0, "incidents.rate_limit: expected at least 1, got 0"),
    ("tail", "poll_interval_s", -1, "tail.poll_interval_s: expected a number > 0, got -1"),
    ("detectors.pool_exhaustion", "critical_share", 1.5, "detectors.pool_exhaustion.critical_share: expected at most 1, got 1.5"),
    ("detectors.sidekiq_failures", "window_s", 0, "detectors.sidekiq_failures.window_s: expected a number > 0, got 0"),
    ("detectors.n_plus_one", "ignore_tables", ["users", 3], "detectors.n_plus_one.ignore_tables: expected a list of strings"),
    ("detectors.n_plus_one", "include_writes", "yes", "detectors.n_plus_one.include_writes: expected true or false, got 'yes'"),
])
def test_types_ranges_and_finiteness_are_checked_everywhere_in_one_wording(where, key, value, message):
    data: dict = {"sources": [{"path": "/x.log"}]}
    node = data
    for part in where.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


def test_a_detector_table_becomes_typed_settings_and_a_list_stays_a_list():
    c = parse({"sources": [{"path": "/x.log"}], "detectors": {"n_plus_one": {"ignore_tables": ["users"], "spike_ratio": 4}}})
    s = c.detectors["n_plus_one"]
    assert s.ignore_tables == ("users",) and s.spike_ratio == 4.0 and isinstance(s.spike_ratio, float)


def test_sinks_are_typed_at_parse_and_their_errors_have_dotted_paths():
    from agent.sinks.webhook import WebhookSettings

    c = parse({"sources": [{"path": "/x.log"}], "sinks": {"hook": {"type": "webhook", "url": "https://e.example/h", "timeout_s": "3s"}}})
    (hook,) = c.sinks
    assert isinstance(hook.settings, WebhookSettings) and hook.settings.timeout_s == 3.0
    with pytest.raises(ConfigError) as err:
        parse({"sources": [{"path": "/x.log"}], "sinks": {
            "hook": {"type": "webhook", "url": 5, "timeout_s": float("inf"), "retries": 3},
            "am": {"type": "alertmanager", "url": "http://am:9093", "refresh_interval_s": 900, "expire_after_s": 600},
        }})
    assert sorted(err.value.errors) == [
        "sinks.am.refresh_interval_s: must be shorter than expire_after_s",
        "sinks.hook.retries: unknown option",
        "sinks.hook.timeout_s: expected a finite number, got inf",
        "sinks.hook.url: expected a string",  # a secret: its value is never echoed
    ]


def test_scan_parses_a_file_without_sources_and_run_does_not():
    data = {"detectors": {"sidekiq_failures": {"enabled": False}}}
    assert "sidekiq_failures" not in parse(data, require_sources=False).enabled_detectors
    with pytest.raises(ConfigError, match="sources: no log to follow"):
        parse(data)


def test_duration_keys_end_in_s_and_their_old_names_are_read_with_a_deprecation_warning(caplog):
    old = {"sources": [{"path": "/x.log"}], "incidents": {"quiet_period": 600, "cooldown": "5m", "rate_window": 60},
           "sinks": {"am": {"type": "alertmanager", "url": "http://am:9093", "expire_after": 600, "refresh_interval": 30,
                            "timeout": 4}}}
    with caplog.at_level("WARNING", logger="railwatch.config"):
        c = parse(old)
    i = c.incidents
    assert (i.quiet_period_s, i.cooldown_s, i.rate_window_s) == (600.0, 300.0, 60.0)
    (am,) = c.sinks
    assert (am.settings.expire_after_s, am.settings.refresh_interval_s, am.settings.timeout_s) == (600.0, 30.0, 4.0)
    said = caplog.text
    assert "incidents.cooldown is deprecated: call it cooldown_s" in said and "sinks.am.timeout is deprecated" in said
    with pytest.raises(ConfigError) as err:
        parse({"sources": [{"path": "/x.log"}], "incidents": {"cooldown": 60, "cooldown_s": 60}})
    assert err.value.errors == ["incidents.cooldown: the old name of cooldown_s; set only cooldown_s"]


def test_every_duration_setting_is_named_with_its_unit():
    """One naming rule: a field whose bounds make it a duration (above=0 or a seconds comment)
    ends in _s; the known unit-less names are gone."""
    import dataclasses

    from agent.bundle.remote import BundleStoreSettings
    from agent.incidents.lifecycle import LifecycleSettings
    from agent.sinks import TYPES

    classes = [LifecycleSettings, BundleStoreSettings] + [settings for settings, _ in TYPES.values()]
    names = {f.name for cls in classes for f in dataclasses.fields(cls)}
    assert not names & {"quiet_period", "quiet_periods", "cooldown", "rate_window", "expire_after", "refresh_interval",
                        "timeout"}
    assert not [n for n in names if n.endswith("_seconds")]
