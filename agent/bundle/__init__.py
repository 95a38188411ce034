"""Diagnostic bundles, one ``bundle.tar.gz`` per incident (layout in ``agent.bundle.build``).

``build`` assembles, bounds and writes the archive; ``evidence``, ``triage_md`` and
``processes`` make its parts.
"""
from __future__ import annotations

from agent.bundle.build import BundleBuilder, BundleSettings, bundle_path
from agent.bundle.processes import snapshot_processes

__all__ = ["BundleBuilder", "BundleSettings", "bundle_path", "snapshot_processes"]
