"""The default sink: incidents as files under a directory.

    <path>/<incident id>/incident.json     the latest update (railwatch.incident/v1) plus history
    <path>/<incident id>/bundle.tar.gz     the diagnostic bundle (copied if built elsewhere)

Each file is written to a temporary name in the same directory and ``os.replace``d, so
a reader never sees half a file. Directories are 0700, files 0600.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from agent.clock import Clock
from agent.fsutil import copy_private, private_dir, write_private
from agent.incidents.model import IncidentUpdate
from agent.settings import setting
from agent.sinks.base import DeliveryResult


@dataclass(frozen=True)
class DirectorySettings:
    path: str = setting("")  # "" = <state dir>/incidents


class DirectorySink:
    kind = "directory"
    # incident.json is rewritten this often while the incident is open, so the file on disk
    # shows the current count and last-seen time, not those of the opening update
    refresh_interval: Optional[float] = 10.0

    def __init__(self, name: str, path: str, clock: Optional[Clock] = None) -> None:
        self.name = name
        self.path = path
        self.clock = clock or Clock()

    def incident_dir(self, incident_id: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in incident_id).lstrip(".") or "_"
        return os.path.join(self.path, safe)

    def deliver(self, update: IncidentUpdate) -> DeliveryResult:
        where = self.incident_dir(update.incident.id)
        try:
            private_dir(where)
            target = os.path.join(where, "incident.json")
            history = _history(target)
            doc = update.to_dict()
            history = [h for h in history if h.get("update_id") != update.update_id or not update.update_id]
            history.append({"update_id": update.update_id, "kind": update.kind, "at": update.at, "severity": update.incident.severity})
            doc["history"] = history
            write_private(target, (json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))
            bundle = update.incident.bundle_path
            dest = os.path.join(where, "bundle.tar.gz")
            if bundle and os.path.isfile(bundle) and os.path.abspath(bundle) != os.path.abspath(dest) and not _same_file(bundle, dest):
                copy_private(bundle, dest)
            chart = os.path.join(os.path.dirname(bundle), "timeline.svg") if bundle else ""
            if chart and os.path.isfile(chart) and not _same_file(chart, os.path.join(where, "timeline.svg")):
                copy_private(chart, os.path.join(where, "timeline.svg"))
        except OSError as exc:
            # a full or read-only disk may recover; keep the row pending
            return DeliveryResult.retry(f"cannot write under the sink directory: {exc.strerror or type(exc).__name__}")
        return DeliveryResult.ok(where)

    def dry_run(self) -> DeliveryResult:
        try:
            private_dir(self.path)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".probe-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            return DeliveryResult.permanent(f"{self.path}: not writable ({exc.strerror or type(exc).__name__})")
        return DeliveryResult.ok(f"{self.path} is writable")


def _same_file(a: str, b: str) -> bool:
    """Is ``b`` already a copy of ``a`` (same size, not older)? Refreshes skip the copy then."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return sa.st_size == sb.st_size and sb.st_mtime >= sa.st_mtime


def _history(path: str) -> List[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        history = data.get("history", [])
        return history if isinstance(history, list) else []
    except (OSError, ValueError):
        return []


