"""Slack incoming-webhook sink against a loopback server that checks Block Kit limits."""
from __future__ import annotations

from agent.incidents.model import IncidentUpdate
from agent.sinks import build_sink


def test_a_trigger_is_a_readable_message_within_block_kit_limits(tmp_path, target, targets):
    slack = target("slack")
    finding = targets.make_finding(severity="critical", title="Pool exhausted " + "x" * 400)
    update = targets.make_update(str(tmp_path / "s"), finding)
    sink = build_sink("slack", "chat", {"url": slack.url + "/services/T0/B0/secretpart", "mention": "<!here>"})
    assert sink.deliver(update).accepted
    assert slack.violations == []
    msg = slack.received[0].json
    assert msg["text"].startswith("<!here> :red_circle: [CRITICAL] Pool exhausted")
    body = "\n".join(b["text"]["text"] for b in msg["blocks"] if b["type"] == "section")
    assert "*Likely cause:* More Puma threads" in body and "1. Restart the web workers" in body
    assert "ConnectionTimeoutError" in body  # the evidence line, as code


def test_a_resolve_says_resolved_and_does_not_mention_anyone(tmp_path, target, targets):
    slack = target("slack")
    update = targets.make_update(str(tmp_path / "s"), targets.make_finding(severity="critical"))
    update.incident.status, update.incident.resolved_at, update.incident.resolved_reason = "resolved", update.at + 60, "quiet"
    sink = build_sink("slack", "chat", {"url": slack.url + "/hook", "mention": "<!here>"})
    assert sink.deliver(IncidentUpdate(kind="resolve", incident=update.incident, at=update.at + 60)).accepted
    msg = slack.received[0].json
    assert msg["text"].startswith(":white_check_mark: RESOLVED:") and "<!here>" not in msg["text"]
    assert slack.violations == []


def test_a_gone_webhook_is_permanent_and_its_url_never_appears_in_the_error(tmp_path, target, targets):
    slack = target("slack")
    url = slack.url + "/services/TFAKE/BFAKE/FAKEsecretHOOKpart"
    slack.check = lambda req: [f"no_service for {url}"]
    result = build_sink("slack", "chat", {"url": url}).deliver(targets.make_update(str(tmp_path / "s")))
    assert result.status == "permanent"
    assert "FAKEsecretHOOKpart" not in result.detail and url not in result.detail
