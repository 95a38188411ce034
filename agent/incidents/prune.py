"""Disk stays bounded: old incident directories and bundles are pruned, the store is compacted.

    prune(store, incidents_dir, settings, now, dry_run) -> PruneReport

Incident directories (``<state>/incidents/<id>/``: bundle.tar.gz, incident.json, charts) of
incidents that are not open go when older than ``max_age_days``, then oldest first while the
total is over ``max_total_mb``. An OPEN incident's directory (its current bundle) is never
pruned, whatever the limits say. Store rows of incidents resolved longer ago than
``max_age_days`` go too (their updates and delivered outbox rows), except the latest incident
of each fingerprint (recurrence numbering and the cooldown need it) and any incident with an
update still pending. ``vacuum()`` then compacts the SQLite file. Directories are removed
without following symlinks. The daemon runs this hourly (vacuum every ``vacuum_interval_s``);
``railwatch incidents prune [--dry-run]`` runs it by hand.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import List, Set, Tuple

from agent.incidents.store import IncidentStore
from agent.settings import setting

MB = 1024 * 1024
DAY = 86400.0


@dataclass(frozen=True)
class RetentionSettings:
    """``[retention]``: how much incident history stays on the host."""

    max_age_days: float = setting(30.0, above=0.0)  # incidents (not open) older than this are pruned
    max_total_mb: float = setting(1024.0, above=0.0)  # incident directories beyond this, oldest first
    vacuum_interval_s: float = setting(DAY, min=3600.0)  # compact the store this often


@dataclass
class PruneReport:
    removed_dirs: List[str] = field(default_factory=list)
    freed_bytes: int = 0
    removed_incidents: int = 0
    kept_bytes: int = 0

    def summary(self, dry_run: bool = False) -> str:
        verb = "would remove" if dry_run else "removed"
        return (f"{verb} {len(self.removed_dirs)} incident director(ies), {self.freed_bytes / MB:.1f} MB, "
                f"and {self.removed_incidents} old incident record(s); {self.kept_bytes / MB:.1f} MB kept")


def _size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk does not follow symlinked directories
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _dirs(incidents_dir: str, protected: Set[str]) -> Tuple[List[Tuple[float, int, str]], int]:
    """(mtime, bytes, path) of prunable incident directories, oldest first; and the bytes of protected ones."""
    out, kept = [], 0
    try:
        names = os.listdir(incidents_dir)
    except FileNotFoundError:
        return [], 0
    for name in names:
        path = os.path.join(incidents_dir, name)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):  # a symlink or a stray file: never ours to delete
            continue
        size = _size(path)
        if name in protected:
            kept += size
        else:
            out.append((st.st_mtime, size, path))
    return sorted(out), kept


def prune(store: IncidentStore, incidents_dir: str, settings: RetentionSettings, now: float,
          dry_run: bool = False) -> PruneReport:
    report = PruneReport()
    protected = {_safe(i.id) for i in store.open_incidents()} | {i.id for i in store.open_incidents()}
    candidates, report.kept_bytes = _dirs(incidents_dir, protected)
    cutoff = now - settings.max_age_days * DAY
    total = report.kept_bytes + sum(size for _, size, _ in candidates)
    limit = settings.max_total_mb * MB
    for mtime, size, path in candidates:
        if mtime < cutoff or total > limit:
            report.removed_dirs.append(path)
            report.freed_bytes += size
            total -= size
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
        else:
            report.kept_bytes += size
    report.removed_incidents = store.delete_resolved_before(cutoff, dry_run=dry_run)
    return report


def _safe(incident_id: str) -> str:  # as agent.sinks.directory names an incident's directory
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in incident_id).lstrip(".") or "_"
