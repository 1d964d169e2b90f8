"""Processes this project started, found by their pidfiles and stopped by PID.

Never by name: a PID from a pidfile is trusted only while /proc shows that
process's command line still contains a marker of ours (its run directory
or config path), so a recycled PID belonging to someone else is left alone.
Daemons that rewrite their command line (gunicorn, neutron-rpc-server,
RabbitMQ's Erlang VM) get a pidfile written by us instead, with the PID and
the process's start time (`write`): a recycled PID has another start time.
Such a daemon is started as the leader of a process group of its own, and
stopping it signals that group: its workers (the RPC server's forked
worker, the Erlang VM's helpers) go with it and nothing else does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), None if it is gone
    or a zombie (dead, waiting for its parent to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


def write(pidfile: Path, pid: int) -> None:
    """A pidfile of ours: the PID and its start time."""
    pidfile.write_text(f"{pid} {start_time(pid) or 0}\n")


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The PID in `pidfile`, if that process is alive and ours: its start time is the one the pidfile
    recorded, or (a daemon's own pidfile, the PID alone) its command line contains `marker`."""
    try:
        words = pidfile.read_text().strip().strip("\0").split()
        pid = int(words[0])
    except (OSError, ValueError, IndexError):
        return None
    started = start_time(pid)
    if started is None:
        return None
    if len(words) > 1:
        return pid if words[1] == str(started) else None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return pid if marker in cmdline else None


def stop(pidfile: Path, marker: str, timeout: float = 5, group: bool = False) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if a process of ours was running.

    `group`: signal the process group the process leads (a daemon we started with a session of its own)."""
    pid = owned_pid(pidfile, marker)
    if pid is None:
        return False
    whom = -pid if group and os.getpgid(pid) == pid else pid
    try:
        os.kill(whom, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if owned_pid(pidfile, marker) is None:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(whom, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while owned_pid(pidfile, marker) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def kill(pidfile: Path, marker: str, group: bool = False) -> int | None:
    """SIGKILL now (a fault test's crash); the PID killed, or None if none of ours was running."""
    pid = owned_pid(pidfile, marker)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(-pid if group and os.getpgid(pid) == pid else pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while owned_pid(pidfile, marker) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid
