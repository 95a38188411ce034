"""Slack incoming webhook: a short, readable message with Block Kit sections.

    POST <webhook url>  {"text": <fallback>, "blocks": [header, section…, context]}  -> 200 "ok"

Limits respected (api.slack.com): at most 50 blocks, a header's plain text at most 150
characters, a section's text at most 3000. Webhooks cannot upload files: the bundle is
linked (``bundle_url``) or named by host and path. The webhook URL is the secret; it is
never logged or echoed.
"""
from __future__ import annotations

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

MAX_HEADER = 150
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

    CHECKS = dict(HTTP_CHECKS, url=http_url)


class SlackSink(HttpSink):
    kind = "slack"

    @classmethod
    def from_settings(cls, name: str, s: SlackSettings, session: Any = None, clock: Optional[Clock] = None) -> "SlackSink":
        return cls(name, s.url, bundle_url=s.bundle_url or None, mention=s.mention or None, **s.http(session, clock))

    def __init__(self, name: str, url: str, bundle_url: Optional[str] = None, mention: Optional[str] = None,
                 session: Any = None, clock: Optional[Clock] = None, timeout: float = DEFAULT_TIMEOUT,
                 verify: Union[bool, str] = True) -> None:
        super().__init__(name, session=session, clock=clock, timeout=timeout, verify=verify)
        self.url = url
        self.secrets += [url] + [p for p in url.split("/")[3:] if len(p) >= 8]  # the webhook URL is the credential
        self.bundle_url = bundle_url
        self.mention = mention  # e.g. "<!here>" on critical triggers

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
        return self.post_json(self.url, self.message(update))

    def dry_run(self) -> DeliveryResult:
        return DeliveryResult.ok("configuration valid (a webhook cannot be probed without posting; use test-incident)")
