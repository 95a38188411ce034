"""Fixtures for the packaging tests: a wheelhouse built once per session from this tree and the
running interpreter's installed dependencies (packaging/wheelhouse.py: no network), a small app
directory with a real log, and helpers to run the installed agent."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pytest
from support import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
INSTALL = PACKAGING / "install.sh"
# real Rails lines of the reference app (tests/fixtures/logs/e2e/PROVENANCE.md)
RAILS_LOG = REPO / "tests" / "fixtures" / "logs" / "e2e" / "info" / "production.log"


def require_tool(name: str) -> str:
    """The tool's path; skip locally when it is missing, fail under CI=true (ci-deps.sh installs it)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        message = f"{name} is not installed (bash packaging/ci-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, str(PACKAGING / "wheelhouse.py"), "--out", str(out), "--extras", "redis,postgres"], check=True,
                   stdout=subprocess.DEVNULL)
    wheels = sorted(out.glob("railwatch-*.whl"))
    assert len(wheels) == 1, wheels
    return {"dir": out, "wheel": wheels[0]}


def make_app(root: Path, lines: int = 40) -> Path:
    """A Rails root: the reference app's config/ and a log/production.log of real lines, written now."""
    app = root / "app"
    shutil.copytree(REPO / "tests" / "e2e" / "app" / "config", app / "config")
    (app / "log").mkdir(parents=True)
    with open(RAILS_LOG, encoding="utf-8") as src:
        head = [next(src) for _ in range(lines)]
    (app / "log" / "production.log").write_text("".join(head), encoding="utf-8")
    return app


def install(*args: str, env: Optional[Dict[str, str]] = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"install.sh {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def tree(root: Path) -> Dict[str, str]:
    """Every path under ``root`` with its type: what an uninstall must leave as it found it."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
    return out


def healthz(port: int) -> Optional[int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


@pytest.fixture(scope="session")
def helpers() -> Any:
    """This module: install(), make_app(), tree(), free_port(), wait_for(), healthz(), require_tool()."""
    return sys.modules[__name__]
