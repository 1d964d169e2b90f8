"""The brtun config: its values, and validation that reports every error at once.

The YAML shape is a contract (README, "Config reference").  Validation
never stops at the first problem: it collects each error with the path of
the field and the reason, so one run of `brtun check` shows everything that
must be fixed, and nothing is applied while any error remains.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flows import naming, yamlsource
from flows.checker import Checker, ConfigError
from flows.naming import TUNNEL_TYPES

DEFAULT_COOKIE = 0x5E1EC7AB1E  # stable across restarts, so flows stay ours
MAX_KEY = {"gre": 2**32 - 1, "vxlan": 2**24 - 1, "geneve": 2**24 - 1}
MAX_VLAN = naming.DEAD_VLAN - 1  # local VLANs are 1..4094


VXLAN_UDP_PORT = 4789  # IANA's, and Neutron's default vxlan_udp_port


@dataclass(frozen=True)
class Options:
    """The agent options brtun shares with Neutron's Open vSwitch agent, under Neutron's names and
    defaults (its [agent] section), plus learn_hard_timeout (Neutron's is fixed at 300 s)."""

    l2_population: bool = False
    arp_responder: bool = False
    learn_hard_timeout: int = 300
    dont_fragment: bool = True  # tunnel ports' df_default
    tunnel_csum: bool = False  # tunnel ports' csum
    dscp: int | None = None  # 0..63: tunnel ports' tos = dscp << 2
    dscp_inherit: bool = False  # tunnel ports' tos = inherit
    vxlan_udp_port: int = VXLAN_UDP_PORT  # VXLAN ports' dst_port when not the default
    underlay_mtu: int = 1500  # Neutron's global_physnet_mtu: what the underlay carries (flows.mtu)
    geneve_max_header_size: int = 30  # Neutron's ml2_type_geneve max_header_size: Geneve with its options


@dataclass(frozen=True)
class Network:
    name: str
    type: str
    segmentation_id: int


@dataclass(frozen=True, slots=True)
class Port:
    """A VM or service port (Neutron port) on a host's br-int.  Slots: a large config holds
    tens of thousands."""

    network: str
    mac: str  # lower case, colon separated
    ip: str | None = None
    name: str | None = None  # br-int port name; otherwise matched by attached-mac


@dataclass(frozen=True)
class Host:
    name: str
    datapath_id: int
    local_ip: str
    tunnel_types: tuple[str, ...]
    local_vlans: tuple[tuple[str, int], ...] = ()  # as configured; the rest are assigned
    ofports: tuple[tuple[str, int], ...] = ()  # as configured; the rest follow the rule
    ports: tuple[Port, ...] = ()
    int_datapath_id: int = 0  # br-int's; 0 means datapath_id | INT_DATAPATH_ID_BIT
    carries: tuple[str, ...] = ()  # networks carried without a port listed (l2population's flooding entry)

    @property
    def br_int_datapath_id(self) -> int:
        return self.int_datapath_id or (self.datapath_id | INT_DATAPATH_ID_BIT)

    @cached_property
    def carried_networks(self) -> frozenset[str]:
        """Neutron: a host carries a network when it has a port on it, or when l2population announces
        it with the flooding entry alone (its ports there have no fixed IP): `carries` (cached: asked
        per network)."""
        return frozenset(port.network for port in self.ports) | frozenset(self.carries)


@dataclass(frozen=True)
class Config:
    cookie: int
    options: Options
    networks: tuple[Network, ...]
    hosts: tuple[Host, ...]
    testbed: Any = None

    def network(self, name: str) -> Network:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(name)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(host.name for host in self.hosts)


class InvalidConfig(ValueError):
    """Raised with every error found; str() lists them one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = tuple(errors)


_TOP_KEYS = ("cookie", "options", "networks", "hosts", "testbed")
_OPTION_KEYS = ("l2_population", "arp_responder", "learn_hard_timeout", "dont_fragment", "tunnel_csum", "dscp",
                "dscp_inherit", "vxlan_udp_port", "underlay_mtu", "geneve_max_header_size")
_NETWORK_KEYS = ("type", "segmentation_id")
_HOST_KEYS = ("datapath_id", "int_datapath_id", "local_ip", "tunnel_types", "local_vlans", "ofports",
              "ports", "carries")
INT_DATAPATH_ID_BIT = 1 << 60  # default br-int datapath ID: br-tun's with this bit set
_PORT_KEYS = ("network", "mac", "ip", "name")


def load_config(path: str) -> Config:
    """Read and validate a config file; raise InvalidConfig listing every problem."""
    return parse_config(read_config_text(path))


def read_config_text(path: str) -> str:
    """A config file's text: at most yamlsource.MAX_BYTES of UTF-8 (InvalidConfig otherwise)."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size  # 0 for a pipe: then only what is read counts
            data = b"" if size > yamlsource.MAX_BYTES else stream.read(yamlsource.MAX_BYTES + 1)
    except OSError as error:
        raise InvalidConfig([ConfigError(path, f"cannot read: {error.strerror}")]) from None
    try:
        if size > yamlsource.MAX_BYTES:
            raise yamlsource.too_large(size)
        return yamlsource.decode(data)
    except yamlsource.YamlError as error:
        raise InvalidConfig([ConfigError("(file)", str(error), error.line)]) from None


def parse_config(text: str) -> Config:
    """The config in `text`, validated; InvalidConfig lists every problem, each with its line (a valid
    config's origins are never read: flows.yamlsource.Source)."""
    try:
        source = yamlsource.load(text)
    except yamlsource.YamlError as error:
        raise InvalidConfig([ConfigError("(file)", str(error), error.line)]) from None
    return validate(source)


def validate(source: yamlsource.Source) -> Config:
    check = Checker(source)
    for path, line in source.duplicates:
        check.error(path, "given twice (YAML would silently keep the last)", line=line)
    top = check.mapping("", source.data, _TOP_KEYS, required=("networks", "hosts"))
    if top is None:
        raise InvalidConfig(check.errors)
    cookie = DEFAULT_COOKIE
    if "cookie" in top:
        cookie = check.integer("cookie", top["cookie"], 1, 2**64 - 2, hex_text=True) or DEFAULT_COOKIE
    options = _options(check, top.get("options", {}))
    networks = _networks(check, top.get("networks"))
    hosts = _hosts(check, top.get("hosts"), networks)
    _check_unique_addresses(check, hosts)
    _check_families(check, hosts)
    ports = _PortIndex(hosts) if any(host.ofports for host in hosts) else None
    for host in hosts:
        _check_ofports(check, host, hosts, ports)
    if check.errors:
        raise InvalidConfig(check.errors)
    return Config(cookie, options, tuple(networks.values()), tuple(hosts), top.get("testbed"))


def _options(check: Checker, raw: object) -> Options:
    given = check.mapping("options", raw, _OPTION_KEYS)
    if given is None:
        return Options()
    values: dict[str, Any] = {}
    for name in ("l2_population", "arp_responder", "dont_fragment", "tunnel_csum", "dscp_inherit"):
        if name in given:
            flag = check.boolean(f"options.{name}", given[name])
            if flag is not None:
                values[name] = flag
    for name, low, high, what in (("learn_hard_timeout", 1, 65535, "seconds"), ("dscp", 0, 63, "DSCP value"),
                                  ("vxlan_udp_port", 1, 65535, "UDP port"), ("underlay_mtu", 1280, 9216, "MTU"),
                                  ("geneve_max_header_size", 30, 260, "bytes")):
        if name in given:
            number = check.integer(f"options.{name}", given[name], low, high, what=what)
            if number is not None:
                values[name] = number
    options = Options(**values)
    if options.arp_responder and not options.l2_population:
        check.error("options.arp_responder",
                    "works only with l2_population: true (Neutron turns it off otherwise)")
    if options.dscp_inherit and options.dscp is not None:
        check.error("options.dscp", "give dscp or dscp_inherit: true, not both (Neutron would ignore dscp)")
    return options


def _networks(check: Checker, raw: object) -> dict[str, Network]:
    given = check.mapping("networks", raw, None)
    networks: dict[str, Network] = {}
    if given is None:
        return networks
    keys_seen: dict[tuple[str, int], str] = {}
    for key, value in given.items():
        name = check.name("networks", key)
        if name is None:
            continue
        path = f"networks.{name}"
        entry = check.mapping(path, value, _NETWORK_KEYS, required=_NETWORK_KEYS)
        if entry is None:
            continue
        tunnel_type = check.choice(f"{path}.type", entry.get("type"), TUNNEL_TYPES, "tunnel type")
        if tunnel_type is None or "segmentation_id" not in entry:
            continue
        key_id = check.integer(f"{path}.segmentation_id", entry["segmentation_id"], 1,
                               MAX_KEY[tunnel_type], what=f"{tunnel_type} key")
        if key_id is None:
            continue
        other = keys_seen.get((tunnel_type, key_id))
        if other is not None:
            check.error(f"{path}.segmentation_id",
                        f"{key_id} is already the key of {tunnel_type} network {other}")
            continue
        keys_seen[(tunnel_type, key_id)] = name
        networks[name] = Network(name, tunnel_type, key_id)
    return networks


def _hosts(check: Checker, raw: object, networks: Mapping[str, Network]) -> list[Host]:
    given = check.mapping("hosts", raw, None)
    if given is None:
        return []
    used_types = tuple(t for t in TUNNEL_TYPES if any(n.type == t for n in networks.values()))
    hosts = []
    dpid_owner: dict[int, str] = {}
    ip_owner: dict[str, str] = {}
    for key, value in given.items():
        name = check.name("hosts", key)
        if name is None:
            continue
        host, dpid, local_ip = _host(check, name, value, networks, used_types)
        dpids = [("datapath_id", dpid)]
        if host is not None and (host.int_datapath_id or dpid not in dpid_owner):
            dpids.append(("int_datapath_id", host.br_int_datapath_id))
        for field, number in dpids:
            if number is not None and number in dpid_owner:
                check.error(f"hosts.{name}.{field}",
                            f"{number:#x} is already the datapath ID of {dpid_owner[number]}")
            elif number is not None:
                dpid_owner[number] = f"{name}'s {'br-tun' if field == 'datapath_id' else 'br-int'}"
        if local_ip is not None and local_ip in ip_owner:
            check.error(f"hosts.{name}.local_ip",
                        f"{local_ip} is already the local_ip of {ip_owner[local_ip]}")
        elif local_ip is not None:
            ip_owner[local_ip] = name
        if host is not None:
            hosts.append(host)
    return hosts


def _host(check: Checker, name: str, raw: object, networks: Mapping[str, Network],
          used_types: tuple[str, ...]) -> tuple[Host | None, int | None, str | None]:
    """The host, plus its datapath ID and endpoint on their own, so that
    uniqueness is checked even when another field of the host is wrong."""
    path = f"hosts.{name}"
    entry = check.mapping(path, raw, _HOST_KEYS, required=("datapath_id", "local_ip"))
    if entry is None:
        return None, None, None
    dpid = None
    if "datapath_id" in entry:
        dpid = check.integer(f"{path}.datapath_id", entry["datapath_id"], 1, 2**64 - 1,
                             hex_text=True, what="datapath ID")
    local_ip = check.endpoint(f"{path}.local_ip", entry.get("local_ip")) if "local_ip" in entry else None
    tunnel_types = used_types
    if "tunnel_types" in entry:
        listed = check.string_list(f"{path}.tunnel_types", entry["tunnel_types"])
        chosen = [check.choice(f"{path}.tunnel_types[{i}]", item, TUNNEL_TYPES, "tunnel type")
                  for i, item in enumerate(listed)]
        tunnel_types = tuple(t for t in TUNNEL_TYPES if t in chosen)
    ports = _ports(check, path, entry.get("ports", []), networks, tunnel_types, "tunnel_types" in entry)
    carries = _carries(check, path, entry.get("carries", []), networks, tunnel_types)
    local_vlans = _local_vlans(check, path, entry.get("local_vlans", {}), networks)
    ofports = _explicit_ofports(check, path, entry.get("ofports", {}))
    int_dpid = 0
    if "int_datapath_id" in entry:
        int_dpid = check.integer(f"{path}.int_datapath_id", entry["int_datapath_id"], 1, 2**64 - 1,
                                 hex_text=True, what="datapath ID") or 0
    if dpid is None or local_ip is None:
        return None, dpid, local_ip
    host = Host(name, dpid, local_ip, tunnel_types, local_vlans, ofports, ports, int_dpid, carries)
    return host, dpid, local_ip


def _ports(check: Checker, host_path: str, raw: object, networks: Mapping[str, Network],
           tunnel_types: tuple[str, ...], types_listed: bool) -> tuple[Port, ...]:
    items = check.sequence(f"{host_path}.ports", raw)
    ports = []
    names: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"{host_path}.ports[{index}]"
        entry = check.mapping(path, item, _PORT_KEYS, required=("network", "mac"))
        if entry is None:
            continue
        network = check.known(f"{path}.network", entry.get("network"), networks, "network")
        mac = check.mac(f"{path}.mac", entry["mac"]) if "mac" in entry else None
        ip = check.tenant_ip(f"{path}.ip", entry["ip"]) if "ip" in entry else None
        port_name = None
        if "name" in entry:
            port_name = check.ifname(f"{path}.name", entry["name"])
            if port_name is not None and port_name in names:
                check.error(f"{path}.name", f"{port_name} is already ports[{names[port_name]}]")
            elif port_name is not None:
                names[port_name] = index
        if network is not None and networks[network].type not in tunnel_types:
            where = "tunnel_types" if types_listed else "the types of the networks"
            check.error(f"{path}.network",
                        f"{network} is a {networks[network].type} network, but this host's "
                        f"{where} are [{', '.join(tunnel_types)}]")
            continue
        if network is not None and mac is not None:
            ports.append(Port(network, mac, ip, port_name))
    return tuple(ports)


def _carries(check: Checker, host_path: str, raw: object, networks: Mapping[str, Network],
             tunnel_types: tuple[str, ...]) -> tuple[str, ...]:
    path = f"{host_path}.carries"
    carried = []
    for index, item in enumerate(check.string_list(path, raw)):
        network = check.known(f"{path}[{index}]", item, networks, "network")
        if network is None:
            continue
        if networks[network].type not in tunnel_types:
            check.error(f"{path}[{index}]", f"{network} is a {networks[network].type} network, not one of this "
                        f"host's tunnel types [{', '.join(tunnel_types)}]")
        elif network not in carried:
            carried.append(network)
    return tuple(carried)


def _local_vlans(check: Checker, host_path: str, raw: object,
                 networks: Mapping[str, Network]) -> tuple[tuple[str, int], ...]:
    path = f"{host_path}.local_vlans"
    given = check.mapping(path, raw, None)
    if given is None:
        return ()
    result = []
    owner: dict[int, str] = {}
    for key, value in given.items():
        network = check.known_key(path, key, networks, "network")
        if network is None:
            continue
        vlan = check.integer(f"{path}.{network}", value, 1, MAX_VLAN, what="local VLAN")
        if vlan is None:
            continue
        if vlan in owner:
            check.error(f"{path}.{network}", f"VLAN {vlan} is already the local VLAN of {owner[vlan]}")
            continue
        owner[vlan] = network
        result.append((network, vlan))
    return tuple(result)


def _explicit_ofports(check: Checker, host_path: str, raw: object) -> tuple[tuple[str, int], ...]:
    path = f"{host_path}.ofports"
    given = check.mapping(path, raw, None)
    if given is None:
        return ()
    result = []
    for key, value in given.items():
        name = check.text(f"{path}#key", key, what="port name", shown_path=f"{path}.{key}")
        if name is None:
            continue
        number = check.integer(f"{path}.{name}", value, 1, naming.MAX_OFPORT, what="ofport")
        if number is not None:
            result.append((name, number))
    return tuple(result)


def possible_tunnel_ports(host: Host, hosts: list[Host] | tuple[Host, ...]) -> dict[str, tuple[str, Host]]:
    """Every tunnel port the host could have (all of them without l2population)."""
    result = {}
    for remote in hosts:
        if remote.name == host.name:
            continue
        for tunnel_type in host.tunnel_types:
            if tunnel_type in remote.tunnel_types:
                result[naming.tunnel_port_name(tunnel_type, remote.local_ip)] = (tunnel_type, remote)
    return result


class _PortIndex:
    """Every tunnel port name of the config, with the remote host and type it leads to: whether
    an explicit ofport names a port of its host is then a lookup, not a walk over every host
    (2,000 hosts that each pin an ofport took 7.7 s)."""

    LISTED = 20  # hosts whose error lists their ports; past that, a config is mostly wrong anyway

    def __init__(self, hosts: list[Host]) -> None:
        self._remotes: dict[str, list[tuple[str, Host]]] = {}
        for remote in hosts:
            for tunnel_type in remote.tunnel_types:
                self._remotes.setdefault(naming.tunnel_port_name(tunnel_type, remote.local_ip), []).append(
                    (tunnel_type, remote))
        self.listed = 0

    def on(self, host: Host, name: str) -> bool:
        """Whether `host` could have the tunnel port `name`."""
        return any(tunnel_type in host.tunnel_types and remote.name != host.name
                   for tunnel_type, remote in self._remotes.get(name, ()))


def _check_ofports(check: Checker, host: Host, hosts: list[Host], ports: _PortIndex | None = None) -> None:
    """Explicit ofports must name real ports and be distinct; the rest are allocated around them
    (flows.model.allocate_ofports), so nothing else can collide."""
    if not host.ofports:
        return  # the common case, and the cheap one: every other port is only allocated
    path = f"hosts.{host.name}.ofports"
    ports = ports or _PortIndex(hosts)
    owner: dict[int, str] = {}
    for name, number in host.ofports:
        if name != naming.PATCH_INT and not ports.on(host, name):
            ports.listed += 1
            if ports.listed <= _PortIndex.LISTED:
                choices = [naming.PATCH_INT, *sorted(possible_tunnel_ports(host, hosts))]
                which = " (its ports: " + ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "") + ")"
            else:
                which = " (`brtun render` lists its flows)"
            check.error(f"{path}.{name}", "no such port on this host's br-tun" + which)
        elif number in owner:
            check.error(f"{path}.{name}", f"{number} is already the ofport of {owner[number]}")
        else:
            owner[number] = name


def _check_families(check: Checker, hosts: list[Host]) -> None:
    """Neutron makes no tunnel between an IPv4 and an IPv6 endpoint (its agent logs "IP version
    mismatch, cannot create tunnel"): hosts that share a tunnel type share an address family.
    Each host of the smaller family (IPv6 on a tie) is named once, with a host of the other."""
    reported: set[str] = set()
    for tunnel_type in TUNNEL_TYPES:
        speaking: dict[int, list[Host]] = {4: [], 6: []}
        for host in hosts:
            if tunnel_type in host.tunnel_types:
                speaking[ipaddress.ip_address(host.local_ip).version].append(host)
        if not speaking[4] or not speaking[6]:
            continue
        fewer = 4 if len(speaking[4]) < len(speaking[6]) else 6
        other = speaking[10 - fewer][0]
        for host in speaking[fewer]:
            if host.name not in reported:
                reported.add(host.name)
                check.error(f"hosts.{host.name}.local_ip",
                            f"{host.local_ip} is IPv{fewer}, but hosts.{other.name}.local_ip {other.local_ip} is "
                            f"IPv{10 - fewer} and both speak {tunnel_type}: Neutron makes no tunnel between address "
                            "families (give every host of a tunnel type the same family)")


def _check_unique_addresses(check: Checker, hosts: list[Host]) -> None:
    """Neutron keeps MACs and fixed IPs unique per network (not across networks)."""
    macs: dict[tuple[str, str], str] = {}
    ips: dict[tuple[str, str], str] = {}
    for host in hosts:
        for index, port in enumerate(host.ports):
            path = f"hosts.{host.name}.ports[{index}]"
            if (port.network, port.mac) in macs:
                check.error(f"{path}.mac", f"{port.mac} is already used on {port.network} by "
                            f"{macs[(port.network, port.mac)]}")
            macs.setdefault((port.network, port.mac), path)
            if port.ip is None:
                continue
            if (port.network, port.ip) in ips:
                check.error(f"{path}.ip", f"{port.ip} is already used on {port.network} by "
                            f"{ips[(port.network, port.ip)]}")
            ips.setdefault((port.network, port.ip), path)
