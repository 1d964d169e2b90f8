"""Mininet node classes for the testbeds.

Every node is a Mininet `Node` whose network namespace is also given a
name (`ip netns attach`), so `ip netns` lists it as Neutron's hosts list
theirs, other commands reach it with `ip netns exec NAME`, and the testbed
outlives the process that built it until `brtun testbed down`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from mininet.node import Node

from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from ovshost.state import Daemon, TestbedState

UDHCPC_SCRIPT = Path(__file__).with_name("udhcpc.script")


def _nodad(address: str) -> str:
    """An IPv6 endpoint is usable at once: no duplicate address detection on a link we made."""
    return " nodad" if ":" in address else ""


class CommandError(RuntimeError):
    pass


class NamedNode(Node):  # type: ignore[misc]
    """A Mininet node with a named network namespace, recorded in the testbed state."""

    def __init__(self, name: str, state: TestbedState | None = None, **params: Any) -> None:
        super().__init__(name, inNamespace=True, **params)
        subprocess.run(["ip", "netns", "attach", name, str(self.pid)], check=True, capture_output=True)
        self.state = state
        if state is not None:
            state.add_namespace(name)
        self.sh("ip link set lo up")

    def checksums_in_software(self, intf: str, datapath_type: str = "netdev") -> None:
        """Open vSwitch's userspace datapath forwards a veth's partial checksums as they are;
        every end that sends into it must compute them itself (docs/TESTBED.md). The kernel
        datapath completes them (or lets the tunnel device do it), so there the ends keep the
        offload, as a real host's do."""
        if datapath_type == "netdev":
            self.sh(f"ethtool -K {intf} tx off >/dev/null")

    def sh(self, command: str) -> str:
        """Run a shell command in this node; raise with its output when it fails."""
        output = self.cmd(f"{command}; echo __rc=$?")
        text, _, code = output.rpartition("__rc=")
        if code.strip() != "0":
            raise CommandError(f"{self.name}: `{command}` failed ({code.strip()}): {text.strip()}")
        return text

    def ns(self, *argv: str, timeout: float = 30, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a program in this namespace from outside the node's shell (works after the build too)."""
        result = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                                timeout=timeout, env=env, check=False)
        if check and result.returncode != 0:
            raise CommandError(f"{self.name}: {' '.join(argv)} failed: {result.stderr.strip()}")
        return result


class Underlay(NamedNode):
    """The physical network between the hosts' tunnel endpoints: one Linux bridge."""

    def make_bridge(self, mtu: int) -> None:
        self.sh(f"ip link add underlay type bridge && ip link set underlay mtu {mtu} up")
        for intf in self.intfNames():
            if intf != "lo":
                self.sh(f"ip link set {intf} mtu {mtu} master underlay up")


class SimHost(NamedNode):
    """A hypervisor or network node: its own ovsdb-server, ovs-vswitchd and brtun agent."""

    def __init__(self, name: str, state: TestbedState | None = None, **params: Any) -> None:
        super().__init__(name, state, **params)
        assert state is not None
        self.ovs = PrivateOvs(name, Path(state.directory) / "hosts" / name)
        self.agent: AgentProcess | None = None
        self.datapath_type = "netdev"  # attach_underlay sets the testbed's
        # In this node's shell (the Mininet CLI), ovs-vsctl and friends reach this host's switch.
        rundir = self.ovs.rundir
        self.sh(f"export OVS_RUNDIR={rundir} OVS_DBDIR={rundir} OVS_LOGDIR={rundir}")

    def start_switch(self) -> None:
        assert self.state is not None
        for daemon in ("ovsdb-server", "ovs-vswitchd"):  # recorded before they start: a crash in between
            self.state.add_daemon(Daemon(daemon, str(self.ovs.rundir / f"{daemon}.pid"),  # leaks nothing
                                         str(self.ovs.rundir), self.name))
        self.ovs.start(create_namespace=False)

    def vsctl(self, *argv: str) -> str:
        return self.ovs.vsctl(*argv)

    def attach_underlay(self, intf: str, address: str, prefix: int, mtu: int, datapath_type: str,
                        hwaddr: str) -> None:
        """The tunnel endpoint. Userspace tunnelling routes and ARPs through an OVS bridge
        holding the address (br-phy); the kernel datapath uses the kernel's own routing, with the
        address on the underlay device itself. Either way the endpoint's MAC is `hwaddr`, fixed
        from the address, so other hosts (and the checks' intruder) can be told it in advance."""
        self.datapath_type = datapath_type
        if datapath_type != "netdev":
            self.sh(f"ip link set {intf} address {hwaddr}")
        self.sh(f"ip link set {intf} mtu {mtu} up")
        if datapath_type == "netdev":
            self.vsctl("add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
                       "fail_mode=standalone", f"other_config:hwaddr={hwaddr}", "--", "add-port", "br-phy", intf)
            self.sh(f"ip addr add {address}/{prefix} dev br-phy{_nodad(address)} && ip link set br-phy mtu {mtu} up")
        else:
            self.sh(f"ip addr add {address}/{prefix} dev {intf}{_nodad(address)}")

    def restart_switch(self, address: str, prefix: int, mtu: int, neighbours: dict[str, str]) -> None:
        """Restart this host's ovs-vswitchd, then redo what the host's network config would: the
        userspace datapath recreates br-phy without its address (docs/TESTBED.md), and forgets the
        tunnel neighbours it had learned. On the kernel datapath the kernel keeps the datapath, its
        ports and the endpoint's address: there is nothing to redo."""
        self.ovs.restart_vswitchd()
        if self.datapath_type != "netdev":
            return
        deadline = time.monotonic() + 10
        while "br-phy" not in self.sh("ip -o link show"):
            if time.monotonic() > deadline:
                raise CommandError(f"{self.name}: br-phy did not come back after the switch restarted")
            time.sleep(0.05)
        self.sh(f"ip addr replace {address}/{prefix} dev br-phy{_nodad(address)} && ip link set br-phy mtu {mtu} up")
        for ip, mac in neighbours.items():
            self.ovs.run("ovs-appctl", "tnl/neigh/set", "br-phy", ip, mac)

    def start_agent(self, config: Path, hub: str, datapath_type: str, neutron: bool = False) -> AgentProcess:
        """The host's agent; with `neutron`, `config` is Neutron's agent config (brtun run --neutron)."""
        self.agent = AgentProcess(self.ovs, config, self.name, hub=hub, datapath_type=datapath_type, neutron=neutron)
        assert self.state is not None
        self.state.add_daemon(Daemon("agent", str(self.agent.pidfile), str(config), self.name))
        self.agent.start()
        return self.agent

    def plug(self, bridge: str, port: str, mac: str | None = None, iface_id: str | None = None) -> None:
        """Add a port as Nova/os-vif does: with the VM's MAC and port ID in external_ids."""
        settings = []
        if mac:
            settings += [f"external_ids:attached-mac={mac}", "external_ids:iface-status=active"]
        if iface_id:
            settings.append(f"external_ids:iface-id={iface_id}")
        args = ["--may-exist", "add-port", bridge, port]
        if settings:
            args += ["--", "set", "Interface", port, *settings]
        self.vsctl(*args)


class VmNode(NamedNode):
    """A tenant VM: eth0 with the port's MAC, an MTU that fits the tunnel, TX checksums done
    in the VM on the userspace datapath (it does not complete partial checksums)."""

    def prepare(self, mtu: int, datapath_type: str = "netdev") -> None:
        self.sh(f"ip link set eth0 mtu {mtu} up")
        self.checksums_in_software("eth0", datapath_type)

    def dhcp(self, timeout: int = 10) -> str:
        """Ask for an address (busybox udhcpc); our script only sets address, route and MTU."""
        return self.sh(f"busybox udhcpc -i eth0 -f -q -n -t {timeout} -T 1 -s {UDHCPC_SCRIPT} "
                       f"-x hostname:{self.name} 2>&1")

    def static(self, address: str, prefix: int, gateway: str | None) -> None:
        self.sh(f"ip addr add {address}/{prefix} dev eth0")
        if gateway:
            self.sh(f"ip route add default via {gateway}")

    def address(self) -> str | None:
        for word in self.sh("ip -4 -o addr show dev eth0").split():
            if "/" in word and word[0].isdigit():
                return word.split("/")[0]
        return None


class ServiceNamespace(NamedNode):
    """A Neutron service namespace on the network host: qdhcp-<network> or qrouter-<router>."""


class NeutronController(NamedNode):
    """The cloud's controller on the underlay: neutron-server, its database and RabbitMQ (--neutron)."""


class ExternalHost(NamedNode):
    """A host on the external network, beyond br-ex: the router's upstream gateway."""
