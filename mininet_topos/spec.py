"""The `testbed:` section of a brtun config: what the Mininet topology around the agents is.

The br-tun part of the config (networks, hosts, ports) already says where
every port lives; this section adds what only a testbed needs: host roles,
subnets, the router and the external network, the security group, MTUs.
Port roles follow Neutron's device names: on a network host `tap...` is a
DHCP port and `qr-...` a router interface; on a compute host every port is
a VM port, plugged as Nova plugs it (VM eth0 - tap - qbr - qvb/qvo - br-int)
with the names derived from its `qvo...` name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flows.checker import Checker, ConfigError
from flows.config import Config
from flows.mtu import network_mtu
from flows.yamlsource import Source

ROLES = ("compute", "network")
# Bytes a tunnel adds to a VM's frame over an IPv4 underlay: the inner Ethernet header (14), the outer
# IPv4 header (20) and GRE with a key (8), or UDP (8) and VXLAN's or Geneve's header without options (8).
RULES = ("icmp", "ssh", "dhcp")
_KEYS = ("name", "underlay", "vm_mtu", "roles", "subnets", "router", "external", "security_group", "neutron")
NEUTRON_HOST = 5  # the neutron-server's address, by default: the underlay's network address + this


class InvalidTestbed(ValueError):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Subnet:
    network: str
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    network_id: str  # Neutron's network UUID: names the qdhcp- namespace
    dhcp: bool


@dataclass(frozen=True)
class Vm:
    name: str  # the Mininet node / namespace
    host: str
    network: str
    mac: str
    ip: str | None
    suffix: str  # Nova's device suffix: tap<suffix>, qbr<suffix>, qvb<suffix>, qvo<suffix>

    def device(self, prefix: str) -> str:
        return f"{prefix}{self.suffix}"


@dataclass(frozen=True)
class ServicePort:
    kind: str  # dhcp | router
    host: str
    network: str
    name: str  # the same name on br-int and inside the namespace (veth ends)
    mac: str
    ip: str


@dataclass(frozen=True)
class Router:
    router_id: str  # names the qrouter- namespace
    gateway_name: str  # qg- port
    gateway_mac: str
    gateway_ip: ipaddress.IPv4Address
    external_cidr: ipaddress.IPv4Network
    external_host: ipaddress.IPv4Address  # the upstream router the default route points at

    @property
    def namespace(self) -> str:
        return f"qrouter-{self.router_id}"


@dataclass(frozen=True)
class TestbedSpec:
    __test__ = False  # not a pytest test class, whatever its name

    name: str
    underlay: ipaddress.IPv4Network | ipaddress.IPv6Network
    underlay_mtu: int  # the config's options.underlay_mtu: one fact, for the model and the links
    mtus: dict[str, int]  # network -> its VMs' and service ports' MTU (DHCP option 26)
    roles: dict[str, str]
    subnets: dict[str, Subnet]
    vms: tuple[Vm, ...]
    services: tuple[ServicePort, ...]
    router: Router | None
    allowed_ingress: tuple[str, ...]
    # where `--neutron` runs neutron-server (on the underlay)
    neutron_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def mtu(self, network: str) -> int:
        return self.mtus[network]

    def vms_on(self, host: str) -> list[Vm]:
        return [vm for vm in self.vms if vm.host == host]

    def dhcp_namespace(self, network: str) -> str:
        return f"qdhcp-{self.subnets[network].network_id}"

    def service_namespace(self, port: ServicePort) -> str:
        if port.kind == "dhcp":
            return self.dhcp_namespace(port.network)
        assert self.router is not None, "validation requires a router for qr- ports"
        return self.router.namespace

    @property
    def network_hosts(self) -> list[str]:
        return [host for host, role in self.roles.items() if role == "network"]


def testbed_spec(config: Config, default_name: str = "seed") -> TestbedSpec:
    """Validate the testbed section against the rest of the config; raise InvalidTestbed with every error."""
    raw = config.testbed if config.testbed is not None else {}
    check = Checker(Source({"testbed": raw}))
    top = check.mapping("testbed", raw, _KEYS) or {}
    name = check.text("testbed.name", top.get("name", default_name), "testbed name") or default_name
    underlay = _underlay(check, top.get("underlay", {}))
    mtus = _mtus(check, config, top.get("vm_mtu"))
    roles = _roles(check, config, top.get("roles", {}))
    subnets = _subnets(check, config, top.get("subnets", {}))
    vms, services = _ports(check, config, roles, subnets)
    router = _router(check, config, top.get("router"), services)
    rules = tuple(check.string_list("testbed.security_group", top.get("security_group", list(RULES))))
    for index, rule in enumerate(rules):
        check.choice(f"testbed.security_group[{index}]", rule, RULES, "rule")
    for host in config.hosts:
        if ipaddress.ip_address(host.local_ip) not in underlay:
            check.error(f"hosts.{host.name}.local_ip", f"{host.local_ip} is outside the underlay {underlay}")
    neutron = _neutron_address(check, config, underlay, top.get("neutron", {}))
    if check.errors:
        raise InvalidTestbed(check.errors)
    return TestbedSpec(name, underlay, config.options.underlay_mtu, mtus, roles, subnets, tuple(vms),
                       tuple(services), router, rules, neutron)


def _neutron_address(check: Checker, config: Config, underlay: ipaddress.IPv4Network | ipaddress.IPv6Network,
                     raw: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`testbed.neutron.address`: the controller's address on the underlay (default: network + 5, or the
    first address after it that no host has)."""
    entry = check.mapping("testbed.neutron", raw, ("address",)) or {}
    taken = {h.local_ip: h.name for h in config.hosts}
    if "address" not in entry:
        last = min(underlay.num_addresses - 2, NEUTRON_HOST + 1024)
        candidates = (underlay.network_address + offset for offset in range(NEUTRON_HOST, last + 1))
        return next((a for a in candidates if str(a) not in taken), None)
    raw_address = entry["address"]
    try:
        address = ipaddress.ip_address(raw_address) if isinstance(raw_address, str) else None
    except ValueError:
        address = None
    if address is None:
        check.error("testbed.neutron.address", f"{raw_address!r} is not an IP address")
        return None
    if address not in underlay:
        check.error("testbed.neutron.address", f"{address} is outside the underlay {underlay}")
    if str(address) in taken:
        check.error("testbed.neutron.address", f"{address} is {taken[str(address)]}'s local_ip")
    return address


def _underlay(check: Checker, raw: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    entry = check.mapping("testbed.underlay", raw, ("cidr", "mtu")) or {}
    if "mtu" in entry:
        check.error("testbed.underlay.mtu", "the underlay's MTU is options.underlay_mtu (the MTU model and the "
                                            "testbed's links share it): move it there")
    default = ipaddress.IPv4Network("192.168.100.0/24")
    raw_cidr = entry.get("cidr", str(default))
    if not isinstance(raw_cidr, str):
        check.error("testbed.underlay.cidr", "must be a network such as 192.168.100.0/24 or fd00:100::/64")
        return default
    try:
        return ipaddress.ip_network(raw_cidr, strict=False)
    except ValueError:
        check.error("testbed.underlay.cidr", f"{raw_cidr!r} is not a network such as 192.168.100.0/24 or "
                                             "fd00:100::/64")
        return default


def _mtus(check: Checker, config: Config, raw: Any) -> dict[str, int]:
    """Each network's VM MTU: what the MTU model allows (flows.mtu), or `vm_mtu` where it fits."""
    allowed = {network.name: network_mtu(config, network.name) for network in config.networks}
    if raw is None:
        return {name: fit.mtu for name, fit in allowed.items()}
    vm_mtu = check.integer("testbed.vm_mtu", raw, 576, 9000, what="MTU")
    if vm_mtu is None:
        return {name: fit.mtu for name, fit in allowed.items()}
    for name, fit in allowed.items():
        if vm_mtu > fit.mtu:
            kind = config.network(name).type
            check.error("testbed.vm_mtu", f"{vm_mtu} does not fit {kind} network {name} on a "
                        f"{config.options.underlay_mtu}-byte underlay: at most "
                        f"{fit.explain(config.options.underlay_mtu, kind)} (a bigger packet is dropped, not "
                        "fragmented)")
    return {name: min(vm_mtu, fit.mtu) for name, fit in allowed.items()}


def _network(check: Checker, path: str, raw: Any) -> ipaddress.IPv4Network | None:
    if not isinstance(raw, str):
        check.error(path, "must be an IPv4 network such as 10.0.0.0/24")
        return None
    try:
        return ipaddress.IPv4Network(raw)
    except ValueError as error:
        check.error(path, f"{raw!r} is not an IPv4 network ({error})")
        return None


def _address(check: Checker, path: str, raw: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(raw)
    except ValueError:
        check.error(path, f"{raw!r} is not an IPv4 address")
        return None


def _roles(check: Checker, config: Config, raw: Any) -> dict[str, str]:
    given = check.mapping("testbed.roles", raw, None) or {}
    roles = {}
    for host in config.hosts:
        service = any(p.name and p.name.startswith(("tap", "qr-")) for p in host.ports)
        roles[host.name] = "network" if service else "compute"
    for key, value in given.items():
        host = check.known_key("testbed.roles", key, {h: 1 for h in config.host_names}, "host")
        role = check.choice(f"testbed.roles.{key}", value, ROLES, "role")
        if host and role:
            roles[host] = role
    return roles


def _subnets(check: Checker, config: Config, raw: Any) -> dict[str, Subnet]:
    given = check.mapping("testbed.subnets", raw, None) or {}
    subnets = {}
    for key, value in given.items():
        network = check.known_key("testbed.subnets", key, {n.name: 1 for n in config.networks}, "network")
        path = f"testbed.subnets.{key}"
        entry = check.mapping(path, value, ("cidr", "gateway", "network_id", "dhcp"), required=("cidr",))
        if network is None or entry is None:
            continue
        cidr = _network(check, f"{path}.cidr", entry.get("cidr"))
        gateway = _address(check, f"{path}.gateway", entry["gateway"]) if "gateway" in entry else None
        dhcp = check.boolean(f"{path}.dhcp", entry.get("dhcp", True))
        network_id = check.text(f"{path}.network_id", entry.get("network_id", f"{network}-net"), "id")
        if cidr is not None and gateway is not None and gateway not in cidr:
            check.error(f"{path}.gateway", f"{gateway} is outside {cidr}")
        if cidr is not None and network_id is not None:
            subnets[network] = Subnet(network, cidr, gateway, network_id, bool(dhcp))
    return subnets


def _ports(check: Checker, config: Config, roles: dict[str, str],
           subnets: dict[str, Subnet]) -> tuple[list[Vm], list[ServicePort]]:
    vms: list[Vm] = []
    services: list[ServicePort] = []
    for host in config.hosts:
        for index, port in enumerate(host.ports):
            path = f"hosts.{host.name}.ports[{index}]"
            if roles[host.name] == "network":
                kind = "dhcp" if port.name and port.name.startswith("tap") else \
                    "router" if port.name and port.name.startswith("qr-") else None
                if kind is None or port.ip is None:
                    check.error(f"{path}.name", "a network host's port is a DHCP port (tap...) or a router "
                                "interface (qr-...), with an ip")
                    continue
                if kind == "dhcp" and port.network not in subnets:
                    check.error(f"{path}.network", f"{port.network} has no testbed.subnets entry for its DHCP")
                    continue
                services.append(ServicePort(kind, host.name, port.network, port.name or "", port.mac, port.ip))
                continue
            if port.name and not port.name.startswith("qvo"):
                check.error(f"{path}.name", "a VM port on a compute host is named qvo<suffix>, as Nova names it")
                continue
            suffix = port.name[3:] if port.name else f"{port.mac.replace(':', '')[4:]}-{index:02d}"[:11]
            vms.append(Vm(f"vm{len(vms) + 1}", host.name, port.network, port.mac, port.ip, suffix))
    return vms, services


def _router(check: Checker, config: Config, raw: Any, services: list[ServicePort]) -> Router | None:
    if raw is None:
        if any(s.kind == "router" for s in services):
            check.error("testbed.router", "missing: a qr- port needs the router it belongs to")
        return None
    path = "testbed.router"
    entry = check.mapping(path, raw, ("id", "gateway_port", "external"), required=("id", "gateway_port",
                                                                                  "external"))
    if entry is None or not {"id", "gateway_port", "external"} <= set(entry):
        return None
    gateway = check.mapping(f"{path}.gateway_port", entry["gateway_port"], ("name", "mac", "ip"),
                            required=("name", "mac", "ip")) or {}
    external = check.mapping(f"{path}.external", entry["external"], ("cidr", "host"),
                             required=("cidr", "host")) or {}
    cidr = _network(check, f"{path}.external.cidr", external.get("cidr"))
    host = _address(check, f"{path}.external.host", external.get("host"))
    ip = _address(check, f"{path}.gateway_port.ip", gateway.get("ip"))
    mac = check.mac(f"{path}.gateway_port.mac", gateway.get("mac"))
    name = check.ifname(f"{path}.gateway_port.name", gateway.get("name"))
    router_id = check.text(f"{path}.id", entry["id"], "router id")
    if not any(s.kind == "router" for s in services):
        check.error(path, "a router needs a qr- port on a network host")
    if None in (cidr, host, ip, mac, name, router_id):
        return None
    assert cidr is not None and host is not None and ip is not None
    for label, address in (("external.host", host), ("gateway_port.ip", ip)):
        if address not in cidr:
            check.error(f"{path}.{label}", f"{address} is outside {cidr}")
    return Router(str(router_id), str(name), str(mac), ip, cidr, host)
