"""N+1 queries and N+1 spikes: the detector and its settings (see ``detector``)."""
from detectors.n_plus_one.detector import NPlusOneDetector, NPlusOneSettings

__all__ = ["NPlusOneDetector", "NPlusOneSettings"]
