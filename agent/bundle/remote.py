"""The bundle store: each bundle (and each refresh of it) uploaded to S3-compatible storage,
and an expiring pre-signed GET link for the sinks' payloads.

    [bundle_store]  type = "s3", endpoint_url, region, bucket, prefix, access_key_id,
                    secret_access_key | secret_access_key_file, link_expiry_s, server_side_encryption

Works with AWS S3, GCS's S3 interface, Cloudflare R2, MinIO, SeaweedFS. The client is
``minio`` (optional extra ``railwatch[s3]``): pure Python over urllib3, ~22 MB installed
with its dependencies and +17 MB RSS against boto3's ~37 MB and +36 MB (README).

Object key: ``<prefix>/<host>/<incident id>/<sha256[:12]>.tar.gz`` — no secret in it (the
incident id is the fingerprint and recurrence; the host is a name, not a credential); a
refreshed bundle has new content, so a new key, and an upload that is retried after a
crash lands on the same key (exactly once in effect). The upload goes through the outbox
as if it were a sink named ``bundle_store`` (retried, survives restarts); ``Deliverer``
records the key when it lands and signs a link for every payload sent after that.

Credentials, first found wins: ``access_key_id`` with ``secret_access_key`` or
``secret_access_key_file``; the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN); ~/.aws/credentials; the instance role (EC2 IMDS / ECS / web identity).
They are never logged: errors name the S3 error code, not the request.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from agent.settings import setting

log = logging.getLogger("railwatch.bundle_store")

NAME = "bundle_store"  # its outbox rows go under this sink name
MAX_LINK_EXPIRY = 7 * 86400  # SigV4 pre-signed URLs live at most 7 days
AUTH_ERRORS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")


def _endpoint_problem(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return "expected http(s)://host[:port] with no path"
    return ""


@dataclass(frozen=True)
class BundleStoreSettings:
    """``[bundle_store]``: where bundles are uploaded so pages can link them."""

    type: str = setting("", choices=("", "s3"))  # "" = bundles stay on the host
    endpoint_url: str = setting("")  # "" = AWS S3 in region; e.g. https://<account>.r2.cloudflarestorage.com
    region: str = setting("us-east-1")
    bucket: str = setting("")
    prefix: str = setting("railwatch")  # keys are <prefix>/<host>/<incident id>/<sha256[:12]>.tar.gz
    access_key_id: str = setting("", secret=True)  # "" = environment, ~/.aws/credentials, instance role
    secret_access_key: str = setting("", secret=True)
    secret_access_key_file: str = setting("")  # a file holding the secret key (better than inline)
    link_expiry_s: float = setting(86400.0, min=1.0, max=float(MAX_LINK_EXPIRY))  # how long a link in a page works
    server_side_encryption: str = setting("", choices=("", "AES256", "aws:kms"))
    kms_key_id: str = setting("")  # with aws:kms; "" = the bucket's default key
    hold_pages_s: float = setting(10.0, min=0.0, max=60.0)  # a page waits at most this long for its bundle's link
    timeout_s: float = setting(30.0, above=0.0, was=("timeout",))  # per request
    ca_file: str = setting("")  # extra trust roots for a private endpoint

    CHECKS = {"endpoint_url": _endpoint_problem}

    def problems(self) -> Dict[str, str]:
        out = {}
        if self.type and not self.bucket:
            out["bucket"] = "required"
        if self.secret_access_key and self.secret_access_key_file:
            out["secret_access_key_file"] = "give the secret key inline or in a file, not both"
        if self.secret_access_key_file and not os.path.isfile(self.secret_access_key_file):
            out["secret_access_key_file"] = "no such file"
        if (self.secret_access_key or self.secret_access_key_file) and not self.access_key_id:
            out["access_key_id"] = "required with a secret key"
        return out


class BundleStore:
    """Uploads bundles and signs links; a sink-like ``deliver`` for the outbox."""

    kind = "bundle_store"
    refresh_interval = None

    def __init__(self, settings: BundleStoreSettings, client: Any = None, name: str = NAME,
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.settings = settings
        self.name = name
        self.hold_s = settings.hold_pages_s
        self.problem = ""  # the last credential/bucket problem, for /healthz; "" when fine
        self._environ = dict(os.environ if environ is None else environ)
        self._client = client

    # ------------------------------------------------------------------ the client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import urllib3
        from minio import Minio

        s = self.settings
        parts = urlsplit(s.endpoint_url or "https://s3.amazonaws.com")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(10.0, s.timeout_s), read=s.timeout_s),
            retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=()),  # the outbox retries
            cert_reqs="CERT_REQUIRED", ca_certs=s.ca_file or _default_ca(),
        )
        return Minio(parts.netloc, secure=parts.scheme == "https", region=s.region or None,
                     credentials=self._credentials(), http_client=http)

    def _credentials(self) -> Any:
        from minio.credentials import (
            AWSConfigProvider, ChainedProvider, EnvAWSProvider, IamAwsProvider, StaticProvider,
        )

        s = self.settings
        secret = s.secret_access_key
        if s.secret_access_key_file:
            with open(s.secret_access_key_file, encoding="utf-8") as fh:
                secret = fh.read().strip()
        if s.access_key_id and secret:
            return StaticProvider(s.access_key_id, secret, self._environ.get("AWS_SESSION_TOKEN") or None)
        env = self._environ
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return StaticProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN") or None)
        return ChainedProvider([EnvAWSProvider(), AWSConfigProvider(), IamAwsProvider()])

    def _sse(self) -> Any:
        from minio.sse import SseKMS, SseS3

        s = self.settings
        if s.server_side_encryption == "AES256":
            return SseS3()
        if s.server_side_encryption == "aws:kms":
            return SseKMS(s.kms_key_id, {}) if s.kms_key_id else _SseKmsDefault()
        return None

    # ------------------------------------------------------------------ keys and links

    def key_for(self, incident: Any, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()[:12]
        parts = [p for p in self.settings.prefix.strip("/").split("/") if p]
        parts += [_safe(incident.host or "host"), _safe(incident.id), f"{digest}.tar.gz"]
        return "/".join(parts)

    def presign(self, key: str) -> str:
        """A GET link that works for ``link_expiry_s`` (signed locally: no request is made)."""
        return str(self.client.presigned_get_object(
            self.settings.bucket, key, expires=datetime.timedelta(seconds=int(self.settings.link_expiry_s))))

    # ------------------------------------------------------------------ the outbox side

    def deliver(self, update: Any) -> Any:
        """Upload the update's bundle (if it has one and it is not there yet); detail = the key."""
        from agent.sinks.base import DeliveryResult

        path = update.incident.bundle_path
        if not path or not os.path.isfile(path):
            return DeliveryResult.ok("")
        with open(path, "rb") as fh:  # read once: hashed and sent as the same bytes
            data = fh.read()
        key = self.key_for(update.incident, data)
        try:
            if not self._exists(key):
                self.client.put_object(self.settings.bucket, key, io.BytesIO(data), len(data),
                                       content_type="application/gzip", sse=self._sse())
        except Exception as exc:  # noqa: BLE001 - any failure is retried by the outbox
            return DeliveryResult.retry(self._failed(exc))
        self.problem = ""
        return DeliveryResult.ok(key)

    def _exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.settings.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise

    def _failed(self, exc: Exception) -> str:
        code = getattr(exc, "code", "") or type(exc).__name__
        detail = f"upload failed: {code}"
        if code in AUTH_ERRORS:
            self.problem = f"credentials refused by the bucket ({code})"
        elif code == "NoSuchBucket":
            self.problem = f"bucket {self.settings.bucket!r} does not exist"
        return detail

    def check(self) -> Any:
        """Credentials and bucket, with one harmless request (``doctor``, start-up)."""
        from agent.sinks.base import DeliveryResult

        try:
            found = self.client.bucket_exists(self.settings.bucket)
        except Exception as exc:  # noqa: BLE001
            detail = self._failed(exc).replace("upload failed", "cannot reach the bucket")
            return DeliveryResult.permanent(self.problem or detail)
        if not found:
            self.problem = f"bucket {self.settings.bucket!r} does not exist"
            return DeliveryResult.permanent(self.problem)
        self.problem = ""
        return DeliveryResult.ok(f"bucket {self.settings.bucket!r} reachable; links valid {self.settings.link_expiry_s:.0f} s")

    def dry_run(self) -> Any:
        return self.check()


class _SseKmsDefault:
    """aws:kms with the bucket's default key (minio's SseKMS insists on a key id)."""

    def headers(self) -> Dict[str, str]:
        return {"X-Amz-Server-Side-Encryption": "aws:kms"}

    def tls_required(self) -> bool:
        return True


def _default_ca() -> Optional[str]:
    try:
        import certifi
    except ImportError:  # urllib3 then uses the system's trust store
        return None
    return str(certifi.where())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:200] or "_"


def make_bundle_store(settings: BundleStoreSettings) -> Optional[BundleStore]:
    return BundleStore(settings) if settings.type == "s3" else None
