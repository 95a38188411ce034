"""packaging/install.sh, run for real: into a temporary root (everywhere), and as root on a CI
machine with a throwaway system user under a unique /opt prefix. The installed agent must start,
answer /healthz and stop; the uninstall must leave nothing behind."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from agent.config import load


def start_agent(venv: Path, config: Path, port: int, **popen) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen([str(venv / "bin" / "railwatch"), "run", "--config", str(config), "--metrics-listen",
                             f"127.0.0.1:{port}", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def stop_agent(proc: subprocess.Popen) -> str:  # type: ignore[type-arg]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def test_root_install_runs_the_agent_and_uninstall_leaves_nothing_behind(tmp_path, wheelhouse, helpers):
    root = tmp_path / "root"
    root.mkdir()
    app = helpers.make_app(tmp_path)
    before = helpers.tree(root)
    out = helpers.install("--root", str(root), "--app", str(app), "--wheel", str(wheelhouse["wheel"]),
                          "--wheel-dir", str(wheelhouse["dir"]), "--python", sys.executable).stdout
    assert "installed railwatch" in out

    venv = root / "opt" / "railwatch" / "venv"
    config = root / "etc" / "railwatch" / "railwatch.toml"
    state = root / "var" / "lib" / "railwatch"
    unit = root / "etc" / "systemd" / "system" / "railwatch.service"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert os.readlink(root / "usr" / "local" / "bin" / "railwatch") == str(venv / "bin" / "railwatch")
    assert (root / "etc" / "railwatch" / "railwatch.example.toml").is_file()
    cfg = load(str(config))
    assert cfg.app.root == str(app) and cfg.state.dir == str(state)
    assert [s.path for s in cfg.sources] == [str(app / "log" / "production.log")]
    text = unit.read_text()
    assert f"ExecStart={venv}/bin/railwatch run --config {config}" in text
    assert f"ReadWritePaths={state}" in text
    if shutil.which("systemd-analyze"):  # the rendered unit is as clean as the shipped one
        verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stderr
    # the app's logs are under /tmp here: the installer lifts PrivateTmp for them
    assert "PrivateTmp=no" in (unit.parent / "railwatch.service.d" / "10-install.conf").read_text()

    port = helpers.free_port()
    proc = start_agent(venv, config, port)
    try:
        assert helpers.wait_for(lambda: helpers.healthz(port), "/healthz of the installed agent") == 200
    finally:
        stop_agent(proc)
    assert (state / "railwatch.sqlite3").is_file()

    helpers.install("--root", str(root), "--uninstall", "--purge")
    assert helpers.tree(root) == before


def test_rerun_upgrades_in_place_and_never_overwrites_an_edited_config(tmp_path, wheelhouse, helpers):
    root = tmp_path / "root"
    app = helpers.make_app(tmp_path)
    args = ["--root", str(root), "--app", str(app), "--wheel", str(wheelhouse["wheel"]), "--wheel-dir", str(wheelhouse["dir"]),
            "--python", sys.executable]
    helpers.install(*args)
    config = root / "etc" / "railwatch" / "railwatch.toml"
    venv_python = root / "opt" / "railwatch" / "venv" / "bin" / "python"
    inode = venv_python.lstat().st_ino
    edited = config.read_text() + "\n[tail]\npoll_interval_s = 0.5  # an operator's edit\n"
    config.write_text(edited)

    out = helpers.install(*args).stdout
    assert "upgrading the virtualenv" in out
    assert venv_python.lstat().st_ino == inode  # the same venv, upgraded, not rebuilt
    assert config.read_text() == edited
    assert (root / "etc" / "railwatch" / "railwatch.toml.new").is_file()
    assert "kept your edited" in out

    helpers.install("--root", str(root), "--uninstall")  # without --purge: config and state stay
    assert config.read_text() == edited
    assert (root / "var" / "lib" / "railwatch").is_dir()
    assert not (root / "opt" / "railwatch").exists()
    assert not (root / "etc" / "systemd" / "system" / "railwatch.service").exists()


def test_installed_wheel_ships_the_demo_logs(tmp_path, wheelhouse, helpers):
    """The pip-installable wheel carries agent/demo_data (package data), so `railwatch demo` works installed."""
    import zipfile

    with zipfile.ZipFile(wheelhouse["wheel"]) as zf:
        names = zf.namelist()
    assert "agent/demo_data/production.log.gz" in names and "agent/demo_data/sidekiq.log.gz" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def _system_install_possible() -> str:
    if os.geteuid() != 0:
        return "needs root (runs as root on CI)"
    base = "/usr/bin/python3"
    if not os.path.exists(base):
        return "no /usr/bin/python3"
    version = subprocess.run([base, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        # the wheelhouse is built from this interpreter's packages; a throwaway user cannot use a
        # Python under /root (pyenv), so the system one must be the same minor version
        return f"/usr/bin/python3 is {version}, the tests run on {tuple(sys.version_info[:2])} (covered by that run)"
    return ""


def test_system_install_with_throwaway_user_reads_group_logs_and_uninstalls_cleanly(wheelhouse, helpers):
    why = _system_install_possible()
    if why:
        if os.environ.get("CI") == "true" and os.geteuid() == 0 and sys.version_info[:2] == (3, 11):
            pytest.fail(why)
        pytest.skip(why)
    name = "rwtest-" + uuid.uuid4().hex[:8]
    log_group = name + "-logs"

    def system_state() -> dict:  # type: ignore[type-arg]
        files = {}
        for top in ("/opt", "/etc", "/var/lib", "/usr/local/bin"):
            files.update({os.path.join(top, k): v for k, v in helpers.tree(Path(top)).items() if name in k})
        return {"files": files, "users": sorted(p.pw_name for p in pwd.getpwall()), "groups": sorted(g.gr_name for g in grp.getgrall())}

    workdir = Path(tempfile.mkdtemp(prefix=name + "-", dir="/tmp"))
    subprocess.run(["groupadd", log_group], check=True)
    try:
        os.chmod(workdir, 0o755)
        app = helpers.make_app(workdir)
        gid = grp.getgrnam(log_group).gr_gid
        os.chown(app / "log", 0, gid)
        os.chmod(app / "log", 0o750)  # only the owner and the log group may enter
        os.chown(app / "log" / "production.log", 0, gid)
        os.chmod(app / "log" / "production.log", 0o640)
        before = system_state()

        out = helpers.install("--name", name, "--app", str(app), "--wheel", str(wheelhouse["wheel"]),
                              "--wheel-dir", str(wheelhouse["dir"]), "--python", "/usr/bin/python3").stdout
        user = pwd.getpwnam(name)
        assert log_group in [g.gr_name for g in grp.getgrall() if name in g.gr_mem]
        assert f"added {name} to group {log_group}" in out
        config = Path(f"/etc/{name}/railwatch.toml")
        st = config.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0 and grp.getgrgid(st.st_gid).gr_name == name
        state = Path(f"/var/lib/{name}")
        assert state.stat().st_uid == user.pw_uid and stat.S_IMODE(state.stat().st_mode) == 0o700
        assert f"StateDirectory={name}" in Path(f"/etc/systemd/system/{name}.service").read_text()
        # the doctor the installer ran, as the service user, could read the group-only log
        assert "PASS  log " in out, out

        port = helpers.free_port()
        proc = start_agent(Path(f"/opt/{name}/venv"), config, port, user=user.pw_uid, group=user.pw_gid,
                           extra_groups=[gid], cwd="/")
        try:
            assert helpers.wait_for(lambda: helpers.healthz(port), "/healthz of the agent run as the service user") == 200
        finally:
            stop_agent(proc)
        assert (state / "railwatch.sqlite3").stat().st_uid == user.pw_uid

        helpers.install("--name", name, "--uninstall", "--purge")
        assert system_state() == before
    finally:
        subprocess.run(["bash", str(helpers.INSTALL), "--name", name, "--uninstall", "--purge"], capture_output=True)
        subprocess.run(["groupdel", log_group], capture_output=True)
        subprocess.run(["rm", "-rf", str(workdir)])
