"""Built-in detectors. ``BUILTIN`` is the one place to add one."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Type

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


class UnknownDetector(ValueError):
    """A detector name that is not registered (the CLI turns it into exit status 2)."""


def build_detectors(names: Optional[Sequence[str]], facts: AppFacts,
                    settings: Optional[Mapping[str, Settings]] = None) -> List[Detector]:
    """Fresh instances of the named detectors (all when ``names`` is empty), each with
    its configured settings or its defaults. Both drivers build detectors here."""
    chosen = list(names) if names else list(REGISTRY)
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise UnknownDetector(f"unknown detector {unknown[0]!r}; choose from: {', '.join(REGISTRY) or '(none)'}")
    context = DetectorContext(facts=facts)
    settings = settings or {}
    return [REGISTRY[n](settings.get(n), context) for n in chosen]

__all__ = ["AppFacts", "BUILTIN", "Detector", "DetectorContext", "REGISTRY", "Settings", "UnknownDetector", "build_detectors"]
