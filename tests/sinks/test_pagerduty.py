"""PagerDuty Events API v2 sink against a loopback server that checks the documented schema."""
from __future__ import annotations

from agent.incidents.model import IncidentUpdate
from agent.sinks import build_sink

KEY = "K" * 32


def sink(url, **options):
    return build_sink("pagerduty", "pd", {"routing_key": KEY, "url": url + "/v2/enqueue", **options})


def test_trigger_carries_dedup_key_severity_and_details_in_the_documented_shape(tmp_path, target, targets):
    pd = target("pagerduty")
    update = targets.make_update(str(tmp_path / "s"), targets.make_finding(severity="critical"))
    result = sink(pd.url).deliver(update)
    assert result.accepted and result.detail.startswith("HTTP 202")
    (req,) = pd.received
    assert pd.violations == []
    ev = req.json
    assert ev["event_action"] == "trigger" and ev["dedup_key"] == update.incident.fingerprint + "@web-1"
    assert ev["payload"]["severity"] == "critical" and ev["payload"]["source"] == "web-1"
    assert ev["payload"]["custom_details"]["likely_cause"].startswith("More Puma threads")
    assert ev["payload"]["custom_details"]["incident_id"] == update.incident.id


def test_resolve_is_a_bare_resolve_event_with_the_same_dedup_key(tmp_path, target, targets):
    pd = target("pagerduty")
    update = targets.make_update(str(tmp_path / "s"))
    closing = IncidentUpdate(kind="resolve", incident=update.incident, at=update.at)
    assert sink(pd.url).deliver(closing).accepted
    assert pd.received[0].json == {"routing_key": KEY, "event_action": "resolve", "dedup_key": update.incident.fingerprint + "@web-1"}


def test_a_long_title_is_cut_to_the_1024_character_summary_limit(tmp_path, target, targets):
    pd = target("pagerduty")
    update = targets.make_update(str(tmp_path / "s"), targets.make_finding(title="N+1 " * 600))
    assert sink(pd.url).deliver(update).accepted
    assert len(pd.received[0].json["payload"]["summary"]) == 1024 and pd.violations == []


def test_bundle_is_linked_when_a_bundle_url_is_configured(tmp_path, target, targets):
    pd = target("pagerduty")
    update = targets.make_update(str(tmp_path / "s"))
    update.incident.bundle_path = "/var/lib/railwatch/incidents/x/bundle.tar.gz"
    assert sink(pd.url, bundle_url="https://bundles.example.com/{id}.tar.gz").deliver(update).accepted
    assert pd.received[0].json["links"] == [{"href": f"https://bundles.example.com/{update.incident.id}.tar.gz",
                                             "text": "Diagnostic bundle"}]


def test_429_and_5xx_are_retryable_and_retry_after_is_kept(tmp_path, target, targets):
    pd = target("pagerduty")
    update = targets.make_update(str(tmp_path / "s"))
    pd.forced = (429, {"Retry-After": "30"})
    result = sink(pd.url).deliver(update)
    assert (result.status, result.retry_after) == ("retry", 30.0)
    pd.forced = (502, {})
    assert sink(pd.url).deliver(update).status == "retry"
    pd.forced = None
    assert sink(pd.url).deliver(update).accepted


def test_a_refused_event_is_permanent_and_the_error_never_contains_the_routing_key(tmp_path, target, targets):
    pd = target("pagerduty")
    pd.check = lambda req: [f"routing key {req.json['routing_key']} is not active"]
    result = sink(pd.url).deliver(targets.make_update(str(tmp_path / "s")))
    assert result.status == "permanent" and "HTTP 400" in result.detail
    assert KEY not in result.detail


def test_an_unreachable_endpoint_is_retryable_and_names_no_url(tmp_path, targets):
    result = sink("http://127.0.0.1:9").deliver(targets.make_update(str(tmp_path / "s")))
    assert result.status == "retry" and "127.0.0.1" not in result.detail
