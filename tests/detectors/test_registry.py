"""Every detector under detectors/ is registered: found by walking the package, not by a list
of names, so a new detector package that is not added to ``BUILTIN`` fails here."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator, List, Type

import pytest

import detectors
from detectors import BUILTIN, REGISTRY
from detectors.base import Detector


def defined_detectors(package: ModuleType) -> List[Type[Detector]]:
    """The named ``Detector`` subclasses defined in any module under ``package``."""
    found: List[Type[Detector]] = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Detector) and cls.__module__ == module.__name__ and cls.name:
                found.append(cls)
    return found


def unregistered(package: ModuleType) -> List[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in defined_detectors(package)
            if cls not in BUILTIN or REGISTRY.get(cls.name) is not cls]


def test_every_detector_defined_under_detectors_is_registered():
    assert unregistered(detectors) == []
    assert {cls.name for cls in defined_detectors(detectors)} == set(REGISTRY)  # and nothing registered is missing


def test_each_detector_is_a_package_named_after_it_that_exports_it_and_its_settings():
    for name, cls in REGISTRY.items():
        assert cls.__module__.split(".")[:2] == ["detectors", name]
        package = importlib.import_module(f"detectors.{name}")
        assert getattr(package, cls.__name__) is cls
        assert getattr(package, cls.settings_type.__name__) is cls.settings_type


@pytest.fixture
def unregistered_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A detectors-like package holding one new detector package that nobody registered."""
    root = tmp_path / "more_detectors"
    (root / "slow_requests").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "slow_requests" / "__init__.py").write_text("")
    (root / "slow_requests" / "detector.py").write_text(
        "from detectors.base import Detector\n\n\n"
        "class SlowRequestsDetector(Detector):\n"
        "    name = 'slow_requests'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("more_detectors")
    for module in [m for m in sys.modules if m == "more_detectors" or m.startswith("more_detectors.")]:
        del sys.modules[module]


def test_the_check_catches_a_detector_package_that_is_not_registered(unregistered_package: ModuleType):
    assert unregistered(unregistered_package) == ["more_detectors.slow_requests.detector.SlowRequestsDetector"]
