#!/usr/bin/env python3
"""Build a wheelhouse for an offline install: railwatch's wheel plus every dependency's.

    python3 packaging/wheelhouse.py --out dist/wheels [--extras redis,postgres] [--download]

railwatch's own wheel is built from the source tree (``pip wheel --no-deps``). Each
dependency (resolved from railwatch's requirements, recursively, with their environment
markers) is taken from the running interpreter's site-packages: an installed
distribution is packed back into a wheel from its ``RECORD`` (the files pip installed,
byte for byte, with the original ``WHEEL`` tags), so no network is needed. A dependency
that is not installed, or was installed without a RECORD, is fetched with
``pip download`` (binary wheels only) unless ``--offline``.

The wheels fit the interpreter that runs this script (same Python minor version and
platform): build the wheelhouse with the Python the server will use.
Then: ``install.sh --wheel dist/wheels/railwatch-*.whl --wheel-dir dist/wheels``.
"""
from __future__ import annotations

import argparse
import base64
import csv
import email
import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from typing import Dict, List, Optional, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
SKIPPED_DIST_INFO = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def _requirement_parser():  # type: ignore[no-untyped-def]
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requires: List[str], extras: List[str]) -> Tuple[Dict[str, str], List[str]]:
    """Installed distributions that ``requires`` (with ``extras``) need here: {name: version}, and the missing ones."""
    Requirement = _requirement_parser()
    found: Dict[str, str] = {}
    missing: List[str] = []
    queue: List[Tuple[str, Tuple[str, ...]]] = [(r, tuple(extras)) for r in requires]
    seen: Set[Tuple[str, Tuple[str, ...]]] = set()
    while queue:
        text, wanted = queue.pop()
        req = Requirement(text)
        envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
        if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
            continue
        key = (canonical(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
            continue
        found[canonical(req.name)] = dist.version
        queue.extend((sub, key[1]) for sub in dist.requires or [])
    return found, sorted(set(missing))


def wheel_requires(path: str) -> List[str]:
    """``Requires-Dist`` of a wheel file."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(name))
    return list(meta.get_all("Requires-Dist") or [])


def wheel_tag(wheel_text: str) -> str:
    """The file-name tag of a WHEEL file's ``Tag:`` lines (compressed when they form a product)."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    if not tags:
        return "py3-none-any"
    parts = [t.split("-") for t in tags]
    pys, abis, plats = (sorted({p[i] for p in parts}) for i in range(3))
    if len(pys) * len(abis) * len(plats) == len(set(tags)):
        return "-".join(".".join(x) for x in (pys, abis, plats))
    return tags[0]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(name: str, out_dir: str) -> Optional[str]:
    """Pack an installed distribution back into a wheel in ``out_dir``; None if it cannot be."""
    dist = metadata.distribution(name)
    files = dist.files
    info_dir = next((str(f).split("/")[0] for f in files or [] if str(f).split("/")[0].endswith(".dist-info")), None)
    if not files or info_dir is None or dist.read_text("WHEEL") is None:
        return None  # egg-info or editable installs have no RECORD/WHEEL to go by
    if dist.read_text("direct_url.json") and '"editable": true' in (dist.read_text("direct_url.json") or ""):
        return None
    base = str(dist.locate_file(""))
    entries: List[Tuple[str, bytes]] = []
    for f in files:
        rel = str(f)
        top = rel.split("/")[0]
        if rel.startswith("..") or "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
            continue  # console scripts are regenerated from entry_points.txt; bytecode on install
        if top.endswith(".dist-info") and rel.split("/")[-1] in SKIPPED_DIST_INFO and rel.count("/") == 1:
            continue
        if top.endswith(".data"):
            return None  # scripts/headers/data outside site-packages: leave it to pip download
        with open(os.path.join(base, rel), "rb") as fh:
            entries.append((rel, fh.read()))
    dist_name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    tag = wheel_tag(dist.read_text("WHEEL") or "")
    path = os.path.join(out_dir, f"{dist_name}-{dist.version}-{tag}.whl")
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in entries:
            zf.writestr(rel, data)
            writer.writerow([rel, _record_hash(data), len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        zf.writestr(f"{info_dir}/RECORD", record.getvalue())
    return path


def build_own_wheel(out_dir: str, source: str = SOURCE) -> str:
    """railwatch's wheel, built from a copy of the tree (setuptools leaves build/ behind)."""
    for old in glob.glob(os.path.join(out_dir, "railwatch-*.whl")):
        os.unlink(old)
    with tempfile.TemporaryDirectory(prefix="railwatch-wheel-") as tmp:
        tree = os.path.join(tmp, "src")
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns(
            ".git", "tests", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "packaging"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out_dir, tree]
        # without setuptools+wheel here, let pip fetch them for an isolated build
        if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run([a for a in cmd if a != "--no-build-isolation"], check=True)
    built = glob.glob(os.path.join(out_dir, "railwatch-*.whl"))
    if len(built) != 1:
        raise SystemExit(f"wheelhouse: expected one railwatch wheel in {out_dir}, found {built}")
    return built[0]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for the wheels (created)")
    ap.add_argument("--extras", default="", help="comma list of railwatch extras to include (redis,postgres)")
    ap.add_argument("--source", default=SOURCE, help="railwatch source tree (default: this checkout)")
    ap.add_argument("--offline", action="store_true", help="never download: fail if a dependency is not installed here")
    ap.add_argument("--no-own-wheel", action="store_true", help="only the dependencies")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    if args.no_own_wheel:
        requires = list(metadata.distribution("railwatch").requires or [])
    else:
        own = build_own_wheel(args.out, args.source)
        print(f"wheelhouse: {os.path.basename(own)}")
        requires = wheel_requires(own)
    found, missing = closure(requires, extras)
    download: List[str] = list(missing)
    for name, version in sorted(found.items()):
        path = repack(name, args.out)
        if path is None:
            download.append(f"{name}=={version}")
        else:
            print(f"wheelhouse: {os.path.basename(path)} (from the installed copy)")
    if download:
        if args.offline:
            print(f"wheelhouse: not installed here and --offline: {', '.join(download)}", file=sys.stderr)
            return 1
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "-d", args.out] + download, check=True)
        print(f"wheelhouse: downloaded {', '.join(download)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
