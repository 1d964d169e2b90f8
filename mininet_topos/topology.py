"""Build a testbed from a config: the seed's network, or any N-host mesh.

Per simulated host: its own Open vSwitch (userspace datapath here) and its
own brtun agent, which creates br-int, br-tun and the GRE ports.  Around
them, as the seed draws it: VM eth0 - tap - qbr (iptables) - qvb/qvo -
br-int on compute hosts; on the network host the DHCP port in
qdhcp-<network>, the router's qr-/qg- ports in qrouter-<router>, br-ex and
an external host.  Namespace ports are veth pairs with the same name at
both ends (docs/TESTBED.md: OVS internal ports moved into namespaces do not
survive an ovs-vswitchd restart on the userspace datapath).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mininet.link import Link
from mininet.net import Mininet

from flows.config import Config
from mininet_topos import services
from mininet_topos.nodes import ExternalHost, NamedNode, ServiceNamespace, SimHost, Underlay, VmNode
from mininet_topos.spec import ServicePort, TestbedSpec, Vm
from ovshost import agentproc
from ovshost import state as states
from ovshost.state import Daemon, HostState, TestbedState


def veth(node1: NamedNode, node2: NamedNode, name1: str, name2: str, mac1: str | None = None,
         mac2: str | None = None) -> Link:
    """A veth pair between two nodes; an end given a port's MAC keeps it, the other gets Nova's
    tap convention (fe: and the rest of the MAC) so both are stable and readable."""
    if mac1 is None and mac2 is None:
        return Link(node1, node2, intfName1=name1, intfName2=name2)
    mac1 = mac1 or "fe" + (mac2 or "")[2:]
    mac2 = mac2 or "fe" + mac1[2:]
    return Link(node1, node2, intfName1=name1, intfName2=name2, addr1=mac1, addr2=mac2)


def _load_bridge_netfilter() -> None:
    """iptables sees bridged traffic (the security groups on qbr) only through br_netfilter, which a
    distribution kernel does not load by itself: Neutron's iptables firewall loads it, and so do we."""
    if not Path("/proc/sys/net/bridge").exists():
        result = subprocess.run(["modprobe", "br_netfilter"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the security groups need br_netfilter: modprobe br_netfilter failed: "
                               f"{result.stderr.strip()}")


def say(message: str) -> None:
    print(f"*** {message}", file=sys.stderr, flush=True)


def phy_mac(local_ip: str) -> str:
    """A fixed MAC for a host's br-phy, so tunnel neighbours can be pre-seeded."""
    octets = ipaddress.ip_address(local_ip).packed[-4:]  # an IPv6 endpoint: its last 32 bits
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


@dataclass
class BuildOptions:
    hub: str = "eventlet"
    datapath_type: str = "netdev"
    progress: Callable[[str], None] = say
    agent_timeout: float = 60  # seconds for every agent to be in sync (a guest under software emulation: more)


@dataclass
class Built:
    """The running testbed, in the building process (Mininet objects, timings)."""

    state: TestbedState
    spec: TestbedSpec
    config: Config
    net: Mininet
    hosts: dict[str, SimHost]
    vms: dict[str, VmNode]
    namespaces: dict[str, NamedNode]
    timings: dict[str, float] = field(default_factory=dict)

    def node(self, name: str) -> NamedNode:
        return self.namespaces[name]

    def close(self) -> list[str]:
        """Take the testbed down and end this process's Mininet node shells (by their PIDs)."""
        done = states.down(self.state)
        for node in self.namespaces.values():
            node.terminate()
        return done


class Testbed:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, config_path: Path, config: Config, spec: TestbedSpec, options: BuildOptions,
                 kind: str = "seed") -> None:
        self.config_path = config_path
        self.config = config
        self.spec = spec
        self.options = options
        self.kind = kind

    def namespaces(self) -> list[str]:
        spec = self.spec
        names = ["underlay", *self.config.host_names, *(vm.name for vm in spec.vms),
                 *{spec.service_namespace(port) for port in spec.services}]
        return names + (["external"] if spec.router is not None else [])

    def up(self) -> Built:
        """Build it all; on any failure, undo everything already made, then re-raise."""
        taken = [name for name in self.namespaces() if states.namespace_exists(name)]
        if taken:  # namespace names are global: two testbeds of the same shape cannot coexist
            raise FileExistsError(f"network namespace {', '.join(taken)} already exists (another testbed? "
                                  "`brtun testbed status`; `brtun testbed down NAME` removes it)")
        state = states.create(self.spec.name, self.kind)
        state.datapath_type = self.options.datapath_type
        copy = Path(state.directory) / "config.yaml"
        shutil.copyfile(self.config_path, copy)
        state.config = str(copy)
        state.save()
        try:
            built = self._build(state, copy)
        except BaseException:
            self.options.progress("build failed: removing what was made")
            states.down(state)
            raise
        state.status = "up"
        state.save()
        return built

    def _build(self, state: TestbedState, config_copy: Path) -> Built:
        spec, progress = self.spec, self.options.progress
        started = time.monotonic()
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False)
        namespaces: dict[str, NamedNode] = {}

        def add(name: str, cls: type[NamedNode]) -> NamedNode:
            node = net.addHost(name, cls=cls, state=state, ip=None)
            namespaces[name] = node
            return node

        progress(f"creating namespaces and links for {len(self.config.hosts)} hosts, {len(spec.vms)} VMs")
        underlay = add("underlay", Underlay)
        hosts: dict[str, SimHost] = {}
        for index, host in enumerate(self.config.hosts, start=1):
            node = add(host.name, SimHost)
            assert isinstance(node, SimHost)
            hosts[host.name] = node
            veth(node, underlay, "eth0", f"ulp{index}")
        vms: dict[str, VmNode] = {}
        for vm in spec.vms:
            node = add(vm.name, VmNode)
            assert isinstance(node, VmNode)
            vms[vm.name] = node
            veth(node, hosts[vm.host], "eth0", vm.device("tap"), mac1=vm.mac)
        for port in spec.services:
            namespace = spec.service_namespace(port)
            service = namespaces.get(namespace) or add(namespace, ServiceNamespace)
            veth(hosts[port.host], service, port.name, port.name, mac2=port.mac)
        if spec.router is not None:
            network_host = hosts[spec.network_hosts[0]]
            router = namespaces[spec.router.namespace]
            veth(network_host, router, spec.router.gateway_name, spec.router.gateway_name,
                 mac2=spec.router.gateway_mac)
            external = add("external", ExternalHost)
            veth(network_host, external, "eth-ext", "eth0")
        for name, host in hosts.items():
            config_host = self.config.host(name)
            state.hosts[name] = HostState(name, spec.roles[name], name, str(host.ovs.rundir), config_host.local_ip,
                                          agentproc.openflow_target(host.ovs.rundir),
                                          str(host.ovs.rundir / agentproc.LOG))
        state.save()
        timings = {"namespaces": time.monotonic() - started}

        progress("starting Open vSwitch and a brtun agent on every host")
        underlay.make_bridge(spec.underlay_mtu)
        for name, host in hosts.items():
            host.start_switch()
            local_ip = self.config.host(name).local_ip
            host.attach_underlay("eth0", local_ip, spec.underlay.prefixlen, spec.underlay_mtu,
                                 self.options.datapath_type, phy_mac(local_ip))
        for host in hosts.values():
            host.start_agent(config_copy, self.options.hub, self.options.datapath_type)
        for host in hosts.values():
            assert host.agent is not None
            host.agent.wait_in_sync(timeout=self.options.agent_timeout)
        timings["agents_in_sync"] = time.monotonic() - started
        if self.options.datapath_type == "netdev":
            self._preseed_tunnel_neighbours(hosts)

        progress("plugging VMs (tap - qbr - qvb/qvo - br-int) and Neutron's services")
        for name, host in hosts.items():
            host_vms = spec.vms_on(name)
            for vm in host_vms:
                self._plug_vm(host, vm)
            if host_vms:
                _load_bridge_netfilter()
                host.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=1")
                rules = Path(state.directory) / f"sg-{name}.rules"
                rules.write_text(services.security_group_rules(host_vms, spec.allowed_ingress))
                host.sh(f"iptables-restore < {rules}")
        for port in spec.services:
            hosts[port.host].sh(f"ip link set {port.name} mtu {spec.mtu(port.network)} up")
            hosts[port.host].plug("br-int", port.name, port.mac, f"{port.kind}-{port.name}")
        if spec.router is not None:
            self._router(hosts[spec.network_hosts[0]], namespaces)
        for port in spec.services:
            if port.kind == "dhcp":
                self._dhcp(state, namespaces[spec.dhcp_namespace(port.network)], port)
        for vm in spec.vms:
            vms[vm.name].prepare(spec.mtu(vm.network), self.options.datapath_type)
        timings["plumbed"] = time.monotonic() - started

        progress("VMs asking for addresses" if any(s.dhcp for s in spec.subnets.values()) else "VM addresses")
        for vm in spec.vms:
            self._address(vms[vm.name], vm)
            state.vms[vm.name] = {"host": vm.host, "network": vm.network, "ip": vm.ip or "", "mac": vm.mac,
                                  "tap": vm.device("tap")}
        state.save()
        timings["addresses"] = time.monotonic() - started
        return Built(state, spec, self.config, net, hosts, vms, namespaces, timings)

    def _preseed_tunnel_neighbours(self, hosts: dict[str, SimHost]) -> None:
        """Userspace tunnelling drops the packet that triggers its ARP for a remote endpoint."""
        for name, host in hosts.items():
            for other in self.config.hosts:
                if other.name != name:
                    host.ovs.run("ovs-appctl", "tnl/neigh/set", "br-phy", other.local_ip, phy_mac(other.local_ip))

    def _plug_vm(self, host: SimHost, vm: Vm) -> None:
        mtu = self.spec.mtu(vm.network)
        tap, qbr, qvb, qvo = (vm.device(p) for p in ("tap", "qbr", "qvb", "qvo"))
        host.sh(f"ip link add {qbr} type bridge")
        host.sh(f"ip link add {qvb} mtu {mtu} type veth peer name {qvo} mtu {mtu}")
        for device in (tap, qbr, qvb, qvo):  # os-vif: the plumbing itself speaks no IPv6
            host.sh(f"sysctl -qw net.ipv6.conf.{device}.disable_ipv6=1")
        host.sh(f"ip link set {qbr} mtu {mtu} up")
        host.sh(f"ip link set {tap} mtu {mtu} master {qbr} up")
        host.sh(f"ip link set {qvb} master {qbr} up && ip link set {qvo} up")
        host.plug("br-int", qvo, vm.mac, f"port-{vm.suffix}")

    def _router(self, network_host: SimHost, namespaces: dict[str, NamedNode]) -> None:
        spec = self.spec
        router = spec.router
        assert router is not None
        network_host.vsctl("--may-exist", "add-br", "br-ex", "--", "set", "Bridge", "br-ex",
                           f"datapath_type={self.options.datapath_type}", "fail_mode=standalone")
        for port in (router.gateway_name, "eth-ext"):
            network_host.sh(f"ip link set {port} up")
            network_host.plug("br-ex", port)
        network_host.sh("ip link set br-ex up")
        namespace = namespaces[router.namespace]
        for port in spec.services:
            if port.kind == "router":
                prefix = spec.subnets[port.network].cidr.prefixlen if port.network in spec.subnets else 24
                namespace.sh(f"ip link set {port.name} mtu {spec.mtu(port.network)} up && "
                             f"ip addr add {port.ip}/{prefix} dev {port.name}")
                namespace.checksums_in_software(port.name, self.options.datapath_type)
        gateway = router.gateway_name
        namespace.sh(f"ip addr add {router.gateway_ip}/{router.external_cidr.prefixlen} dev {gateway}")
        namespace.sh(f"ip link set {gateway} up && ip route add default via {router.external_host} dev {gateway}")
        namespace.checksums_in_software(gateway, self.options.datapath_type)
        namespace.sh("sysctl -qw net.ipv4.ip_forward=1")
        rules = Path(namespace.state.directory if namespace.state else "/tmp") / "router-nat.rules"
        rules.write_text(services.router_nat_rules(router))
        namespace.sh(f"iptables-restore < {rules}")
        external = namespaces["external"]
        external.sh(f"ip addr add {router.external_host}/{router.external_cidr.prefixlen} dev eth0 && "
                    "ip link set eth0 up")
        external.checksums_in_software("eth0", self.options.datapath_type)

    def _dhcp(self, state: TestbedState, namespace: NamedNode, port: ServicePort) -> None:
        subnet = self.spec.subnets[port.network]
        namespace.sh(f"ip link set {port.name} mtu {self.spec.mtu(port.network)} up && "
                     f"ip addr add {port.ip}/{subnet.cidr.prefixlen} dev {port.name}")
        namespace.checksums_in_software(port.name, self.options.datapath_type)
        directory = Path(state.directory) / "dhcp" / subnet.network_id
        services.dnsmasq_files(directory, subnet, port, list(self.spec.vms), list(self.spec.services),
                               self.spec.mtu(port.network))
        state.add_daemon(Daemon("dnsmasq", str(directory / "pid"), str(directory), namespace.name))
        namespace.ns(*services.dnsmasq_command(directory, subnet, port))

    def _address(self, node: VmNode, vm: Vm) -> None:
        subnet = self.spec.subnets.get(vm.network)
        if subnet is not None and subnet.dhcp:
            node.dhcp()
            return
        if vm.ip:
            prefix = subnet.cidr.prefixlen if subnet else 24
            node.static(vm.ip, prefix, str(subnet.gateway) if subnet and subnet.gateway else None)
