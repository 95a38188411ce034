"""build_sink: options validated with sinks.<name>.<key> errors that never echo a value."""
from __future__ import annotations

import pytest

from agent.sinks import KINDS, build_sink, sinks_from_config


@pytest.mark.parametrize("kind, options", [
    ("directory", {"path": "/tmp/x"}),
    ("webhook", {"url": "https://example.com/hook", "secret": "s", "attach_bundle": True, "timeout_s": 3}),
    ("pagerduty", {"routing_key": "a" * 32}),
    ("alertmanager", {"urls": ["http://am1:9093", "http://am2:9093"], "labels": {"team": "web"}}),
    ("slack", {"url": "https://hooks.slack.com/services/T/B/X"}),
])
def test_every_kind_builds_from_valid_options_with_tls_verification_on(kind, options):
    sink = build_sink(kind, "n", options)
    assert sink.name == "n" and sink.kind == kind
    if kind != "directory":
        assert sink.verify is True and sink.timeout > 0


def test_errors_name_every_bad_key_and_never_the_value():
    with pytest.raises(ValueError) as err:
        build_sink("pagerduty", "pager", {"routing_key": "FAKEtooShortSecret", "url": "ftp://FAKEhost", "timeout_s": "x", "colour": 1})
    message = str(err.value)
    assert "sinks.pager.routing_key: expected a 32-character integration key" in message
    assert "sinks.pager.url: expected an http:// or https:// URL" in message
    assert "sinks.pager.timeout_s: expected a number" in message
    assert "sinks.pager.colour: unknown option" in message
    assert "FAKEtooShortSecret" not in message and "FAKEhost" not in message


def test_required_options_and_unknown_kinds_are_reported():
    with pytest.raises(ValueError, match=r"sinks\.hook\.url: required"):
        build_sink("webhook", "hook", {})
    with pytest.raises(ValueError, match=r"sinks\.am\.url: required"):
        build_sink("alertmanager", "am", {})
    with pytest.raises(ValueError, match=r"sinks\.x\.type: unknown sink type"):
        build_sink("email", "x", {})
    assert "email" not in KINDS


def test_a_config_without_sinks_uses_the_directory_sink_under_the_state_dir(tmp_path):
    sinks = sinks_from_config({}, str(tmp_path))
    (sink,) = sinks.values()
    assert sink.kind == "directory" and sink.path == str(tmp_path / "incidents")
    many = sinks_from_config({"disk": {"type": "directory"}, "hook": {"type": "webhook", "url": "https://e.example/h"}}, str(tmp_path))
    assert sorted(many) == ["disk", "hook"] and many["disk"].path == str(tmp_path / "incidents")


def test_a_missing_ca_file_is_an_error():
    with pytest.raises(ValueError, match=r"sinks\.hook\.ca_file: no such file"):
        build_sink("webhook", "hook", {"url": "https://e.example/h", "ca_file": "/nonexistent/ca.pem"})
