"""railwatch: a production-monitoring agent for Rails apps.

The public surface for scripts and plug-in authors: the event model, findings, and the
scan entry point. Everything else is internal and may change.
"""
__version__ = "0.1.0"

from typing import Any, List

_EVENT_NAMES = frozenset(
    ("Bullet", "DbStatement", "Deploy", "Error", "Event", "Evidence", "Finding", "Job", "Metric", "Process", "Request", "Sql", "Triage")
)


def __getattr__(name: str) -> Any:
    """The event model, imported on first use: ``railwatch scan --help`` should not pay for it (issue 18)."""
    if name in _EVENT_NAMES:
        from agent import events

        return getattr(events, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | _EVENT_NAMES)


__all__ = [
    "Bullet",
    "DbStatement",
    "Deploy",
    "Error",
    "Event",
    "Evidence",
    "Finding",
    "Job",
    "Metric",
    "Process",
    "Request",
    "Sql",
    "Triage",
    "__version__",
]
