"""What a process costs, read from /proc: its resident set now and at its peak.

The benchmarks compare the agent's peak (VmHWM, what the machine must have
free for it) with ovs-vswitchd's resident set (VmRSS) holding the same flows.
"""

from __future__ import annotations

from pathlib import Path


def status_kib(pid: int, key: str) -> int:
    """One `kB` field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def peak_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB."""
    return status_kib(pid, "VmHWM") / 1024


def resident_mib(pid: int) -> float:
    """The process's resident set now (VmRSS), MiB."""
    return status_kib(pid, "VmRSS") / 1024
