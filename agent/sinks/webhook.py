"""Generic webhook: the update as JSON, optionally with the bundle, signed with HMAC-SHA256.

    POST <url>
    Content-Type: application/json                 (or multipart/form-data with attach_bundle)
    X-Railwatch-Event: open|recur|reopen|escalate|resolve|test
    X-Railwatch-Delivery: <update id>              the same on every retry: use it to dedupe
    X-Railwatch-Signature: sha256=<hex>            HMAC-SHA256 of the exact body with the shared secret

Multipart bodies have two parts: ``payload`` (the JSON) and ``bundle`` (bundle.tar.gz,
application/gzip). The multipart body is built here, so the signature covers its
exact bytes, as GitHub's webhooks sign theirs.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from agent.clock import Clock
from agent.incidents.model import IncidentUpdate
from agent.config_values import http_url
from agent.settings import setting
from agent.sinks.base import DEFAULT_TIMEOUT, HTTP_CHECKS, DeliveryResult, HttpSettings, HttpSink, to_json

SIGNATURE_HEADER = "X-Railwatch-Signature"
MAX_ATTACHMENT = 25 * 1024 * 1024  # bigger bundles are linked by path, not attached


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """For receivers (and our tests): constant-time check of ``X-Railwatch-Signature``."""
    return hmac.compare_digest(sign(secret, body), header or "")


@dataclass(frozen=True)
class WebhookSettings(HttpSettings):
    url: str = setting("", required=True, secret=True)
    secret: str = setting("", secret=True)  # HMAC-SHA256 key for X-Railwatch-Signature ("" = unsigned)
    attach_bundle: bool = setting(False)
    headers: Mapping[str, str] = setting({}, secret=True)  # e.g. an Authorization header

    CHECKS = dict(HTTP_CHECKS, url=http_url)


class WebhookSink(HttpSink):
    kind = "webhook"

    @classmethod
    def from_settings(cls, name: str, s: WebhookSettings, session: Any = None, clock: Optional[Clock] = None) -> "WebhookSink":
        return cls(name, s.url, secret=s.secret or None, attach_bundle=s.attach_bundle, headers=s.headers, **s.http(session, clock))

    def __init__(self, name: str, url: str, secret: Optional[str] = None, attach_bundle: bool = False,
                 headers: Optional[Mapping[str, str]] = None, session: Any = None, clock: Optional[Clock] = None,
                 timeout: float = DEFAULT_TIMEOUT, verify: Union[bool, str] = True) -> None:
        super().__init__(name, session=session, clock=clock, timeout=timeout, verify=verify)
        self.url = url
        self.secret = secret
        self.attach_bundle = attach_bundle
        self.headers = dict(headers or {})
        self.secrets += [url, secret or ""] + list(self.headers.values())

    def payload(self, update: IncidentUpdate) -> Dict[str, Any]:
        doc = update.to_dict()
        doc["sent_at"] = self.clock.now()
        return doc

    def deliver(self, update: IncidentUpdate) -> DeliveryResult:
        body = to_json(self.payload(update))
        content_type = "application/json"
        bundle = update.incident.bundle_path
        if self.attach_bundle and bundle and os.path.isfile(bundle) and os.path.getsize(bundle) <= MAX_ATTACHMENT:
            with open(bundle, "rb") as fh:
                body, content_type = multipart(body, fh.read())
        headers = dict(self.headers)
        headers.update({
            "Content-Type": content_type,
            "X-Railwatch-Event": update.kind,
            "X-Railwatch-Delivery": str(update.update_id or update.incident.id),
        })
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return self.post(self.url, body, headers)

    def dry_run(self) -> DeliveryResult:
        return DeliveryResult.ok("configuration valid (webhooks have no harmless endpoint to probe; use test-incident)")


def multipart(payload: bytes, bundle: bytes) -> Tuple[bytes, str]:
    boundary = "railwatch-" + uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n".encode(),
        payload,
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"bundle.tar.gz\"\r\n"
        "Content-Type: application/gzip\r\n\r\n".encode(),
        bundle,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
