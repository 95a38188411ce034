"""railwatch: a production-monitoring agent for Rails apps.

The public surface for scripts and plug-in authors: the event model, findings, and the
scan entry point. Everything else is internal and may change.
"""
__version__ = "0.1.0"

from agent.events import (  # noqa: E402 - after __version__, which agent.* modules import
    Bullet,
    DbStatement,
    Deploy,
    Error,
    Event,
    Evidence,
    Finding,
    Job,
    Metric,
    Process,
    Request,
    Sql,
    Triage,
)

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
