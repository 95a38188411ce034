"""Sidekiq failure patterns: the detector and its settings (see ``detector``)."""
from detectors.sidekiq_failures.detector import SidekiqFailuresDetector
from detectors.sidekiq_failures.settings import SidekiqFailuresSettings

__all__ = ["SidekiqFailuresDetector", "SidekiqFailuresSettings"]
