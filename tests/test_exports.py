"""The public surface stays what it says (httpx's test_exported_members, applied here)."""
import agent
import detectors


def test_all_is_sorted_and_every_name_exists():
    for module in (agent, detectors):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)


def test_every_detector_module_is_registered():
    import pkgutil

    names = {m.name for m in pkgutil.iter_modules(detectors.__path__)}
    mains = {n for n in names if n in detectors.REGISTRY}
    assert mains == {"n_plus_one", "pool_exhaustion", "sidekiq_failures"}
    assert set(detectors.REGISTRY) == mains
