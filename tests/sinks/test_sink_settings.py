"""Each sink type declares its options as a typed settings class; the config holds them, built once."""
from __future__ import annotations

import dataclasses

import pytest

from agent.settings import bounds_of
from agent.sinks import KINDS, TYPES, build_sinks, parse_sink


def test_every_type_maps_to_its_settings_and_sink_class():
    assert set(TYPES) == set(KINDS) == {"directory", "webhook", "pagerduty", "alertmanager", "slack"}
    for kind, (settings_type, sink_type) in TYPES.items():
        assert dataclasses.is_dataclass(settings_type) and sink_type.kind == kind
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(settings_type(), dataclasses.fields(settings_type)[0].name, None)


@pytest.mark.parametrize("kind, key", [("webhook", "secret"), ("webhook", "url"), ("pagerduty", "routing_key"),
                                       ("slack", "url"), ("alertmanager", "headers")])
def test_credentials_are_marked_secret(kind, key):
    settings_type = TYPES[kind][0]
    assert bounds_of(next(f for f in dataclasses.fields(settings_type) if f.name == key)).secret


def test_a_parsed_sink_shows_its_options_with_secrets_masked_and_builds_its_sink(tmp_path):
    errors: list = []
    config = parse_sink("pager", {"type": "pagerduty", "routing_key": "FAKE" + "a" * 28, "source": "web-1"}, errors)
    assert errors == [] and config is not None
    shown = config.table()
    assert shown["type"] == "pagerduty" and shown["routing_key"] == "********" and shown["source"] == "web-1"
    (sink,) = build_sinks([config], str(tmp_path)).values()
    assert sink.kind == "pagerduty" and sink.routing_key == "FAKE" + "a" * 28 and sink.source == "web-1"
    assert sink.component is None  # "" in the config: the option is unset


def test_a_directory_sink_without_a_path_writes_under_the_state_dir(tmp_path):
    errors: list = []
    config = parse_sink("disk", {"type": "directory"}, errors)
    (sink,) = build_sinks([config], str(tmp_path)).values()
    assert errors == [] and sink.path == str(tmp_path / "incidents")
