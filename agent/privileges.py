"""railwatch only reads logs: say so when it runs as root."""
from __future__ import annotations

import logging
import os
from typing import Optional

ROOT_ADVICE = (
    "running as root: railwatch only needs to read the logs. Run it as its own user in the logs' group, e.g. "
    "`useradd --system --no-create-home --groups adm railwatch`, `chown -R railwatch /var/lib/railwatch` and "
    "User=railwatch in the systemd unit; give it read access to the app's log directory (setfacl -m u:railwatch:rX). "
    "Process metrics of another user's processes need that user or CAP_SYS_PTRACE."
)


def root_warning(logger: logging.Logger, euid: Optional[int] = None) -> bool:
    """Log ``ROOT_ADVICE`` when the effective user is root; True if it was."""
    uid = euid if euid is not None else (os.geteuid() if hasattr(os, "geteuid") else -1)
    if uid == 0:
        logger.warning(ROOT_ADVICE)
        return True
    return False
