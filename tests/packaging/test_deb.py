"""packaging/deb/build.sh: a .deb built with dpkg-deb from this tree, vendoring the wheels; its
installer, unpacked, installs railwatch offline from those wheels."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_deb_vendors_the_wheels_and_installs_offline(tmp_path, helpers):
    dpkg_deb = helpers.require_tool("dpkg-deb")
    out = tmp_path / "dist"
    built = subprocess.run(["bash", str(REPO / "packaging" / "deb" / "build.sh"), "--out", str(out), "--python", sys.executable],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    assert deb.parent == out and deb.name.startswith("railwatch_0.") and deb.suffix == ".deb"

    control = subprocess.run([dpkg_deb, "--field", str(deb), "Package", "Depends"], capture_output=True, text=True, check=True).stdout
    assert "Package: railwatch" in control and "python3-venv" in control
    contents = subprocess.run([dpkg_deb, "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/share/railwatch/install.sh", "./usr/share/railwatch/systemd/railwatch.service",
                 "./usr/share/railwatch/railwatch.example.toml", "./usr/share/man/man1/railwatch.1.gz",
                 "./usr/share/doc/railwatch/README.md"):
        assert path in contents
    wheels = [line.split()[-1] for line in contents.splitlines() if line.endswith(".whl")]
    for name in ("railwatch-", "psutil-", "requests-", "click-", "watchdog-", "prometheus_client-"):
        assert any(Path(w).name.startswith(name) for w in wheels), name

    # what the postinst does, under a temporary root: the unpacked installer finds its wheels
    unpacked = tmp_path / "unpacked"
    subprocess.run([dpkg_deb, "-x", str(deb), str(unpacked)], check=True)
    root = tmp_path / "root"
    run = subprocess.run(["bash", str(unpacked / "usr" / "share" / "railwatch" / "install.sh"), "--root", str(root),
                          "--python", sys.executable, "--no-start"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    version = subprocess.run([str(root / "opt" / "railwatch" / "venv" / "bin" / "railwatch"), "--version"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip().startswith("railwatch, version")
    # no --app: a placeholder config that says what to set, and the installer says so
    assert "names no log yet" in run.stderr
