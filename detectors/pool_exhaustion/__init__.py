"""Connection pool exhaustion: the detector and its settings (see ``detector``)."""
from detectors.pool_exhaustion.detector import PoolExhaustionDetector, PoolExhaustionSettings

__all__ = ["PoolExhaustionDetector", "PoolExhaustionSettings"]
