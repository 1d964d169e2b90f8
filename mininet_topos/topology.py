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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mininet.link import Link
from mininet.net import Mininet

from flows.config import Config
from mininet_topos import services
from mininet_topos.nodes import (
    ExternalHost,
    NamedNode,
    NeutronController,
    ServiceNamespace,
    SimHost,
    Underlay,
    VmNode,
)
from mininet_topos.spec import ServicePort, TestbedSpec, Vm
from ovshost import agentproc
from ovshost import state as states
from ovshost.neutronapi import NeutronApi
from ovshost.neutronserver import NeutronServer
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


CONTROLLER = "controller"  # --neutron: the namespace neutron-server runs in, on the underlay
CONTROLLER_UNDERLAY_PORT = "ulpc"


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
    neutron: bool = False  # a real neutron-server drives the agents (docs/NEUTRON.md, "The testbed")


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
    neutron: NeutronServer | None = None

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
        self.neutron: NeutronServer | None = None

    def namespaces(self) -> list[str]:
        spec = self.spec
        names = ["underlay", *self.config.host_names, *(vm.name for vm in spec.vms),
                 *{spec.service_namespace(port) for port in spec.services}]
        return names + (["external"] if spec.router is not None else []) \
            + ([CONTROLLER] if self.options.neutron else [])

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
        if self.options.neutron:
            veth(add(CONTROLLER, NeutronController), underlay, "eth0", CONTROLLER_UNDERLAY_PORT)
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

        underlay.make_bridge(spec.underlay_mtu)
        server = self._start_neutron(state, namespaces) if self.options.neutron else None
        progress("starting Open vSwitch and a brtun agent on every host"
                 + (" (brtun run --neutron: driven by neutron-server)" if server else ""))
        for name, host in hosts.items():
            host.start_switch()
            local_ip = self.config.host(name).local_ip
            host.attach_underlay("eth0", local_ip, spec.underlay.prefixlen, spec.underlay_mtu,
                                 self.options.datapath_type, phy_mac(local_ip))
        if server is not None:
            server_thread, server_error = server
            server_thread.join()
            if server_error:
                raise server_error[0]
            timings["neutron_server"] = time.monotonic() - started
        for name, host in hosts.items():
            if self.neutron is not None:
                host.start_agent(self._agent_config(name, host), self.options.hub, self.options.datapath_type,
                                 neutron=True)
            else:
                host.start_agent(config_copy, self.options.hub, self.options.datapath_type)
        for host in hosts.values():
            assert host.agent is not None
            host.agent.wait_in_sync(timeout=self.options.agent_timeout * (2 if self.neutron is not None else 1))
        timings["agents_in_sync"] = time.monotonic() - started
        if self.options.datapath_type == "netdev":
            self._preseed_tunnel_neighbours(hosts)
        ports: dict[str, str] = {}  # device on br-int -> Neutron port ID
        if self.neutron is not None:
            progress("creating the network, subnet and ports through Neutron's API, bound to their hosts")
            ports = self._neutron_ports(state)
            timings["neutron_ports"] = time.monotonic() - started

        progress("plugging VMs (tap - qbr - qvb/qvo - br-int) and Neutron's services")
        for name, host in hosts.items():
            host_vms = spec.vms_on(name)
            for vm in host_vms:
                self._plug_vm(host, vm, ports.get(vm.device("qvo")))
            if host_vms:
                _load_bridge_netfilter()
                host.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=1")
                rules = Path(state.directory) / f"sg-{name}.rules"
                rules.write_text(services.security_group_rules(host_vms, spec.allowed_ingress))
                host.sh(f"iptables-restore < {rules}")
        for port in spec.services:
            hosts[port.host].sh(f"ip link set {port.name} mtu {spec.mtu(port.network)} up")
            hosts[port.host].plug("br-int", port.name, port.mac, ports.get(port.name, f"{port.kind}-{port.name}"))
        if spec.router is not None:
            self._router(hosts[spec.network_hosts[0]], namespaces)
        for port in spec.services:
            if port.kind == "dhcp":
                self._dhcp(state, namespaces[spec.dhcp_namespace(port.network)], port)
        for vm in spec.vms:
            vms[vm.name].prepare(spec.mtu(vm.network), self.options.datapath_type)
        if self.neutron is not None:
            progress("waiting for Neutron to see every port ACTIVE (each agent reported it up)")
            api = NeutronApi(self.neutron.api_socket)
            for port_id in ports.values():
                api.wait_status(port_id, "ACTIVE", timeout=60)
            timings["ports_active"] = time.monotonic() - started
        timings["plumbed"] = time.monotonic() - started

        progress("VMs asking for addresses" if any(s.dhcp for s in spec.subnets.values()) else "VM addresses")
        for vm in spec.vms:
            self._address(vms[vm.name], vm)
            state.vms[vm.name] = {"host": vm.host, "network": vm.network, "ip": vm.ip or "", "mac": vm.mac,
                                  "tap": vm.device("tap")}
        state.save()
        timings["addresses"] = time.monotonic() - started
        return Built(state, spec, self.config, net, hosts, vms, namespaces, timings, self.neutron)

    # ----- --neutron ----------------------------------------------------------------------------
    def _start_neutron(self, state: TestbedState,
                       namespaces: dict[str, NamedNode]) -> tuple[threading.Thread, list[BaseException]]:
        """neutron-server in the controller namespace on the underlay, started in the background (about
        15 s) while the hosts' switches start."""
        spec = self.spec
        assert spec.neutron_address is not None
        controller = namespaces[CONTROLLER]
        controller.sh(f"ip addr add {spec.neutron_address}/{spec.underlay.prefixlen} dev eth0 && "
                      f"ip link set eth0 mtu {spec.underlay_mtu} up")
        controller.checksums_in_software("eth0")  # the hosts' userspace switches pass it on as it is
        types = sorted({n.type for n in self.config.networks}) or ["gre"]
        self.neutron = NeutronServer(Path(state.directory) / "neutron", CONTROLLER, str(spec.neutron_address),
                                     tenant_network_type=types[0], record=state.add_daemon)
        state.neutron = {"address": str(spec.neutron_address), "api_socket": str(self.neutron.api_socket),
                         "transport_url": self.neutron.transport_url, "namespace": CONTROLLER,
                         "directory": str(self.neutron.directory)}
        state.save()
        errors: list[BaseException] = []

        def start() -> None:
            try:
                assert self.neutron is not None
                self.neutron.start()
            except BaseException as error:  # raised again by the building thread
                errors.append(error)

        self.options.progress(f"starting neutron-server (MariaDB, RabbitMQ, API, RPC) on {spec.neutron_address}")
        thread = threading.Thread(target=start, name="neutron-server")
        thread.start()
        return thread, errors

    def _agent_config(self, name: str, host: SimHost) -> Path:
        """Neutron's agent config for the host's `brtun run --neutron`: its endpoint, l2population, and the
        seed's datapath IDs (so `brtun flows` and `trace` know the bridges)."""
        assert self.neutron is not None
        config_host = self.config.host(name)
        path = host.ovs.rundir / "neutron-agent.conf"
        host.ovs.rundir.mkdir(parents=True, exist_ok=True)
        path.write_text(self.neutron.agent_config(config_host.local_ip, config_host.tunnel_types,
                                                  datapath_id=config_host.datapath_id))
        return path

    def _neutron_ports(self, state: TestbedState) -> dict[str, str]:
        """The seed's network, subnet, VM, DHCP and router ports through Neutron's REST API, with the seed's
        MACs and addresses, each bound to its host as Nova binds it (create, then set binding:host_id)."""
        assert self.neutron is not None
        api = NeutronApi(self.neutron.api_socket)
        api.wait_agents(list(self.config.host_names))
        spec = self.spec
        networks = {}
        for network in self.config.networks:
            created = api.create_network(network.name, network.type, network.segmentation_id)
            networks[network.name] = created["id"]
            subnet = spec.subnets.get(network.name)
            if subnet is not None:
                api.create_subnet(created["id"], str(subnet.cidr), str(subnet.gateway) if subnet.gateway else None,
                                  subnet.dhcp)
        ports: dict[str, str] = {}
        owners = {"dhcp": "network:dhcp", "router": "network:router_interface"}
        for vm in spec.vms:
            port = api.create_port(networks[vm.network], vm.mac, vm.ip, None, "compute:nova", vm.name, vm.device("tap"))
            ports[vm.device("qvo")] = api.bind_port(port["id"], vm.host)["id"]
            state.vms.setdefault(vm.name, {})["port_id"] = port["id"]
        for service in spec.services:
            owner_id = spec.router.router_id if service.kind == "router" and spec.router else f"dhcp-{service.host}"
            port = api.create_port(networks[service.network], service.mac, service.ip, None, owners[service.kind],
                                   owner_id, service.name)
            ports[service.name] = api.bind_port(port["id"], service.host)["id"]
        state.neutron.update(networks=networks, ports=ports)
        state.save()
        return ports

    def _preseed_tunnel_neighbours(self, hosts: dict[str, SimHost]) -> None:
        """Userspace tunnelling drops the packet that triggers its ARP for a remote endpoint."""
        for name, host in hosts.items():
            for other in self.config.hosts:
                if other.name != name:
                    host.ovs.run("ovs-appctl", "tnl/neigh/set", "br-phy", other.local_ip, phy_mac(other.local_ip))

    def _plug_vm(self, host: SimHost, vm: Vm, port_id: str | None = None) -> None:
        mtu = self.spec.mtu(vm.network)
        tap, qbr, qvb, qvo = (vm.device(p) for p in ("tap", "qbr", "qvb", "qvo"))
        host.sh(f"ip link add {qbr} type bridge")
        host.sh(f"ip link add {qvb} mtu {mtu} type veth peer name {qvo} mtu {mtu}")
        for device in (tap, qbr, qvb, qvo):  # os-vif: the plumbing itself speaks no IPv6
            host.sh(f"sysctl -qw net.ipv6.conf.{device}.disable_ipv6=1")
        host.sh(f"ip link set {qbr} mtu {mtu} up")
        host.sh(f"ip link set {tap} mtu {mtu} master {qbr} up")
        host.sh(f"ip link set {qvb} master {qbr} up && ip link set {qvo} up")
        host.plug("br-int", qvo, vm.mac, port_id or f"port-{vm.suffix}")

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
