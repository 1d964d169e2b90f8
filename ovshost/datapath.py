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

    Private instances may share the kernel datapath: kernel datapaths and
    their tunnel vports belong to a network namespace, so an ovs-vswitchd in
    each host's namespace gets its own `system@ovs-system` (seen in a QEMU
    guest: two namespaces, a switch each, GRE between them, ping across).
    What stays shared is the kernel module itself.
    """
    return "system" if kernel_datapath_available() else "netdev"
