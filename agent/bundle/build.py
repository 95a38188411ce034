"""Diagnostic bundles: one ``bundle.tar.gz`` per incident, that an engineer can open and act on.

Layout (everything under ``railwatch-<incident id>/``, every text scrubbed first):

    manifest.json           incident, agent version, host, time window, deploy revision,
                            files (bytes, sha256), what was cut to fit, redactions per kind,
                            errors met while collecting (never fatal)
    triage.md               summary, timeline, evidence, likely cause, containment,
                            prevention, and a post-incident review pre-filled with what is known
    incident.json           the incident record; updates.json its timeline
    evidence/NN-<file>.txt  each evidence line with ±N lines of context from its source
                            (plain, .gz or .bz2), or the line as recorded if the source is gone
    snapshots/processes.json  Puma and Sidekiq processes: pid, threads, RSS, CPU, open TCP
                            connections to Postgres (5432, PgBouncer 6432) and Redis (6379)
    snapshots/host.json     load average, memory, swap, CPUs
    app/REVISION, app/database.yml, app/puma.rb, app/sidekiq.yml   when the app root is known
    agent/config            the agent's configuration

The total size of the files is bounded (``max_bytes``, 10 MB by default, like dd-agent's
flare and gitlabsos): files are added by priority and the first that does not fit is cut
at a line boundary; the manifest says what was cut and by how much. The archive and
its directory are private (0600 / 0700).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from agent import __version__
from agent.bundle.evidence import evidence_files
from agent.bundle.processes import snapshot_processes
from agent.bundle.regression_tests import regression_tests
from agent.bundle.triage_md import render_triage
from agent.clock import Clock
from agent.fsutil import atomic_private, private_dir_below, refuse_symlink, write_private
from agent.incidents.model import Incident, IncidentUpdate
from agent.scrub import Scrubber
from agent.timeparse import to_iso
from detectors.base import AppFacts

APP_FILES = ("REVISION", "config/database.yml", "config/puma.rb", "config/sidekiq.yml")
MAX_CONFIG_BYTES = 1_000_000
TAR_OVERHEAD = 64 * 1024  # tar headers and gzip framing, kept out of the budget


@dataclass(frozen=True)
class BundleSettings:
    max_bytes: int = 10 * 1024 * 1024
    context_lines: int = 5  # lines shown before and after each evidence line
    max_scan_bytes: int = 512 * 1024 * 1024  # stop reading a source for context past this much
    emails: bool = True  # scrub e-mail addresses


def bundle_path(state_dir: str, incident_id: str) -> str:
    return os.path.join(state_dir, "incidents", _safe(incident_id), "bundle.tar.gz")


class BundleBuilder:
    """Builds bundles under ``<state_dir>/incidents/<id>/``; an instance is the lifecycle's ``bundler``."""

    def __init__(
        self,
        state_dir: str,
        clock: Optional[Clock] = None,
        facts: Optional[AppFacts] = None,
        agent_config: Union[None, str, Mapping[str, Any]] = None,
        snapshot: Optional[Callable[[], Dict[str, Any]]] = None,
        settings: Optional[BundleSettings] = None,
        host: Optional[str] = None,
        updates: Optional[Callable[[str], Sequence[IncidentUpdate]]] = None,
        charts: Optional[Callable[[str], Optional[str]]] = None,
    ) -> None:
        self.state_dir = state_dir
        self.clock = clock or Clock()
        self.facts = facts or AppFacts()
        self.agent_config = agent_config
        self.snapshot = snapshot if snapshot is not None else (lambda: snapshot_processes(self.clock))
        self.settings = settings or BundleSettings()
        self.host = host if host is not None else socket.gethostname()
        self.updates = updates  # the store's updates_for, for the timeline
        self.scrubber = Scrubber(emails=self.settings.emails)
        self.charts = charts  # fingerprint -> timeline SVG (scan collects the series; the daemon does not yet)

    def __call__(self, incident: Incident) -> str:
        return self.build(incident)

    def build(self, incident: Incident, updates: Optional[Sequence[IncidentUpdate]] = None) -> str:
        """Write the bundle and return its path."""
        if updates is None and self.updates is not None:
            updates = self.updates(incident.id)
        updates = list(updates or [])
        counts: Dict[str, int] = dict(incident.redactions)
        errors: List[str] = []

        def clean(text: str) -> str:
            out, c = self.scrubber.scrub(text)
            for k, n in c.items():
                counts[k] = counts.get(k, 0) + n
            return out

        def clean_json(obj: Any) -> bytes:
            scrubbed, c = self.scrubber.scrub_obj(obj)
            for k, n in c.items():
                counts[k] = counts.get(k, 0) + n
            return (json.dumps(scrubbed, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")

        evidence = list(incident.finding.get("evidence", []))
        ev_files = evidence_files(evidence, self.settings.context_lines, self.settings.max_scan_bytes, errors)
        snap: Dict[str, Any] = {}
        try:
            snap = self.snapshot() or {}
        except Exception as exc:  # noqa: BLE001 - a snapshot is a bonus; record why it is missing
            errors.append(f"process snapshot failed: {type(exc).__name__}: {exc}")
        errors.extend(str(e) for e in snap.pop("errors", []) if e)
        files: List[Tuple[str, bytes]] = [
            ("triage.md", clean(render_triage(incident, updates, self.facts)).encode("utf-8")),
            ("incident.json", clean_json(incident.to_dict())),
            ("updates.json", clean_json([{"update_id": u.update_id, "kind": u.kind, "at": to_iso(u.at),
                                          "severity": u.incident.severity} for u in updates])),
        ]
        chart = self.charts(incident.fingerprint) if self.charts is not None else None
        if chart:  # right after triage.md: the first picture the engineer sees; also beside the bundle
            files.insert(1, ("timeline.svg", clean(chart).encode("utf-8")))
            beside = os.path.join(private_dir_below(self.state_dir, "incidents", _safe(incident.id)), "timeline.svg")
            refuse_symlink(beside)  # like the bundle: never written through a symlink
            write_private(beside, files[1][1])
        files += [(name, clean(text).encode("utf-8")) for name, text in ev_files]
        files += [(name, clean(text).encode("utf-8")) for name, text in regression_tests(incident, self.facts)]
        if "processes" in snap:
            files.append(("snapshots/processes.json", clean_json(snap["processes"])))
        if "host" in snap:
            files.append(("snapshots/host.json", clean_json(snap["host"])))
        files += [(name, clean(text).encode("utf-8")) for name, text in self._app_files(errors)]
        agent_cfg = self._agent_config(errors)
        if agent_cfg is not None:
            files.append(("agent/config", clean(agent_cfg).encode("utf-8")))
        kept, cut = _fit(files, self.settings.max_bytes - TAR_OVERHEAD)
        manifest = self._manifest(incident, kept, cut, counts, errors, evidence)
        kept.insert(0, ("manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")))
        return self._write(incident.id, kept)

    # ------------------------------------------------------------------ pieces

    def _app_files(self, errors: List[str]) -> List[Tuple[str, str]]:
        root = self.facts.root
        out: List[Tuple[str, str]] = []
        if not root:
            return out
        for rel in APP_FILES:
            path = os.path.join(root, rel)
            if not os.path.exists(path):
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read(MAX_CONFIG_BYTES + 1)
            except OSError as exc:
                errors.append(f"{rel}: cannot read ({exc.strerror or type(exc).__name__})")
                continue
            text = data[:MAX_CONFIG_BYTES].decode("utf-8", "replace")
            if len(data) > MAX_CONFIG_BYTES:
                text += f"\n…[cut at {MAX_CONFIG_BYTES} bytes]\n"
            out.append(("app/" + os.path.basename(rel), text))
        return out

    def _agent_config(self, errors: List[str]) -> Optional[str]:
        cfg = self.agent_config
        if cfg is None:
            return None
        if isinstance(cfg, Mapping):
            return json.dumps(self.scrubber.scrub_obj(dict(cfg))[0], indent=2, default=str) + "\n"
        try:
            with open(cfg, encoding="utf-8", errors="replace") as fh:
                return fh.read(MAX_CONFIG_BYTES)
        except OSError as exc:
            errors.append(f"agent config {os.path.basename(cfg)}: cannot read ({exc.strerror or type(exc).__name__})")
            return None

    def _manifest(self, inc: Incident, kept: List[Tuple[str, bytes]], cut: List[Dict[str, Any]], counts: Dict[str, int],
                  errors: List[str], evidence: List[Dict[str, Any]]) -> Dict[str, Any]:
        facts = self.facts
        return {
            "schema": "railwatch.bundle/v1",
            "incident": {
                "id": inc.id, "fingerprint": inc.fingerprint, "detector": inc.detector, "severity": inc.severity,
                "title": inc.title, "status": inc.status, "subject": inc.subject, "count": inc.count,
                "recurrence": inc.recurrence, "previous_id": inc.previous_id or None,
            },
            "agent": {"name": "railwatch", "version": __version__},
            "host": inc.host or self.host,
            "created_at": to_iso(self.clock.now()),
            "window": {"first_seen": to_iso(inc.first_seen), "last_seen": to_iso(inc.last_seen),
                       "opened_at": to_iso(inc.opened_at), "resolved_at": to_iso(inc.resolved_at)},
            "revision": {"revision": facts.revision or None, "deployed_at": to_iso(facts.revision_time),
                         "app_root": facts.root or None},
            "sources": sorted({str(e.get("path", "")) for e in evidence if e.get("path")}),
            "files": [{"name": n, "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in kept],
            "max_bytes": self.settings.max_bytes,
            "cut": cut,
            "redactions": dict(sorted(counts.items())),
            "errors": [self.scrubber.scrub(e)[0] for e in errors],
        }

    def _write(self, incident_id: str, files: List[Tuple[str, bytes]]) -> str:
        path = bundle_path(self.state_dir, incident_id)
        # incidents/ and incidents/<id>/ are never followed if they are symlinks (refused)
        private_dir_below(self.state_dir, "incidents", _safe(incident_id))
        refuse_symlink(path)
        top = f"railwatch-{_safe(incident_id)}"
        mtime = int(self.clock.now())
        with atomic_private(path) as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for d in sorted({os.path.dirname(n) for n, _ in files if os.path.dirname(n)}):
                    info = tarfile.TarInfo(f"{top}/{d}")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, mtime
                    tar.addfile(info)
                for name, data in files:
                    info = tarfile.TarInfo(f"{top}/{name}")
                    info.size, info.mode, info.mtime = len(data), 0o600, mtime
                    tar.addfile(info, io.BytesIO(data))
        return path


def _fit(files: List[Tuple[str, bytes]], budget: int) -> Tuple[List[Tuple[str, bytes]], List[Dict[str, Any]]]:
    """Keep files in order while they fit; cut the first that does not at a line boundary, drop the rest."""
    kept: List[Tuple[str, bytes]] = []
    cut: List[Dict[str, Any]] = []
    used = 0
    for name, data in files:
        room = budget - used
        if len(data) <= room:
            kept.append((name, data))
            used += len(data)
            continue
        marker = f"\n…[cut: {len(data)} bytes, kept the first part to respect the bundle size limit]\n".encode()
        if room > len(marker) + 1024:
            head = data[: room - len(marker)]
            head = head[: head.rfind(b"\n") + 1] or head
            kept.append((name, head + marker))
            used += len(head) + len(marker)
            cut.append({"file": name, "bytes": len(data), "kept_bytes": len(head), "reason": "size limit"})
        else:
            cut.append({"file": name, "bytes": len(data), "kept_bytes": 0, "reason": "size limit: left out"})
    return kept, cut


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"
