"""The public surface stays what it says (httpx's test_exported_members, applied here)."""
import agent
import detectors


def test_all_is_sorted_and_every_name_exists():
    for module in (agent, detectors):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)

