"""Webhook sink: JSON or multipart with the bundle, HMAC-SHA256 signature over the exact body."""
from __future__ import annotations

from agent.bundle import BundleBuilder
from agent.sinks import build_sink
from agent.sinks.webhook import sign, verify_signature
from agent.testing import FakeClock


def test_json_delivery_is_signed_and_carries_the_update(tmp_path, target, targets):
    hook = target("webhook", secret="FAKEshared")
    update = targets.make_update(str(tmp_path / "s"))
    sink = build_sink("webhook", "hook", {"url": hook.url + "/in", "secret": "FAKEshared", "headers": {"X-Team": "web"}})
    assert sink.deliver(update).accepted
    assert hook.violations == []
    (req,) = hook.received
    assert req.headers["x-railwatch-signature"] == sign("FAKEshared", req.body)
    assert req.headers["x-railwatch-delivery"] == str(update.update_id) and req.headers["x-team"] == "web"
    assert req.json["incident"]["id"] == update.incident.id and req.json["kind"] == "open"


def test_a_signature_does_not_verify_with_another_secret_or_a_changed_body():
    body = b'{"kind":"open"}'
    header = sign("one", body)
    assert verify_signature("one", body, header)
    assert not verify_signature("two", body, header)
    assert not verify_signature("one", body + b" ", header)


def test_multipart_delivery_attaches_the_bundle_and_signs_the_whole_body(tmp_path, target, targets):
    hook = target("webhook", secret="FAKEshared")
    clock = FakeClock()
    update = targets.make_update(str(tmp_path / "s"), clock=clock)
    update.incident.bundle_path = BundleBuilder(str(tmp_path / "s"), clock, snapshot=lambda: {}).build(update.incident)
    sink = build_sink("webhook", "hook", {"url": hook.url, "secret": "FAKEshared", "attach_bundle": True})
    assert sink.deliver(update).accepted
    assert hook.violations == []
    (req,) = hook.received
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert req.parts["bundle"][:2] == b"\x1f\x8b" and req.json["incident"]["id"] == update.incident.id


def test_without_a_secret_there_is_no_signature_header(tmp_path, target, targets):
    hook = target("webhook")
    assert build_sink("webhook", "hook", {"url": hook.url}).deliver(targets.make_update(str(tmp_path / "s"))).accepted
    assert "x-railwatch-signature" not in hook.received[0].headers
