"""Turn the N+1 detector's state into findings.

Per endpoint: every SQL incident with news, every Bullet warning and every spike.
A spike on an endpoint that has SQL evidence escalates that endpoint's main SQL
incident (a finding that only carries an escalation has ``count`` 0: no new affected
request); a Bullet warning naming the association of an SQL incident is folded into
it ("Bullet reports the same association"). Otherwise spikes and Bullet warnings are
findings of their own. The report reads only the ``ReportInput`` it is given, and
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


@dataclass(frozen=True)
class ReportInput:
    """What a report reads: the detector's records and the numbers findings quote."""

    detector: str  # the name findings carry
    incidents: Mapping[Tuple[str, str], Incident]  # (endpoint, fingerprint or "bullet:…")
    spikes: Mapping[Tuple[str, str], Spike]  # (endpoint, signal)
    history: Mapping[str, Deque[Tuple[float, bool]]]  # endpoint -> recent (ts, had_sql)
    queries: RecentVsBaseline  # queries per request, per endpoint
    global_spike_share: float


def build_findings(state: ReportInput) -> List[Finding]:
    by_endpoint: Dict[str, Tuple[List[Incident], List[Incident], List[Spike]]] = {}
    for (endpoint, _), inc in state.incidents.items():
        entry = by_endpoint.setdefault(endpoint, ([], [], []))
        (entry[0] if "sql" in inc.subject else entry[1]).append(inc)
    for (endpoint, _), spike in state.spikes.items():
        if spike.dirty:
            by_endpoint.setdefault(endpoint, ([], [], []))[2].append(spike)
    out: List[Finding] = []
    for endpoint, (sql_incs, bullet_incs, spikes) in by_endpoint.items():
        spikes = [s for s in spikes if not _is_global_db_slowdown(state, s)]
        loud = [s for s in spikes if s.signal != "steady"]
        primary = max(sql_incs, key=lambda i: (i.max_repeats, i.total), default=None)
        for inc in sql_incs:
            for b in bullet_incs:
                if inc.association and b.bullet and _same_association(inc, b):
                    inc.bullet_confirmed = True
            if inc.dirty or (inc is primary and any(s.dirty for s in loud)):
                out.append(_sql_finding(state, inc, _spike_for(state, endpoint, inc)))
        for b in bullet_incs:
            if not b.dirty:
                continue
            if any(_same_association(i, b) for i in sql_incs):
                b.take()  # the SQL incident already counts these requests and says Bullet agrees
                continue
            out.append(_bullet_finding(state, b, _spike_for(state, endpoint, b)))
        for spike in spikes:
            if primary is not None:
                spike.take()  # reported through the SQL incident above
                continue
            out.append(_spike_finding(state, spike))
    return out


def _same_association(inc: Incident, b: Incident) -> bool:
    a, bullet = inc.association, b.bullet
    return bool(a and bullet and a.name in bullet.associations and (not a.owner or a.owner == bullet.model))


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


def _sql_finding(state: ReportInput, inc: Incident, spike: Optional[Spike]) -> Finding:
    count, first, last, evidence = inc.take()
    if count == 0 and spike is not None:
        first, last = spike.delta_first or spike.start, spike.delta_last or spike.last
    if spike is not None:
        evidence += spike.take()[3]
    endpoint, table = inc.subject["endpoint"], inc.subject["table"]
    deploy = _deploy_of(inc.new_since_deploy, spike)
    critical = spike is not None or inc.new_since_deploy is not None
    a = inc.association
    per_req = inc.repeats_sum / inc.total if inc.total else 0.0
    where = f" from {inc.top_location}" if inc.top_location else ""
    numbers = _numbers(state, endpoint, spike)
    summary = (
        f"{endpoint} runs `{inc.subject['sql']}` up to {inc.max_repeats} times per request (different binds each time)"
        f"{where}; {inc.total} request(s) affected."
    )
    if summarise_numbers(numbers):
        summary += f" ({summarise_numbers(numbers)})"
    cause = (
        f"Likely a lazy {a.macro} load of {a.label} inside a loop over rows loaded just before (no includes/preload)."
        if a else f"A query on {table or 'a table'} issued once per row inside a loop."
    )
    if spike is not None:
        cause += f" The endpoint's {'queries' if spike.signal == 'queries' else 'DB time'} per request jumped against its own baseline."
    elif inc.new_since_deploy is not None:
        cause += " The endpoint ran without it before the deploy."
    cause += deploy_text(deploy)
    if inc.bullet_confirmed:
        cause += " Bullet reports the same association."
    prevention = ([f"Fix: {a.fix} (eager-load the association in the query that loads the parent rows)."] if a else [
        "Fix: eager-load the association (includes/preload) in the query that loads the parent rows."
    ]) + PREVENTION_COMMON
    details: Dict[str, object] = {
        "repeats_per_request_max": inc.max_repeats,
        "repeats_per_request_avg": round(per_req, 1),
        "repeat_ms_per_request_avg": round(inc.ms_sum / inc.total, 2) if inc.total else 0.0,
        "affected_requests_total": inc.total,
        "example_request_ids": list(inc.example_ids),
        "source_location": inc.top_location,
        "source_query": inc.source_sql,
        "fingerprint": inc.shape.fingerprint if inc.shape else "",
        "association": a.label if a else "",
        "fix": a.fix if a else "",
        "new_since_deploy": inc.new_since_deploy is not None,
        "spike": spike.signal if spike is not None else "",
    }
    details.update(numbers)
    if deploy is not None:
        details["deploy_revision"], details["deploy_time"] = deploy.revision, to_iso(deploy.ts)
    what = f"{a.label}" if a else f"{table or 'query'}"
    title = f"N+1 on {endpoint}: {what} loaded up to {inc.max_repeats}x per request"
    if spike is not None:
        title = f"N+1 spike on {endpoint}: {what} loaded up to {inc.max_repeats}x per request"
    elif inc.new_since_deploy is not None:
        title += " (new since deploy)"
    return Finding(
        detector=state.detector, severity="critical" if critical else "warning", title=title, subject=dict(inc.subject),
        first_seen=first, last_seen=last, count=count, evidence=evidence + _deploy_evidence(deploy),
        triage=Triage(summary=summary, likely_cause=cause, containment=containment(endpoint, deploy.revision if deploy else "", is_job(endpoint)),
                      prevention=prevention),
        details=details,
    )


def _bullet_finding(state: ReportInput, b: Incident, spike: Optional[Spike]) -> Finding:
    count, first, last, evidence = b.take()
    endpoint, label = b.subject["endpoint"], b.subject["association"]
    subject = dict(b.subject)
    deploy = _deploy_of(b.new_since_deploy, spike)
    critical = spike is not None or b.new_since_deploy is not None
    model = b.bullet.model if b.bullet else ""
    assocs = ", ".join(":" + a for a in (b.bullet.associations if b.bullet else ()))
    cause = f"Bullet saw {label} lazily loaded for records of a multi-record load.{deploy_text(deploy)}"
    details: Dict[str, object] = {
        "bullet_association": label, "affected_requests_total": b.total, "new_since_deploy": b.new_since_deploy is not None,
        "call_stack": list(b.bullet.call_stack[:3]) if b.bullet else [],
    }
    details.update(_numbers(state, endpoint, spike))
    if deploy is not None:
        details["deploy_revision"], details["deploy_time"] = deploy.revision, to_iso(deploy.ts)
    return Finding(
        detector=state.detector, severity="critical" if critical else "warning",
        title=f"N+1 on {endpoint} (Bullet): {label}", subject=subject, first_seen=first, last_seen=last, count=count,
        evidence=evidence + _deploy_evidence(deploy),
        triage=Triage(
            summary=f"Bullet reported an N+1 on {endpoint}: {label}, {b.total} time(s).",
            likely_cause=cause,
            containment=containment(endpoint, deploy.revision if deploy else "", is_job(endpoint)),
            prevention=[f"Fix: {model}.includes({assocs})."] + PREVENTION_COMMON,
        ),
        details=details,
    )


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
        title = f"DB time spike on {endpoint}: {spike.before:.0f} -> {spike.after:.0f} ms per request"
        cause = ("DB time per request jumped on this endpoint only (query counts are not logged): most often a new"
                 " per-row query (N+1) or a larger N; also possible: a new slow query.")
        severity = "critical"
    cause += deploy_text(spike.deploy)
    details: Dict[str, object] = {"signal": spike.signal, "affected_requests_total": spike.total,
                                  "example_request_ids": list(spike.example_ids), "peak": spike.peak}
    details.update(numbers)
    if spike.deploy is not None:
        details["deploy_revision"], details["deploy_time"] = spike.deploy.revision, to_iso(spike.deploy.ts)
    return Finding(
        detector=state.detector, severity=severity, title=title, subject={"endpoint": endpoint},
        first_seen=first, last_seen=last, count=count, evidence=evidence + _deploy_evidence(spike.deploy),
        triage=Triage(
            summary=f"{endpoint}: {summarise_numbers(numbers)} since {to_iso(spike.start)}; {spike.total} request(s) affected.",
            likely_cause=cause,
            containment=containment(endpoint, spike.deploy.revision if spike.deploy else "", is_job(endpoint)),
            prevention=["Turn on debug SQL (or Bullet/prosopite) in staging for this endpoint to name the repeated query."] + PREVENTION_COMMON,
        ),
        details=details,
    )
