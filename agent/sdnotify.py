"""systemd's readiness and watchdog protocol (sd_notify), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket path, or an
abstract one starting with ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``). The daemon says ``READY=1`` once it is following its logs,
``WATCHDOG=1`` from its main loop (so a loop that hangs gets the service restarted),
``RELOADING=1`` / ``READY=1`` around a SIGHUP reload and ``STOPPING=1`` on the way out.
Outside systemd every call is a no-op; a send that fails is ignored (never fatal).
"""
from __future__ import annotations

import os
import socket
import time
from typing import Mapping, Optional


class Notifier:
    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        # ping at a third of the interval: two pings may be late before systemd gives up
        self.watchdog_every = int(usec) / 1e6 / 3 if watched else None
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 match the reload to this message
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self, now: float) -> bool:
        """``WATCHDOG=1`` if due (``now`` is a monotonic time); a no-op without WatchdogSec."""
        if self.watchdog_every is None or now - self._last_ping < self.watchdog_every:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")
