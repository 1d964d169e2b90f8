"""Which Open vSwitch datapath to use: detected, never assumed.

These machines have no openvswitch kernel module, so Open vSwitch runs its
userspace datapath (`netdev`), which does GRE, VXLAN and Geneve itself.
Where the module exists the kernel datapath (`system`) is the default.
"""

from __future__ import annotations

from pathlib import Path


def kernel_datapath_available() -> bool:
    """The openvswitch kernel module is loaded, so datapath_type=system works.

    A module that is merely installed does not count: loading it is the
    system's business (ovs-ctl does it), not an agent's."""
    return Path("/sys/module/openvswitch").exists()


def datapath_type() -> str:
    """`system` where the kernel module exists, else the userspace datapath `netdev`.

    Private instances share one kernel: several ovs-vswitchd on the kernel
    datapath would fight over the single `ovs-system` datapath, so callers
    that run more than one instance should pass `netdev` explicitly.
    """
    return "system" if kernel_datapath_available() else "netdev"
