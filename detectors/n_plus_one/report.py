"""Turn the N+1 detector's state into findings.

One finding per endpoint problem. An endpoint's N+1 ``Incident`` carries all its
evidence items (repeated SQL shapes from debug SQL or tagged Postgres statements,
Bullet associations); a queries or DB-time spike that overlaps it escalates it (a
finding that only carries an escalation has ``count`` 0: no new affected request).
Without an incident, a query-count spike is an N+1 spike (the counts are the
repetition evidence), a steady high count a warning, and a DB-time rise alone is a
*slow endpoint* (subject ``problem: slow_endpoint``, warning at most): DB time says
nothing about repetition. The report reads only the ``ReportInput`` it is given, and
settles what it reports (``take()`` on incidents and spikes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple

from agent.events import Evidence, Finding, Triage
from agent.timeparse import to_iso
from detectors.n_plus_one.state import Incident, Spike
from detectors.n_plus_one.triage import PREVENTION_COMMON, containment, deploy_text, is_job, summarise_numbers
from detectors.shared.baseline import RecentVsBaseline
from detectors.shared.deploys import DeployMarker

RATE_MIN_SPAN_S = 60.0  # a rate is taken over at least this span: 3 requests in 2 s are not 1.5/s


@dataclass(frozen=True)
class ReportInput:
    """What a report reads: the detector's records and the numbers findings quote."""

    detector: str  # the name findings carry
    incidents: Mapping[str, Incident]  # endpoint -> its N+1 incident
    spikes: Mapping[Tuple[str, str], Spike]  # (endpoint, signal)
    history: Mapping[str, Deque[Tuple[float, bool]]]  # endpoint -> recent (ts, had_sql)
    queries: RecentVsBaseline  # queries per request, per endpoint
    global_spike_share: float
    critical_min_queries: float = 25.0
    critical_min_rate: float = 0.2


def build_findings(state: ReportInput) -> List[Finding]:
    by_endpoint: Dict[str, Tuple[Optional[Incident], List[Spike]]] = {e: (inc, []) for e, inc in state.incidents.items()}
    for (endpoint, _), spike in state.spikes.items():
        if spike.dirty:
            by_endpoint.setdefault(endpoint, (None, []))[1].append(spike)
    out: List[Finding] = []
    for endpoint, (inc, spikes) in by_endpoint.items():
        spikes = [s for s in spikes if not _is_global_db_slowdown(state, s)]
        escalation = _spike_for(state, endpoint, inc) if inc is not None else None
        if inc is not None and (inc.dirty or (escalation is not None and escalation.dirty)):
            out.append(_incident_finding(state, inc, escalation))
        for spike in spikes:
            if not spike.dirty:
                continue  # reported through the incident above
            if inc is not None and spike.signal != "db_time":
                spike.take()  # the endpoint's N+1 incident already says it
                continue
            out.append(_spike_finding(state, spike))
    return out


def _spike_for(state: ReportInput, endpoint: str, inc: Incident) -> Optional[Spike]:
    """The endpoint's queries/DB-time spike that overlaps this incident, if any."""
    for signal in ("queries", "db_time"):
        spike = state.spikes.get((endpoint, signal))
        if spike is not None and not spike.global_slowdown and spike.start <= inc.last_seen and (spike.active or spike.last >= inc.first_seen):
            return spike
    return None


def _is_global_db_slowdown(state: ReportInput, spike: Spike) -> bool:
    """A DB-time jump on most busy endpoints at once is the database, not a code path."""
    if spike.signal != "db_time":
        return False
    active = sum(1 for h in state.history.values() if h and h[-1][0] >= spike.start)
    spiking = sum(
        1 for (_, sig), s in state.spikes.items() if sig == "db_time" and s.start <= spike.last and s.last >= spike.start
    )
    spike.global_slowdown = active >= 3 and spiking / active >= state.global_spike_share
    if spike.global_slowdown:
        spike.take()
    return spike.global_slowdown


def _numbers(state: ReportInput, endpoint: str, spike: Optional[Spike]) -> Dict[str, object]:
    d: Dict[str, object] = {}
    if spike is not None and spike.signal in ("queries", "steady"):
        d["queries_per_request_before"], d["queries_per_request_after"] = round(spike.before, 1), round(spike.after, 1)
    elif state.queries.recent_count(endpoint):
        d["queries_per_request_after"] = state.queries.recent_median(endpoint)
        if state.queries.baseline_count(endpoint):
            d["queries_per_request_before"] = state.queries.baseline_median(endpoint)
    if spike is not None and spike.signal == "db_time":
        d["db_ms_per_request_before"], d["db_ms_per_request_after"] = round(spike.before, 1), round(spike.after, 1)
    return d


def _deploy_of(inc_deploy: Optional[DeployMarker], spike: Optional[Spike]) -> Optional[DeployMarker]:
    return inc_deploy or (spike.deploy if spike is not None else None)


def _deploy_evidence(deploy: Optional[DeployMarker]) -> List[Evidence]:
    if deploy is None or not deploy.source or not deploy.line:
        return []
    return [Evidence(path=deploy.source, line=deploy.line, text=f"deploy {deploy.revision}".strip())]


def _rate(inc: Incident) -> float:
    """Affected requests per second over the incident's span."""
    return inc.total / max(inc.last_seen - inc.first_seen, RATE_MIN_SPAN_S)


def is_large(state: ReportInput, inc: Incident) -> bool:
    """Queries per affected request and affected-request rate both at the "page now" settings."""
    qpr = inc.queries_per_request
    return qpr is not None and qpr >= state.critical_min_queries and _rate(inc) >= state.critical_min_rate


def _incident_finding(state: ReportInput, inc: Incident, spike: Optional[Spike]) -> Finding:
    endpoint = inc.endpoint
    large = is_large(state, inc)
    new = "new since deploy" if inc.new_since_deploy is not None else ("new endpoint" if inc.new_endpoint else "")
    critical = spike is not None or (bool(new) and large)
    count, first, last, evidence = inc.take()
    if count == 0 and spike is not None:
        first, last = spike.delta_first or spike.start, spike.delta_last or spike.last
    if spike is not None:
        evidence += spike.take()[3]
    deploy = _deploy_of(inc.new_since_deploy, spike)
    primary = inc.primary()
    bullets = inc.bullet_items()
    numbers = _numbers(state, endpoint, spike)
    a = primary.association if primary is not None else None
    where = f" from {inc.top_location}" if inc.top_location else ""
    shapes = inc.sql_items()
    if primary is not None:
        what = a.label if a else (primary.table or "query")
        summary = (f"{endpoint} runs `{primary.sql}` up to {primary.max_repeats} times per request (different binds each time)"
                   f"{where}; {inc.total} request(s) affected.")
        if len(shapes) > 1:
            summary += " Also repeated: " + "; ".join(f"`{i.sql}` up to {i.max_repeats}x" for i in shapes if i is not primary) + "."
        cause = (f"Likely a lazy {a.macro} load of {a.label} inside a loop over rows loaded just before (no includes/preload)."
                 if a else f"A query on {primary.table or 'a table'} issued once per row inside a loop.")
        title_what = f"{what} loaded up to {primary.max_repeats}x per request"
    else:
        what = ", ".join(b.label for b in bullets)
        summary = f"Bullet reported an N+1 on {endpoint}: {what}, {inc.total} request(s) affected."
        cause = f"Bullet saw {what} lazily loaded for records of a multi-record load."
        title_what = what
    if summarise_numbers(numbers):
        summary += f" ({summarise_numbers(numbers)})"
    if spike is not None:
        cause += f" The endpoint's {'queries' if spike.signal == 'queries' else 'DB time'} per request jumped against its own baseline."
    elif inc.new_since_deploy is not None:
        cause += " The endpoint ran without it before the deploy."
    elif inc.new_endpoint:
        cause += " The endpoint is new: it had no earlier requests."
    cause += deploy_text(deploy)
    if primary is not None and bullets:
        cause += " Bullet reports " + ("the same association." if any(_bullet_names(b, a) for b in bullets) else
                                       ", ".join(b.label for b in bullets) + ".")
    fixes = [b.bullet.model + ".includes(" + ", ".join(":" + x for x in b.bullet.associations) + ")" for b in bullets if b.bullet]
    if a is not None and a.fix not in fixes:
        fixes.insert(0, a.fix)
    prevention = ([f"Fix: {' / '.join(fixes)} (eager-load the association in the query that loads the parent rows)."] if fixes else [
        "Fix: eager-load the association (includes/preload) in the query that loads the parent rows."
    ]) + PREVENTION_COMMON
    qpr = inc.queries_per_request
    details: Dict[str, object] = {
        "repeats_per_request_max": primary.max_repeats if primary else 0,
        "repeats_per_request_avg": round(primary.repeats_sum / primary.requests, 1) if primary and primary.requests else 0.0,
        "repeat_ms_per_request_avg": round(primary.ms_sum / primary.requests, 2) if primary and primary.requests else 0.0,
        "affected_requests_total": inc.total,
        "affected_requests_per_s": round(_rate(inc), 3),
        "queries_per_affected_request": round(qpr, 1) if qpr is not None else None,
        "example_request_ids": list(inc.example_ids),
        "source_location": inc.top_location,
        "source_query": primary.source_sql if primary else "",
        "fingerprint": primary.key if primary else "",
        "association": a.label if a else "",
        "fix": fixes[0] if fixes else "",
        "associations": sorted({i.label for i in inc.items.values()}),
        "sql_shapes": [i.sql for i in shapes],
        "evidence_sources": sorted({i.source for i in inc.items.values()}),
        "evidence_items": [i.as_detail() for i in inc.items.values()],
        "new_since_deploy": inc.new_since_deploy is not None,
        "new_endpoint": inc.new_endpoint,
        "spike": spike.signal if spike is not None else "",
    }
    details.update(numbers)
    if deploy is not None:
        details["deploy_revision"], details["deploy_time"] = deploy.revision, to_iso(deploy.ts)
    # "(Bullet): " keeps a label off the endpoint's tail ("…/validate_token: Account…" reads as a secret to the scrubber)
    sep = ": " if primary is not None else " (Bullet): "
    title = f"N+1 on {endpoint}{sep}{title_what}"
    if spike is not None:
        title = f"N+1 spike on {endpoint}{sep}{title_what}"
    elif new:
        title += f" ({new})"
    return Finding(
        detector=state.detector, severity="critical" if critical else "warning", title=title, subject=dict(inc.subject),
        first_seen=first, last_seen=last, count=count, evidence=evidence + _deploy_evidence(deploy),
        triage=Triage(summary=summary, likely_cause=cause, containment=containment(endpoint, deploy.revision if deploy else "", is_job(endpoint)),
                      prevention=prevention),
        details=details,
    )


def _bullet_names(b, a) -> bool:  # type: ignore[no-untyped-def]
    bullet = b.bullet
    return bool(a and bullet and a.name in bullet.associations and (not a.owner or a.owner == bullet.model))


def _spike_finding(state: ReportInput, spike: Spike) -> Finding:
    count, first, last, evidence = spike.take()
    endpoint = spike.endpoint
    numbers = _numbers(state, endpoint, spike)
    if spike.signal == "steady":
        title = f"{endpoint} runs {spike.after:g} queries per request"
        cause = "A steady, high query count per request: usually an N+1 that has been there a while (debug SQL or Bullet would name it)."
        severity = "warning"
    elif spike.signal == "queries":
        title = f"N+1 spike on {endpoint}: {spike.before:g} -> {spike.after:g} queries per request"
        cause = "Queries per request jumped against this endpoint's own baseline: a new per-row query (N+1) or a larger N."
        severity = "critical"
    else:
        # DB time alone is no repetition evidence: a slow endpoint / slow query, never an N+1 page
        title = f"Slow endpoint {endpoint}: DB time {spike.before:.0f} -> {spike.after:.0f} ms per request"
        cause = ("DB time per request rose against this endpoint's own baseline, with no repeated-statement evidence"
                 " (query counts are not logged): a slower query or more rows; an N+1 would need debug SQL, Bullet or"
                 " tagged Postgres statements to show.")
        severity = "warning"
    cause += deploy_text(spike.deploy)
    details: Dict[str, object] = {"signal": spike.signal, "affected_requests_total": spike.total,
                                  "example_request_ids": list(spike.example_ids), "peak": spike.peak}
    details.update(numbers)
    if spike.deploy is not None:
        details["deploy_revision"], details["deploy_time"] = spike.deploy.revision, to_iso(spike.deploy.ts)
    return Finding(
        detector=state.detector, severity=severity, title=title,
        subject={"endpoint": endpoint, "problem": "slow_endpoint"} if spike.signal == "db_time" else {"endpoint": endpoint},
        first_seen=first, last_seen=last, count=count, evidence=evidence + _deploy_evidence(spike.deploy),
        triage=Triage(
            summary=f"{endpoint}: {summarise_numbers(numbers)} since {to_iso(spike.start)}; {spike.total} request(s) affected.",
            likely_cause=cause,
            containment=containment(endpoint, spike.deploy.revision if spike.deploy else "", is_job(endpoint)),
            prevention=["Turn on debug SQL (or Bullet/prosopite) in staging for this endpoint to name the repeated query."] + PREVENTION_COMMON,
        ),
        details=details,
    )
