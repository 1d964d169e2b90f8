"""What one host's agent knows from Neutron's agent RPC, and the brtun config it amounts to.

The Neutron source (controller/neutronsource.py) speaks Neutron's RPC; this
module is what it learns, kept as state, and turned into the very Config a
YAML file gives (`NeutronState.config`: the same validation, then the same
model, pipeline and change path), so a Neutron-driven br-tun holds exactly
the flows of a YAML config of the same state
(docs/NEUTRON.md, "One model, two sources").

What the messages say, and what becomes of it:

- device details (get_devices_details_list_and_failed_devices) of the VIFs
  on br-int: this host's ports, their networks and segments.  A network is
  carried here while a local port is on it (Neutron's rule, flows.model).
- tunnel_sync's reply, tunnel_update and tunnel_delete: the endpoints.
- l2population's add/remove/update_fdb_entries: per carried network, each
  remote agent's flooding entry and (MAC, IP) entries.  Entries for a
  network not carried here are ignored, as Neutron's agent ignores them
  (it is sent the whole network when its first port there comes up).

Every message is checked completely before it changes anything: a
malformed one (not what Neutron sends) raises `Malformed`, one that
contradicts the state (another segment for a known network, an address
claimed by two MACs) raises `Conflicting`; either way nothing of it is
applied.  Parts that are well formed but mean nothing here (unknown
networks, IPv6, this host's own entries) are ignored and listed in the
result, so the caller can count them.

Pure: no RPC, no switch, no clock.  The refresh marks (`begin_refresh`,
`refreshed`) are generation numbers, not times.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flows import naming
from flows.checker import NAME_PATTERN
from flows.config import MAX_KEY, Config, Options, validate
from flows.naming import TUNNEL_TYPES
from flows.yamlsource import Source

FLOODING_MAC = "00:00:00:00:00:00"  # l2population's flooding entry: (this MAC, this IP)
FLOODING_IP = "0.0.0.0"
REMOTE_DATAPATH_ID = 0xE0 << 56  # remote hosts' bridges are not ours: a unique placeholder per endpoint
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class Malformed(ValueError):
    """A message that is not what Neutron sends: nothing of it is applied."""


class Conflicting(ValueError):
    """A well-formed message that contradicts what this host knows: nothing of it is applied."""


@dataclass(frozen=True)
class LocalHost:
    """This host as its agent's configuration describes it (the Neutron agent options, brtun's own)."""

    name: str
    local_ip: str
    tunnel_types: tuple[str, ...]
    datapath_id: int
    int_datapath_id: int = 0
    cookie: int = 0x5E1EC7AB1E
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:  # addresses compare as text: canonical text, as parsed messages give
        object.__setattr__(self, "local_ip", str(ipaddress.ip_address(self.local_ip)))

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_address(self.local_ip).version


@dataclass(frozen=True)
class Segment:
    type: str
    segmentation_id: int


@dataclass(frozen=True)
class LocalPort:
    """A VIF on this host's br-int, as Neutron's device details describe it."""

    port_id: str
    network_id: str
    segment: Segment
    mac: str
    ips: tuple[str, ...]  # IPv4 fixed IPs, in Neutron's order
    device: str  # its port name on br-int


@dataclass(frozen=True)
class Applied:
    """What a message did: whether the state changed, and the parts ignored (each with its reason)."""

    changed: bool
    ignored: tuple[str, ...] = ()


@dataclass
class _Entry:
    agent_ip: str
    ip: str | None  # the IPv4 address l2population gave with the MAC
    stamp: int


@dataclass
class _NetworkFdb:
    segment: Segment
    flood: dict[str, int] = field(default_factory=dict)  # agent IP -> stamp
    macs: dict[str, _Entry] = field(default_factory=dict)  # MAC -> where it is

    def empty(self) -> bool:
        return not self.flood and not self.macs


@dataclass
class _Endpoint:
    types: set[str] = field(default_factory=set)
    host: str | None = None


@dataclass(frozen=True)
class _FdbNetwork:
    """One network of an fdb message, checked."""

    network_id: str
    segment: Segment | None  # None in chg_ip messages, which do not say
    ports: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (agent IP, ((MAC, IP), ...))


@functools.lru_cache(maxsize=16384)
def _ip_key(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return address.version, int(address)


def _remote_datapath_id(ip: str) -> int:
    """A placeholder datapath ID per remote endpoint, unique among them (bit 48 keeps IPv6 ones apart)."""
    number = naming.endpoint_number(ip)
    return REMOTE_DATAPATH_ID | (number if ipaddress.ip_address(ip).version == 4 else 1 << 48 | number)


# ----- checking what arrives -------------------------------------------------------

def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} must be a non-empty string, not {value!r}"[:200])
    return value


def network_id(value: object) -> str:
    text = _text(value, "a network ID")
    if not NAME_PATTERN.fullmatch(text):
        raise Malformed(f"network ID {text[:80]!r} is not an ID (1-64 letters, digits, '_', '.', '-')")
    return text


def port_id(value: object) -> str:
    text = _text(value, "a port ID")
    if len(text) > 255 or not text.isprintable():
        raise Malformed(f"port ID {text[:80]!r} is not an ID")
    return text


def _ip(value: object, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address; an IPv4 one must be unicast (as flows.checker requires of a config's)."""
    text = _text(value, what)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Malformed(f"{what} {text[:80]!r} is not an IP address") from None
    if address.version == 4 and (address.is_unspecified or address.is_multicast or address.is_loopback
                                 or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255")):
        raise Malformed(f"{what} {address} is not a unicast address")
    return address


def _mac(value: object) -> str:
    text = _text(value, "a MAC address")
    if not _MAC.fullmatch(text):
        raise Malformed(f"{text[:80]!r} is not a MAC address")
    mac = text.lower()
    if int(mac[:2], 16) & 1 or mac == FLOODING_MAC:
        raise Malformed(f"{mac} is not a port's MAC (multicast or all zeros)")
    return mac


def _tunnel_type(value: object) -> str:
    text = _text(value, "a network type")
    if text not in TUNNEL_TYPES:
        raise Malformed(f"network type {text[:40]!r} is not a tunnel type ({', '.join(TUNNEL_TYPES)})")
    return text


def _segment(raw: Mapping[str, Any]) -> Segment:
    tunnel_type = _tunnel_type(raw.get("network_type"))
    number = raw.get("segment_id", raw.get("segmentation_id"))
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_KEY[tunnel_type]:
        raise Malformed(f"segment ID {number!r} is not a {tunnel_type} key (1..{MAX_KEY[tunnel_type]})")
    return Segment(tunnel_type, number)


def _pairs(value: object, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list | tuple):
        raise Malformed(f"{what} must be a list of [MAC, IP] pairs, not {type(value).__name__}")
    pairs = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise Malformed(f"{what}: {item!r} is not a [MAC, IP] pair"[:200])
        mac, ip = item
        if mac == FLOODING_MAC and ip == FLOODING_IP:
            pairs.append((FLOODING_MAC, FLOODING_IP))
            continue
        pairs.append((_mac(mac), str(_ip(ip, "a port's IP"))))
    return tuple(pairs)


def _agent_ports(value: object, what: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} must map agent IPs to [MAC, IP] pairs, not {type(value).__name__}")
    return tuple((str(_ip(agent, "an agent IP")), _pairs(pairs, f"{what}[{agent}]")) for agent, pairs in value.items())


def parse_fdb(entries: object) -> tuple[_FdbNetwork, ...]:
    """add_fdb_entries / remove_fdb_entries: {network ID: {segment_id, network_type, ports}}."""
    if not isinstance(entries, dict):
        raise Malformed(f"fdb_entries must be a mapping, not {type(entries).__name__}")
    parsed = []
    for key, value in entries.items():
        net = network_id(key)
        if not isinstance(value, dict) or "ports" not in value:
            raise Malformed(f"fdb_entries[{net}] must be a mapping with ports")
        parsed.append(_FdbNetwork(net, _segment(value), _agent_ports(value["ports"], f"fdb_entries[{net}].ports")))
    return tuple(parsed)


def parse_chg_ip(entries: object) -> tuple[tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]],
                                           ...]:
    """update_fdb_entries: {"chg_ip": {network ID: {agent IP: {"before": pairs, "after": pairs}}}}
    -> (network, agent IP, before, after) each."""
    if not isinstance(entries, dict) or set(entries) - {"chg_ip"}:
        raise Malformed(f"update_fdb_entries knows only chg_ip, not {sorted(map(str, entries))!r}"[:200]
                        if isinstance(entries, dict) else "fdb_entries must be a mapping")
    changes = []
    networks = entries.get("chg_ip", {})
    if not isinstance(networks, dict):
        raise Malformed("chg_ip must be a mapping of networks")
    for key, agents in networks.items():
        net = network_id(key)
        if not isinstance(agents, dict):
            raise Malformed(f"chg_ip[{net}] must map agent IPs to before/after")
        for agent, change in agents.items():
            ip = str(_ip(agent, "an agent IP"))
            if not isinstance(change, dict) or set(change) - {"before", "after"}:
                raise Malformed(f"chg_ip[{net}][{ip}] must have only before and after")
            before = _pairs(change.get("before", []), f"chg_ip[{net}][{ip}].before")
            after = _pairs(change.get("after", []), f"chg_ip[{net}][{ip}].after")
            if (FLOODING_MAC, FLOODING_IP) in before + after:
                raise Malformed(f"chg_ip[{net}][{ip}] changes the flooding entry")
            changes.append((net, ip, before, after))
    return tuple(changes)


def parse_tunnel(tunnel_ip: object, tunnel_type: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]:
    return _ip(tunnel_ip, "tunnel_ip"), _text(tunnel_type, "tunnel_type")


def parse_tunnel_sync(reply: object) -> tuple[tuple[str, str | None], ...]:
    """tunnel_sync's reply: {"tunnels": [{"ip_address": IP, "host": NAME or None}, ...]} -> (IP, host)."""
    if not isinstance(reply, dict) or not isinstance(reply.get("tunnels"), list):
        raise Malformed("tunnel_sync's reply must be a mapping with a list of tunnels")
    endpoints = []
    for item in reply["tunnels"]:
        if not isinstance(item, dict):
            raise Malformed(f"a tunnel must be a mapping, not {item!r}"[:200])
        host = item.get("host")
        endpoints.append((str(_ip(item.get("ip_address"), "a tunnel's ip_address")),
                          host if isinstance(host, str) and host else None))
    return tuple(endpoints)


@dataclass(frozen=True)
class Details:
    """One device's details as get_devices_details_list_and_failed_devices gives them, checked."""

    device: str
    port: LocalPort | None  # None: not bound here, or nothing brtun can wire
    reason: str = ""  # why not, when port is None


def parse_details(raw: object, device: str, tunnel_types: Iterable[str]) -> Details:
    """A device's details -> the local port it is, or why it is none (Malformed if not Neutron's shape).

    Neutron answers {"device": ID} alone for a port not bound to this host."""
    if not isinstance(raw, dict):
        raise Malformed(f"device details must be a mapping, not {type(raw).__name__}")
    ident = port_id(raw.get("device"))
    if "port_id" not in raw and "network_id" not in raw:
        return Details(ident, None, "not bound to this host")
    pid = port_id(raw.get("port_id"))
    net = network_id(raw.get("network_id"))
    kind = raw.get("network_type")
    if not isinstance(kind, str):
        raise Malformed(f"port {pid}: network_type must be a string, not {kind!r}"[:200])
    if kind not in TUNNEL_TYPES or kind not in tuple(tunnel_types):
        return Details(ident, None, f"its network {net} is {kind}: not a tunnel type of this host")
    segment = _segment({"network_type": kind, "segment_id": raw.get("segmentation_id")})
    mac = _mac(raw.get("mac_address"))
    fixed = raw.get("fixed_ips", [])
    if not isinstance(fixed, list):
        raise Malformed(f"port {pid}: fixed_ips must be a list")
    ips = []
    for item in fixed:
        if not isinstance(item, dict):
            raise Malformed(f"port {pid}: a fixed IP must be a mapping")
        address = _ip(item.get("ip_address"), "a fixed IP")
        if address.version == 4:
            ips.append(str(address))
    if raw.get("admin_state_up", True) is not True:
        return Details(ident, None, "administratively down (Neutron's dead VLAN)")
    return Details(ident, LocalPort(pid, net, segment, mac, tuple(ips), device))


# ----- the state --------------------------------------------------------------------

class NeutronState:
    """What this host knows from Neutron; `config()` is the brtun config it amounts to."""

    def __init__(self, local: LocalHost) -> None:
        self.local = local
        self.local_ports: dict[str, LocalPort] = {}  # port ID -> port
        self.endpoints: dict[str, _Endpoint] = {}  # IP -> its tunnel types and host name
        self.fdb: dict[str, _NetworkFdb] = {}  # carried network -> remote entries
        self._stamp = 0
        self.version = 0  # grows with every change of what config() returns
        self._config: tuple[int, Config] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> NeutronState:
        """A copy to go back to (the config it made is not copied: it is made again)."""
        copied = NeutronState.__new__(NeutronState)
        for name, value in vars(self).items():
            setattr(copied, name, None if name == "_config" else copy.deepcopy(value, memo))
        return copied

    # ----- what is carried ------------------------------------------------------------
    def segments(self) -> dict[str, Segment]:
        """The networks carried here (a local port is on them) and their segments."""
        return {port.network_id: port.segment for port in self.local_ports.values()}

    def _changed(self) -> None:
        self.version += 1

    def _drop_uncarried(self) -> None:
        carried = self.segments()
        for net in [n for n in self.fdb if n not in carried]:
            del self.fdb[net]

    # ----- local ports (device details, port and network deletes) -------------------------
    def set_local_port(self, details: Details) -> Applied:
        """A device's details: wire it as the local port it is, or unwire it (and say why)."""
        if details.port is None:
            gone = self._remove_devices(lambda p: p.device == details.device or p.port_id == details.device)
            return Applied(gone, (f"device {details.device}: {details.reason}",))
        port = details.port
        for other in self.local_ports.values():
            if other.port_id == port.port_id or other.network_id != port.network_id:
                continue
            if other.segment != port.segment:
                raise Conflicting(f"port {port.port_id}: network {port.network_id} is {port.segment.type} "
                                  f"{port.segment.segmentation_id} here already ({other.segment.type} "
                                  f"{other.segment.segmentation_id} for port {other.port_id})")
            if other.mac == port.mac:
                raise Conflicting(f"port {port.port_id}: MAC {port.mac} is port {other.port_id}'s on "
                                  f"network {port.network_id} already")
        if self.local_ports.get(port.port_id) == port:
            return Applied(False)
        self.local_ports[port.port_id] = port
        fdb = self.fdb.get(port.network_id)
        if fdb is not None and fdb.segment != port.segment:  # never mix two segments' entries
            del self.fdb[port.network_id]
        self._drop_uncarried()
        self._changed()
        return Applied(True)

    def _remove_devices(self, which: Any) -> bool:
        gone = [pid for pid, port in self.local_ports.items() if which(port)]
        for pid in gone:
            del self.local_ports[pid]
        if gone:
            self._drop_uncarried()
            self._changed()
        return bool(gone)

    def remove_local_port(self, pid: str) -> Applied:
        """A VIF left br-int, or Neutron deleted its port (port_delete)."""
        return Applied(self._remove_devices(lambda p: p.port_id == pid))

    def remove_network(self, net: str) -> Applied:
        """network_delete: its local ports are gone (their VIFs go to the dead VLAN), and its entries."""
        return Applied(self._remove_devices(lambda p: p.network_id == net))

    def local_ports_on(self, net: str) -> list[str]:
        return sorted(pid for pid, port in self.local_ports.items() if port.network_id == net)

    # ----- endpoints (tunnel_sync, tunnel_update, tunnel_delete) ---------------------------
    def _endpoint_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ignored: list[str]) -> str | None:
        if ip.version != self.local.ip_version:  # Neutron's agent: "IP version mismatch, cannot create tunnel"
            ignored.append(f"endpoint {ip}: IPv{ip.version}, this host's endpoint is IPv{self.local.ip_version} "
                           "(no tunnel between address families)")
            return None
        if str(ip) == self.local.local_ip:
            return None  # this host itself: Neutron's agent skips it too
        return str(ip)

    def tunnel_sync(self, tunnel_type: str, reply: object) -> Applied:
        """tunnel_sync's reply is every endpoint of the type: the ones it no longer lists lose the type."""
        endpoints = parse_tunnel_sync(reply)
        ignored: list[str] = []
        listed = {}
        for address, host in endpoints:
            ip = self._endpoint_ip(ipaddress.ip_address(address), ignored)
            if ip is not None:
                listed[ip] = host
        changed = False
        for ip, endpoint in list(self.endpoints.items()):
            if tunnel_type in endpoint.types and ip not in listed:
                endpoint.types.discard(tunnel_type)
                changed = True
                if not endpoint.types:
                    del self.endpoints[ip]
        for ip, host in listed.items():
            endpoint = self.endpoints.setdefault(ip, _Endpoint())
            if tunnel_type not in endpoint.types or (host and endpoint.host != host):
                endpoint.types.add(tunnel_type)
                endpoint.host = host or endpoint.host
                changed = True
        if changed:
            self._changed()
        return Applied(changed, tuple(ignored))

    def _tunnel_message(self, tunnel_ip: object, tunnel_type: object) -> tuple[str | None, str, list[str]]:
        """tunnel_update's and tunnel_delete's arguments, checked: (endpoint IP or None if ignored, type,
        what was ignored)."""
        address, kind = parse_tunnel(tunnel_ip, tunnel_type)
        ignored: list[str] = []
        ip = self._endpoint_ip(address, ignored)
        if kind not in TUNNEL_TYPES:
            raise Malformed(f"tunnel_type {kind[:40]!r} is not a tunnel type")
        return ip, kind, ignored

    def tunnel_update(self, tunnel_ip: object, tunnel_type: object) -> Applied:
        ip, kind, ignored = self._tunnel_message(tunnel_ip, tunnel_type)
        if ip is None:
            return Applied(False, tuple(ignored))
        endpoint = self.endpoints.setdefault(ip, _Endpoint())
        if kind in endpoint.types:
            return Applied(False)
        endpoint.types.add(kind)
        self._changed()
        return Applied(True)

    def tunnel_delete(self, tunnel_ip: object, tunnel_type: object) -> Applied:
        """The endpoint is gone for this type (its agent was deleted): so are its entries of that type."""
        ip, kind, ignored = self._tunnel_message(tunnel_ip, tunnel_type)
        if ip is None:
            return Applied(False, tuple(ignored))
        changed = False
        endpoint = self.endpoints.get(ip)
        if endpoint is not None and kind in endpoint.types:
            endpoint.types.discard(kind)
            if not endpoint.types:
                del self.endpoints[ip]
            changed = True
        for fdb in self.fdb.values():
            if fdb.segment.type != kind:
                continue
            if fdb.flood.pop(ip, None) is not None:
                changed = True
            for mac in [m for m, e in fdb.macs.items() if e.agent_ip == ip]:
                del fdb.macs[mac]
                changed = True
        if changed:
            self._changed()
        return Applied(changed, tuple(ignored))

    # ----- l2population ---------------------------------------------------------------
    def _fdb_networks(self, parsed: Iterable[_FdbNetwork],
                      ignored: list[str]) -> list[tuple[_FdbNetwork, _NetworkFdb | None]]:
        """The parts for networks carried here (checked against their segments); others are listed ignored."""
        carried = self.segments()
        wanted = []
        for net in parsed:
            segment = carried.get(net.network_id)
            if segment is None:
                ignored.append(f"network {net.network_id}: unknown here (no local port on it)")
                continue
            if net.segment is not None and net.segment != segment:
                raise Conflicting(f"network {net.network_id} is {segment.type} {segment.segmentation_id} here, "
                                  f"the message says {net.segment.type} {net.segment.segmentation_id}")
            wanted.append((net, self.fdb.get(net.network_id)))
        return wanted

    def _agent_parts(self, net: _FdbNetwork, ignored: list[str]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        parts = []
        for agent, pairs in net.ports:
            address = ipaddress.ip_address(agent)
            if address.version != self.local.ip_version:
                ignored.append(f"network {net.network_id}: agent {agent}: IPv{address.version} endpoint, this "
                               f"host's is IPv{self.local.ip_version} (no tunnel between address families)")
                continue
            if agent == self.local.local_ip:
                continue  # this host's own entries, in every fanout: Neutron's agent skips them too
            parts.append((agent, pairs))
        return parts

    def add_fdb(self, entries: object) -> Applied:
        """add_fdb_entries: flooding entries and (MAC, IP) entries of remote agents."""
        parsed = parse_fdb(entries)
        ignored: list[str] = []
        plan = []  # (network, fdb or None, flood agents, {mac: (agent, ip)})
        for net, fdb in self._fdb_networks(parsed, ignored):
            floods: list[str] = []
            macs: dict[str, tuple[str, str | None]] = {}
            for agent, pairs in self._agent_parts(net, ignored):
                for mac, ip in pairs:
                    if mac == FLOODING_MAC:
                        floods.append(agent)
                        continue
                    if ipaddress.ip_address(ip).version != 4:
                        ignored.append(f"network {net.network_id}: {mac} {ip}: IPv6 address (no ARP entry)")
                        ip = None  # the MAC still counts; its IPv6 address has no table 21 entry
                    current = macs.get(mac)
                    if current is None and fdb is not None and mac in fdb.macs \
                            and fdb.macs[mac].agent_ip == agent:
                        current = (agent, fdb.macs[mac].ip)  # known here already, with the IP it has
                    if current is not None and current[0] != agent and mac in macs:
                        raise Conflicting(f"network {net.network_id}: {mac} announced on both {current[0]} "
                                          f"and {agent}")
                    if current is not None and current[0] == agent and current[1] is not None:
                        if ip is not None and ip != current[1]:
                            ignored.append(f"network {net.network_id}: {mac} {ip}: a further IP of the MAC "
                                           f"(brtun keeps {current[1]})")
                        ip = current[1]
                    macs[mac] = (agent, ip)
            self._check_addresses(net.network_id, macs)
            plan.append((net, fdb, floods, macs))
        changed = False
        self._stamp += 1
        for net, fdb, floods, macs in plan:
            if fdb is None:
                assert net.segment is not None
                fdb = self.fdb[net.network_id] = _NetworkFdb(net.segment)
            for agent in floods:
                changed |= agent not in fdb.flood
                fdb.flood[agent] = self._stamp
            self._take_addresses(fdb, macs, ignored, net.network_id)
            for mac, (agent, ip) in macs.items():
                entry = fdb.macs.get(mac)
                if entry is not None and (entry.agent_ip, entry.ip) == (agent, ip):
                    entry.stamp = self._stamp  # announced again: still there
                    continue
                fdb.macs[mac] = _Entry(agent, ip, self._stamp)  # new, moved to another agent, or its IP now known
                changed = True
        if changed:
            self._changed()
        return Applied(changed, tuple(ignored))

    @staticmethod
    def _check_addresses(net: str, macs: Mapping[str, tuple[str, str | None]]) -> None:
        """One message gives an IPv4 address to one MAC: giving it to two is refused.  (A message giving a
        MAC an address another MAC had before wins, as in Neutron's ARP responder: `_take_addresses`.)"""
        owner: dict[str, str] = {}
        for mac, (_agent, ip) in macs.items():
            if ip is None:
                continue
            if ip in owner:
                raise Conflicting(f"network {net}: the message gives {ip} to both {owner[ip]} and {mac}")
            owner[ip] = mac

    @staticmethod
    def _take_addresses(fdb: _NetworkFdb, macs: Mapping[str, tuple[str, str | None]], ignored: list[str],
                        net: str) -> None:
        """The addresses a message gives are no longer other MACs' (an address reused after its port was
        deleted while this host heard nothing, say)."""
        given = {ip: mac for mac, (_agent, ip) in macs.items() if ip is not None}
        for mac, entry in fdb.macs.items():
            if entry.ip in given and given[entry.ip] != mac:
                ignored.append(f"network {net}: {entry.ip} moves from {mac} to {given[entry.ip]} (the newest "
                               "announcement wins)")
                entry.ip = None

    def remove_fdb(self, entries: object) -> Applied:
        """remove_fdb_entries: an agent's flooding entry, or MACs, are gone (only where that agent has them)."""
        parsed = parse_fdb(entries)
        ignored: list[str] = []
        plan = [(net, fdb, self._agent_parts(net, ignored)) for net, fdb in self._fdb_networks(parsed, ignored)]
        changed = False
        for net, fdb, parts in plan:
            if fdb is None:
                continue
            for agent, pairs in parts:
                for mac, _ip in pairs:
                    if mac == FLOODING_MAC:
                        changed |= fdb.flood.pop(agent, None) is not None
                        continue
                    entry = fdb.macs.get(mac)
                    if entry is not None and entry.agent_ip == agent:
                        del fdb.macs[mac]
                        changed = True
            if fdb.empty():
                del self.fdb[net.network_id]
        if changed:
            self._changed()
        return Applied(changed, tuple(ignored))

    def update_fdb(self, entries: object) -> Applied:
        """update_fdb_entries (chg_ip): a MAC's IP changed; the MAC stays where it is."""
        changes = parse_chg_ip(entries)
        ignored: list[str] = []
        carried = self.segments()
        plan = []
        for net, agent, before, after in changes:
            if net not in carried:
                ignored.append(f"network {net}: unknown here (no local port on it)")
                continue
            if agent == self.local.local_ip:
                continue
            fdb = self.fdb.get(net)
            current = {mac: entry.ip for mac, entry in fdb.macs.items()} if fdb else {}
            agents = {mac: entry.agent_ip for mac, entry in fdb.macs.items()} if fdb else {}
            new = dict(current)
            for mac, ip in before:
                if agents.get(mac) == agent and new.get(mac) == ip:
                    new[mac] = None
            for mac, ip in after:
                if agents.get(mac) != agent:
                    ignored.append(f"network {net}: {mac}: not known on {agent} (chg_ip changes known MACs only)")
                    continue
                if ipaddress.ip_address(ip).version != 4:
                    ignored.append(f"network {net}: {mac} {ip}: IPv6 address (no ARP entry)")
                elif new.get(mac) is None:
                    new[mac] = ip
                else:
                    ignored.append(f"network {net}: {mac} {ip}: a further IP of the MAC (brtun keeps {new[mac]})")
            changed_macs = {mac: (agents[mac], ip) for mac, ip in new.items() if current.get(mac) != ip}
            self._check_addresses(net, changed_macs)
            plan.append((net, fdb, changed_macs))
        changed = False
        for net, fdb, macs in plan:
            if not macs:
                continue
            assert fdb is not None
            self._take_addresses(fdb, macs, ignored, net)
            for mac, (_agent, ip) in macs.items():
                fdb.macs[mac].ip = ip
                changed = True
        if changed:
            self._changed()
        return Applied(changed, tuple(ignored))

    # ----- refresh: what a full resync re-announces ------------------------------------------
    def begin_refresh(self) -> int:
        """Mark now (a resync asks l2population for every network again): see `refreshed`.

        Nothing is dropped for not being announced again: l2population refreshes a host one port at a time
        (each with its host's flooding entry), and a message lost while the bus came back would cut a
        network off.  Neutron's agent keeps its entries too; a MAC or address announced again elsewhere
        takes an old entry over (`add_fdb`)."""
        self._stamp += 1
        return self._stamp

    def refreshed(self, mark: int) -> set[str]:
        """The carried networks that got an add_fdb_entries since `mark`."""
        return {net for net, fdb in self.fdb.items()
                if any(stamp >= mark for stamp in fdb.flood.values())
                or any(entry.stamp >= mark for entry in fdb.macs.values())}

    # ----- the config -----------------------------------------------------------------
    def raw(self) -> dict[str, Any]:
        """The state as the data of a brtun YAML config (`brtun render` gives the same flows for it)."""
        local = self.local
        segments = self.segments()
        networks = {net: {"type": seg.type, "segmentation_id": seg.segmentation_id}
                    for net, seg in sorted(segments.items())}
        local_ports, taken = self._local_ports(segments)
        remotes = self._remotes(segments, taken)
        local_entry: dict[str, Any] = {"datapath_id": hex(local.datapath_id), "local_ip": local.local_ip,
                                       "tunnel_types": list(local.tunnel_types), "ports": local_ports}
        if local.int_datapath_id:
            local_entry["int_datapath_id"] = hex(local.int_datapath_id)
        hosts: dict[str, Any] = {local.name: local_entry}
        hosts.update(remotes)
        options = local.options
        return {"cookie": hex(local.cookie),
                "options": {"l2_population": options.l2_population, "arp_responder": options.arp_responder,
                            "learn_hard_timeout": options.learn_hard_timeout,
                            "dont_fragment": options.dont_fragment, "tunnel_csum": options.tunnel_csum,
                            "dscp_inherit": options.dscp_inherit, "vxlan_udp_port": options.vxlan_udp_port,
                            "underlay_mtu": options.underlay_mtu,
                            "geneve_max_header_size": options.geneve_max_header_size,
                            **({"dscp": options.dscp} if options.dscp is not None else {})},
                "networks": networks, "hosts": hosts}

    def _local_ports(self, segments: Mapping[str, Segment]) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
        ports = []
        taken: set[tuple[str, str]] = set()  # (network, MAC or IP) used here: remote entries never repeat them
        for port in sorted(self.local_ports.values(), key=lambda p: (p.device, p.port_id)):
            entry: dict[str, Any] = {"network": port.network_id, "mac": port.mac, "name": port.device}
            ip = next((ip for ip in port.ips if (port.network_id, ip) not in taken), None)
            if ip is not None:
                entry["ip"] = ip
                taken.add((port.network_id, ip))
            taken.add((port.network_id, port.mac))
            ports.append(entry)
        return ports, taken

    def _remote_name(self, ip: str, used: set[str]) -> str:
        endpoint = self.endpoints.get(ip)
        host = endpoint.host if endpoint is not None else None
        if host and NAME_PATTERN.fullmatch(host) and host not in used:
            return host
        return "ip-" + ip.replace(".", "-").replace(":", "-")

    def _remotes(self, segments: Mapping[str, Segment], taken: set[tuple[str, str]]) -> dict[str, Any]:
        local_types = set(self.local.tunnel_types)
        agents: dict[str, dict[str, Any]] = {}  # IP -> its host entry
        if not self.local.options.l2_population:
            for ip, endpoint in self.endpoints.items():
                if endpoint.types & local_types:
                    agents[ip] = {"types": set(endpoint.types), "ports": [], "carries": []}
        for net, fdb in sorted(self.fdb.items()):
            if net not in segments:
                continue
            for agent in sorted(fdb.flood):
                entry = agents.setdefault(agent, {"types": set(), "ports": [], "carries": []})
                entry["types"].add(fdb.segment.type)
                entry["carries"].append(net)
            for mac, where in sorted(fdb.macs.items()):
                entry = agents.setdefault(where.agent_ip, {"types": set(), "ports": [], "carries": []})
                entry["types"].add(fdb.segment.type)
                if where.ip is None or (net, mac) in taken or (net, where.ip) in taken:
                    if net not in entry["carries"]:
                        entry["carries"].append(net)
                    continue
                entry["ports"].append({"network": net, "mac": mac, "ip": where.ip})
                taken.update({(net, mac), (net, where.ip)})
        hosts: dict[str, Any] = {}
        used = {self.local.name}
        for ip in sorted(agents, key=_ip_key):
            agent = agents[ip]
            endpoint = self.endpoints.get(ip)
            types = agent["types"] | (endpoint.types if endpoint is not None else set())
            name = self._remote_name(ip, used)
            used.add(name)
            entry: dict[str, Any] = {"datapath_id": hex(_remote_datapath_id(ip)),
                                     "local_ip": ip, "tunnel_types": [t for t in TUNNEL_TYPES if t in types]}
            with_ports = {port["network"] for port in agent["ports"]}
            carries = [net for net in agent["carries"] if net not in with_ports]
            if agent["ports"]:
                entry["ports"] = agent["ports"]
            if carries:
                entry["carries"] = carries
            hosts[name] = entry
        return hosts

    def config(self) -> Config:
        """The brtun config this state amounts to, validated as a YAML file is (InvalidConfig if not)."""
        if self._config is not None and self._config[0] == self.version:
            return self._config[1]
        config = validate(Source(self.raw()))
        self._config = (self.version, config)
        return config
