"""Slack incoming webhook: a short, readable message with Block Kit sections.

    POST <webhook url>  {"text": <fallback>, "blocks": [header, section…, context]}  -> 200 "ok"

Limits respected (api.slack.com): at most 50 blocks, a header's plain text at most 150
characters, a section's text at most 3000. Webhooks cannot upload files: the bundle is
linked (the bundle store's pre-signed link, ``bundle_url``) or named by host and path.

With a bot token (``bot_token``, scope ``files:write``) and ``channel_id``, a new or
escalated incident's bundle is also uploaded into the channel with Slack's external
upload API, after the message (the page never waits for it):

    POST {api}/files.getUploadURLExternal  filename, length      -> upload_url, file_id
    POST upload_url                        the bundle's bytes    -> 200
    POST {api}/files.completeUploadExternal {"files": [{"id", "title"}], "channel_id", "initial_comment"}

An upload that fails is logged and the message's link (or host path) stands in for it:
the message was delivered, so the update is not retried for the file. The webhook URL and
the token are secrets, never logged or echoed.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from agent.clock import Clock
from agent.incidents.model import IncidentUpdate
from agent.config_values import http_url
from agent.settings import setting
from agent.sinks.base import (
    DEFAULT_TIMEOUT, HTTP_CHECKS, HttpSettings, DeliveryResult, HttpSink, bundle_link, headline, recurrence_note, subject_text, triage,
)
from agent.timeparse import to_iso

log = logging.getLogger("railwatch.sinks.slack")

MAX_HEADER = 150
MAX_UPLOAD = 50 << 20  # a bundle is at most 10 MB by default; Slack accepts far more
SLACK_API = "https://slack.com/api"
MAX_SECTION = 3000
MAX_EVIDENCE = 3
ICONS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "resolve": ":white_check_mark:", "test": ":test_tube:"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str) -> str:
    return "```" + text.replace("```", "'''") + "```"


@dataclass(frozen=True)
class SlackSettings(HttpSettings):
    url: str = setting("", required=True, secret=True)  # the incoming webhook URL is the credential
    bundle_url: str = setting("")  # template: {id}, {fingerprint}, {host}
    mention: str = setting("")  # e.g. "<!here>" on critical triggers
    bot_token: str = setting("", secret=True)  # xoxb-… with files:write: upload the bundle into channel_id
    channel_id: str = setting("")  # C0123456789: where the bundle is uploaded (with bot_token)
    api_url: str = setting(SLACK_API)  # Slack's Web API base (a test double in tests)

    CHECKS = dict(HTTP_CHECKS, url=http_url, api_url=http_url)


class SlackSink(HttpSink):
    kind = "slack"

    @classmethod
    def from_settings(cls, name: str, s: SlackSettings, session: Any = None, clock: Optional[Clock] = None) -> "SlackSink":
        return cls(name, s.url, bundle_url=s.bundle_url or None, mention=s.mention or None, bot_token=s.bot_token,
                   channel_id=s.channel_id, api_url=s.api_url, **s.http(session, clock))

    def __init__(self, name: str, url: str, bundle_url: Optional[str] = None, mention: Optional[str] = None,
                 session: Any = None, clock: Optional[Clock] = None, timeout: float = DEFAULT_TIMEOUT,
                 verify: Union[bool, str] = True, bot_token: str = "", channel_id: str = "", api_url: str = SLACK_API) -> None:
        super().__init__(name, session=session, clock=clock, timeout=timeout, verify=verify)
        self.url = url
        self.secrets += [url] + [p for p in url.split("/")[3:] if len(p) >= 8]  # the webhook URL is the credential
        self.bundle_url = bundle_url
        self.mention = mention  # e.g. "<!here>" on critical triggers
        self.bot_token, self.channel_id, self.api_url = bot_token, channel_id, api_url.rstrip("/")
        if bot_token:
            self.secrets.append(bot_token)

    def message(self, update: IncidentUpdate) -> Dict[str, Any]:
        inc = update.incident
        icon = ICONS["resolve"] if update.kind == "resolve" else ICONS["test"] if inc.test else ICONS.get(inc.severity, "")
        title = headline(update)
        t = triage(inc)
        blocks: List[Dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(title, MAX_HEADER), "emoji": True}},
        ]
        facts = [
            f"*Detector:* `{inc.detector}`",
            f"*Where:* {subject_text(inc) or '-'}",
            f"*When:* {to_iso(inc.first_seen)} → {to_iso(inc.last_seen)} ({inc.count} occurrence(s))",
            f"*Host:* {inc.host}",
        ]
        if update.kind == "resolve":
            facts.append(f"*Resolved:* {to_iso(inc.resolved_at)} ({inc.resolved_reason or 'quiet'})")
        note = recurrence_note(inc)
        if note:
            facts.append(f"*History:* {note}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(facts), MAX_SECTION)}})
        if update.kind != "resolve":
            text = t.get("summary", "")
            if t.get("likely_cause"):
                text += f"\n*Likely cause:* {t['likely_cause']}"
            if text.strip():
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION)}})
            if t.get("containment"):
                steps = "\n".join(f"{i}. {s}" for i, s in enumerate(t["containment"][:8], 1))
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("*Contain now:*\n" + steps, MAX_SECTION)}})
            evidence = list(inc.finding.get("evidence", []))[:MAX_EVIDENCE]
            if evidence:
                lines = "\n".join(_cut(f"{e.get('path')}:{e.get('line')}  {e.get('text', '')}", 800) for e in evidence)
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(_code(lines), MAX_SECTION)}})
        link = bundle_link(inc, self.bundle_url)
        where = f"<{link}|diagnostic bundle>" if link else (f"bundle: `{inc.host}:{inc.bundle_path}`" if inc.bundle_path else "")
        context = " · ".join(x for x in (f"railwatch incident `{inc.id}`", where) if x)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context, MAX_SECTION)}]})
        prefix = f"{self.mention} " if self.mention and update.firing and inc.severity == "critical" and not inc.test else ""
        return {"text": _cut(f"{prefix}{icon} {title}".strip(), MAX_SECTION), "blocks": blocks[:50]}

    def deliver(self, update: IncidentUpdate) -> DeliveryResult:
        result = self.post_json(self.url, self.message(update))
        if result.accepted and self.bot_token and self.channel_id and update.firing and not update.incident.test:
            problem = self.upload_bundle(update)
            if problem:
                log.warning("slack sink %s: bundle upload failed (%s); the message links it instead", self.name, problem)
                result.detail = f"{result.detail}; bundle upload failed: {problem}".lstrip("; ")
        return result

    def upload_bundle(self, update: IncidentUpdate) -> str:
        """Upload the incident's bundle into ``channel_id``; "" when done, else what went wrong."""
        path = update.incident.bundle_path
        if not path or not os.path.isfile(path):
            return "no bundle on disk yet"
        size = os.path.getsize(path)
        if size > MAX_UPLOAD:
            return f"bundle of {size} bytes is over {MAX_UPLOAD} bytes"
        auth = {"Authorization": f"Bearer {self.bot_token}"}
        name = f"railwatch-{update.incident.id}.tar.gz"
        step = self._call("files.getUploadURLExternal", auth, data={"filename": name, "length": str(size)})
        if isinstance(step, str):
            return step
        with open(path, "rb") as fh:
            sent = self.post(step["upload_url"], fh.read(), {"Content-Type": "application/octet-stream"})
        if not sent.accepted:
            return f"upload: {sent.detail}"
        done = self._call("files.completeUploadExternal", auth, json_body={
            "files": [{"id": step["file_id"], "title": f"railwatch diagnostic bundle: {headline(update)}"[:250]}],
            "channel_id": self.channel_id,
            "initial_comment": f"Diagnostic bundle for railwatch incident `{update.incident.id}`",
        })
        return done if isinstance(done, str) else ""

    def _call(self, method: str, auth: Dict[str, str], data: Optional[Dict[str, str]] = None,
              json_body: Optional[Dict[str, Any]] = None) -> Union[str, Dict[str, Any]]:
        """One Web API call: its JSON on ``"ok": true``, else a one-line reason (token masked)."""
        import requests

        try:
            r = self.session.post(f"{self.api_url}/{method}", data=data, json=json_body, headers=auth,
                                  timeout=self.timeout, verify=self.verify, allow_redirects=False)
            body = r.json()
        except (requests.exceptions.RequestException, ValueError) as exc:
            return self.mask(f"{method}: {type(exc).__name__}")
        if r.status_code != 200 or not isinstance(body, dict) or not body.get("ok"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            return self.mask(f"{method}: HTTP {r.status_code} {error}".strip())
        return body

    def dry_run(self) -> DeliveryResult:
        return DeliveryResult.ok("configuration valid (a webhook cannot be probed without posting; use test-incident)")
