"""Built-in detectors. ``BUILTIN`` is the one place to add one."""
from __future__ import annotations

from typing import Dict, Tuple, Type

from detectors.base import AppFacts, Detector, DetectorContext, Settings
from detectors.n_plus_one import NPlusOneDetector
from detectors.pool_exhaustion import PoolExhaustionDetector
from detectors.sidekiq_failures import SidekiqFailuresDetector

BUILTIN: Tuple[Type[Detector], ...] = (
    NPlusOneDetector,
    PoolExhaustionDetector,
    SidekiqFailuresDetector,
)


def _build_registry(classes: Tuple[Type[Detector], ...]) -> Dict[str, Type[Detector]]:
    registry: Dict[str, Type[Detector]] = {}
    for cls in classes:
        if not cls.name:
            raise ValueError(f"{cls.__name__} has no name")
        if cls.name in registry:
            raise ValueError(f"two detectors are named {cls.name!r}")
        registry[cls.name] = cls
    return registry


REGISTRY: Dict[str, Type[Detector]] = _build_registry(BUILTIN)

__all__ = ["AppFacts", "BUILTIN", "Detector", "DetectorContext", "REGISTRY", "Settings"]
