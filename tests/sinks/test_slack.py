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


class SlackApi:
    """Slack's Web API for the external upload flow, on loopback: checks each call as Slack does."""

    def __init__(self, token: str) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        self.token, self.calls, self.uploaded, self.completed = token, [], b"", None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # type: ignore[no-untyped-def]
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.calls.append(self.path)
                if self.path == "/upload/F123":
                    api.uploaded = body
                    return self._answer(200, b"OK - %d" % len(body))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._answer(200, json.dumps({"ok": False, "error": "invalid_auth"}).encode())
                if self.path == "/api/files.getUploadURLExternal":
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    if not form.get("filename", "").endswith(".tar.gz") or not form.get("length", "").isdigit():
                        return self._answer(200, b'{"ok": false, "error": "invalid_arguments"}')
                    api.length = int(form["length"])
                    url = f"http://127.0.0.1:{self.server.server_address[1]}/upload/F123"
                    return self._answer(200, json.dumps({"ok": True, "upload_url": url, "file_id": "F123"}).encode())
                if self.path == "/api/files.completeUploadExternal":
                    api.completed = json.loads(body)
                    return self._answer(200, b'{"ok": true, "files": [{"id": "F123"}]}')
                self._answer(404, b'{"ok": false, "error": "unknown_method"}')

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _with_bundle(update, tmp_path):  # type: ignore[no-untyped-def]
    import io
    import tarfile

    path = tmp_path / "bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b'{"files": []}'
        info = tarfile.TarInfo("railwatch-x/manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    update.incident.bundle_path = str(path)
    return path


def test_with_a_bot_token_the_bundle_is_uploaded_into_the_channel_after_the_message(tmp_path, target, targets):
    slack = target("slack")
    api = SlackApi("xoxb-test-token-1234")
    try:
        update = targets.make_update(str(tmp_path / "s"), targets.make_finding(severity="critical"))
        bundle = _with_bundle(update, tmp_path)
        sink = build_sink("slack", "chat", {"url": slack.url + "/hook", "bot_token": "xoxb-test-token-1234",
                                            "channel_id": "C0123456789", "api_url": api.url})
        assert sink.deliver(update).accepted
        assert slack.received and slack.violations == []  # the message went first
        assert api.calls == ["/api/files.getUploadURLExternal", "/upload/F123", "/api/files.completeUploadExternal"]
        assert api.uploaded == bundle.read_bytes() and api.length == len(api.uploaded)
        assert api.completed["channel_id"] == "C0123456789" and api.completed["files"][0]["id"] == "F123"
    finally:
        api.server.shutdown()
        api.server.server_close()


def test_a_refused_upload_leaves_the_message_delivered_with_its_link_and_the_token_unsaid(tmp_path, target, targets):
    slack = target("slack")
    api = SlackApi("xoxb-the-right-token")
    try:
        update = targets.make_update(str(tmp_path / "s"), targets.make_finding(severity="critical"))
        _with_bundle(update, tmp_path)
        sink = build_sink("slack", "chat", {"url": slack.url + "/hook", "bot_token": "xoxb-a-wrong-token",
                                            "channel_id": "C0123456789", "api_url": api.url})
        result = sink.deliver(update)
        assert result.accepted and "bundle upload failed" in result.detail and "invalid_auth" in result.detail
        assert "xoxb-a-wrong-token" not in result.detail
        assert api.uploaded == b"" and api.completed is None
        assert "bundle" in slack.received[0].json["blocks"][-1]["elements"][0]["text"]  # the fallback: link or host path
    finally:
        api.server.shutdown()
        api.server.server_close()
