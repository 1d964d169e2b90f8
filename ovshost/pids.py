"""Processes this project started, found by their pidfiles and stopped by PID.

Never by name: a PID from a pidfile is trusted only while /proc shows that
process's command line still contains a marker of ours (its run directory
or config path), so a recycled PID belonging to someone else is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The PID in `pidfile`, if that process is alive and its command line contains `marker`."""
    try:
        pid = int(pidfile.read_text().strip().strip("\0"))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def stop(pidfile: Path, marker: str, timeout: float = 5) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if a process of ours was running."""
    pid = owned_pid(pidfile, marker)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if owned_pid(pidfile, marker) is None or not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
