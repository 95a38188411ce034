"""agent/sdnotify.py and the daemon's use of it: READY=1 once following, WATCHDOG=1 from the loop,
STOPPING=1 on SIGTERM, over a real AF_UNIX datagram socket as systemd's Type=notify provides."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from agent.sdnotify import Notifier


def listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock


def test_ready_and_stopping_reach_the_notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    with listener(path) as sock:
        n = Notifier({"NOTIFY_SOCKET": path})
        assert n.ready("following 2 log(s)")
        assert sock.recv(4096) == b"READY=1\nSTATUS=following 2 log(s)"
        assert n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_address_is_understood(tmp_path):
    name = f"railwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"


def test_watchdog_pings_at_a_third_of_the_interval(tmp_path):
    path = str(tmp_path / "notify")
    with listener(path) as sock:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog(100.0)
        assert not n.watchdog(100.5)  # too soon
        assert n.watchdog(101.0)
        assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_outside_systemd_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and not n.ready() and not n.watchdog(0.0)
    # a watchdog meant for another process (WATCHDOG_PID) is not ours to feed
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_every is None


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    path = str(tmp_path / "notify")
    with listener(path) as sock:
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="300000")
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--log", str(log), "--state-dir", str(tmp_path / "state"),
                                 "--metrics-listen", "off", "--log-level", "error"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            messages = [sock.recv(4096).decode()]
            while sum(m == "WATCHDOG=1" for m in messages) < 2:
                messages.append(sock.recv(4096).decode())
            assert messages[0].startswith("READY=1\nSTATUS=following 1 log(s)")
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in messages:
                messages.append(sock.recv(4096).decode())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
