"""Triage text of N+1 findings: containment and prevention steps, the before/after numbers
in words, the deploy sentence. Worded for a person on call; the report puts it in findings."""
from __future__ import annotations

from typing import Dict, List, Optional

from agent.timeparse import to_iso
from detectors.shared.deploys import DeployMarker


def containment(endpoint: str, deploy_revision: str, is_job: bool) -> List[str]:
    steps = []
    if deploy_revision:
        steps.append(f"Roll back the deploy that introduced it ({deploy_revision}) or turn off its feature flag.")
    else:
        steps.append("If a recent release or feature flag introduced it, roll it back / switch it off.")
    if is_job:
        steps.append("Lower the job's concurrency or pause its queue until the fix ships.")
    else:
        steps.append(f"Cap the page size (limit/per_page) of {endpoint} so each request loads fewer rows.")
        steps.append(f"Rate-limit {endpoint} (Rack::Attack or the load balancer) if it is saturating the database.")
    return steps


PREVENTION_COMMON = [
    "Turn on strict_loading for the association (or strict_loading_mode: :n_plus_one_only) so lazy loads raise in dev/test.",
    "Run Bullet or prosopite in CI (Prosopite.scan around request specs) to fail builds that add N+1 queries.",
    "Add a query-count test for this endpoint (assert_queries_count in Rails 7.2+, or a sql.active_record subscriber).",
]


def summarise_numbers(details: Dict[str, object]) -> str:
    parts = []
    before, after = details.get("queries_per_request_before"), details.get("queries_per_request_after")
    if before is not None and after is not None:
        parts.append(f"queries/request {before:g} -> {after:g}")
    before, after = details.get("db_ms_per_request_before"), details.get("db_ms_per_request_after")
    if before is not None and after is not None:
        parts.append(f"DB ms/request {before:g} -> {after:g}")
    return ", ".join(parts)


def deploy_text(deploy: Optional[DeployMarker]) -> str:
    if deploy is None:
        return ""
    return f" It started after the deploy of {deploy.revision or 'a new release'} at {to_iso(deploy.ts)}."


def is_job(endpoint: str) -> bool:
    """A job class rather than a controller action or an HTTP route."""
    return "#" not in endpoint and not endpoint.startswith(("GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "("))
