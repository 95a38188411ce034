"""packaging/railwatch.example.toml is generated from agent/config.py and cannot drift: it is
current, every dataclass field of every section is in it, and with every setting uncommented
agent.config accepts it."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from agent import config as C
from agent.incidents.lifecycle import LifecycleSettings
from detectors import REGISTRY

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
EXAMPLE = PACKAGING / "railwatch.example.toml"


def generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("railwatch_gen_example_config", PACKAGING / "gen_example_config.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def uncommented() -> dict:  # type: ignore[type-arg]
    return tomllib.loads(generator().uncomment(EXAMPLE.read_text(encoding="utf-8")))


def test_example_is_what_the_generator_writes_today():
    assert EXAMPLE.read_text(encoding="utf-8") == generator().render(), \
        "packaging/railwatch.example.toml is stale: run python3 packaging/gen_example_config.py"


def test_every_key_is_commented_out_so_the_example_alone_sets_nothing():
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert data == {}


def test_every_dataclass_field_appears_in_its_section():
    data = uncommented()
    sections = {
        ("app",): C.AppConfig, ("tail",): C.TailConfig, ("metrics",): C.MetricsConfig, ("limits",): C.LimitsConfig,
        ("state",): C.StateConfig, ("incidents",): LifecycleSettings, ("collectors", "psutil"): C.PsutilConfig,
        ("collectors", "puma"): C.PumaConfig, ("collectors", "sidekiq"): C.SidekiqConfig,
        ("collectors", "postgres"): C.PostgresConfig,
    }
    for name, det in REGISTRY.items():
        sections[("detectors", name)] = det.settings_type
    collectors = {f.name for f in fields(C.CollectorsConfig)}
    assert {k for (top, *rest) in sections if top == "collectors" for k in rest} == collectors
    missing = []
    for path, cls in sections.items():
        table = data
        for key in path:
            table = table.get(key, {})
        missing += [".".join(path + (f.name,)) for f in fields(cls) if f.name not in table]
    missing += [f"sources.{f.name}" for f in fields(C.SourceConfig) if f.name not in data["sources"][0]]
    assert not missing, f"not in the example: {missing}"
    # and every top-level section the parser knows
    top = {f.name for f in fields(C.Config)} - {"disabled_detectors", "origin"}
    assert top <= set(data)


def test_uncommented_example_is_a_valid_configuration(tmp_path):
    cfg = C.parse(uncommented(), origin=str(tmp_path / "railwatch.toml"))
    assert {s.type for s in cfg.sinks} == {"directory", "webhook", "pagerduty", "alertmanager", "slack"}
    assert cfg.limits == C.LimitsConfig() and cfg.collectors.psutil == C.PsutilConfig()
    def plain(settings):  # type: ignore[no-untyped-def]
        return {k: tuple(v) if isinstance(v, list) else v for k, v in asdict(settings).items()}

    for name, det in REGISTRY.items():
        assert plain(cfg.detectors[name]) == plain(det.settings_type())  # the example states the defaults


def test_a_field_added_to_the_config_fails_the_check(monkeypatch):
    gen = generator()
    text = gen.render()
    from dataclasses import make_dataclass

    Bigger = make_dataclass("TailConfig", [("start", str, "end"), ("brand_new_knob", int, 3)], frozen=True)
    monkeypatch.setattr(gen.C, "TailConfig", Bigger)
    monkeypatch.setattr(gen, "SECTIONS", [s if s[0] != "tail" else ("tail", Bigger, s[2]) for s in gen.SECTIONS])
    assert gen.render() != text and "#brand_new_knob = 3" in gen.render()
