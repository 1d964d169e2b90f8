"""Which Open vSwitch datapath to use: detected, never assumed; and what a switch really runs on.

Where the openvswitch kernel module is loaded, the kernel datapath (`system`)
is the default; elsewhere (these machines' own kernel has no module) Open
vSwitch runs its userspace datapath (`netdev`), which does GRE, VXLAN and
Geneve itself.  The kernel datapath is exercised in a QEMU guest that boots
the distribution's kernel (`ovshost.kernelvm`, `./run test-kernel`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

KERNEL_MODULE = Path("/sys/module/openvswitch")


def kernel_datapath_available() -> bool:
    """The openvswitch kernel module is loaded, so datapath_type=system works.

    A module that is merely installed does not count: loading it is the
    system's business (ovs-ctl does it, the kernel lane's guest does it), not
    an agent's."""
    return KERNEL_MODULE.exists()


def datapath_type() -> str:
    """`system` where the kernel module is loaded, else the userspace datapath `netdev`.

    Private instances share the kernel datapath well: kernel datapaths and
    their tunnel vports belong to a network namespace, so an ovs-vswitchd in
    each host's namespace gets its own `system@ovs-system` with its own
    `gre_sys` and `vxlan_sys_4789` (the kernel lane runs the seed's three
    hosts so). What they share is the kernel module itself.
    """
    return "system" if kernel_datapath_available() else "netdev"


def kernel_datapaths(namespace: str) -> str:
    """`ovs-dpctl show` in a namespace: the kernel's own list of its datapaths there (no daemon asked)."""
    result = subprocess.run(["ip", "netns", "exec", namespace, "ovs-dpctl", "show"], capture_output=True,
                            text=True, timeout=30, check=False)
    return (result.stdout or result.stderr).rstrip()


def summary(dpctl_show: str) -> str:
    """`system@ovs-system: br-int, br-tun, gre_sys (gre), ...` from `ovs-dpctl show`, one line."""
    name = ""
    ports = []
    for line in dpctl_show.splitlines():
        stripped = line.strip()
        if not line.startswith(" ") and stripped.endswith(":"):
            name = stripped[:-1]
        elif stripped.startswith("port ") and ": " in stripped:
            port = stripped.split(": ", 1)[1]
            if not port.startswith("ovs-system"):
                ports.append(port.replace(": packet_type=ptap", "").replace(" (internal)", ""))
    return f"{name or 'no kernel datapath'}: {', '.join(ports)}" if ports else (name or "no kernel datapath")
