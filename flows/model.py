"""One host's br-tun as Neutron's agent would see it, derived from the config.

Neutron's rules (docs/PIPELINE.md) live here: which networks a host carries and
their local VLANs, which tunnel ports exist with and without l2population,
each network's flood list, and the l2population unicast/ARP entries.
Nothing is accumulated: the same config always gives the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flows import fields, naming
from flows.config import Config, Host, Options, Port, possible_tunnel_ports


@dataclass(frozen=True)
class TunnelPort:
    name: str
    type: str
    remote_ip: str
    remote_host: str
    ofport: int


@dataclass(frozen=True, slots=True)
class LocalNetwork:
    """A network this host carries, with its host-specific local VLAN."""

    name: str
    type: str
    segmentation_id: int
    local_vlan: int
    flood_ofports: tuple[int, ...]  # the tunnel ports table 22 outputs to, ascending


@dataclass(frozen=True, slots=True)
class RemotePort:
    """A port on another host, as l2population announces it (an FDB entry: it has a fixed IP).
    Slots: one per (network, remote port), kept as long as the desired flows."""

    network: str
    mac: int
    ip: int
    host: str
    ofport: int  # the tunnel port toward its host


@dataclass(frozen=True)
class BridgeModel:
    host: str
    datapath_id: int
    local_ip: str
    cookie: int
    options: Options
    patch_int_ofport: int
    tunnel_ports: tuple[TunnelPort, ...]
    networks: tuple[LocalNetwork, ...]
    remote_ports: tuple[RemotePort, ...]  # empty without l2population

    def network(self, name: str) -> LocalNetwork:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(name)


def local_vlans(host: Host, config: Config) -> dict[str, int]:
    """Configured VLANs, then the lowest free VLAN for each carried network in config order."""
    assigned = dict(host.local_vlans)
    used = set(assigned.values())
    free = (vlan for vlan in range(1, naming.DEAD_VLAN) if vlan not in used)
    for network in config.networks:
        if network.name in host.carried_networks and network.name not in assigned:
            assigned[network.name] = next(free)
    return {name: vlan for name, vlan in assigned.items() if name in host.carried_networks}


def allocate_ofports(host: Host, config: Config, existing: Mapping[str, int] | None = None) -> dict[str, int]:
    """The ofport of every port this host's br-tun could have (flows.naming explains the rule).

    Explicit ofports first, then the numbers the switch's ports already have (`existing`, every
    port of the bridge: a number in use is never asked for again), then each remaining port, in
    name order, its preferred number if free, else the lowest free spare number.  On an empty
    switch this is what `brtun render` shows; on a running one, ports keep what they have."""
    explicit = dict(host.ofports)
    seen = dict(existing or {})
    possible = possible_tunnel_ports(host, config.hosts)
    names = [naming.PATCH_INT, *sorted(possible)]
    result = {name: explicit.get(name) or seen[name] for name in names if name in explicit or name in seen}
    taken = set(explicit.values()) | set(seen.values()) | set(result.values())
    spare = naming.FIRST_SPARE_OFPORT
    for name in names:
        if name in result:
            continue
        if name == naming.PATCH_INT:
            number = naming.PATCH_INT_OFPORT
        else:
            tunnel_type, remote = possible[name]
            number = naming.preferred_ofport(tunnel_type, remote.local_ip)
        if number in taken:
            while spare in taken:
                spare += 1
            if spare > naming.MAX_OFPORT:
                raise ValueError(f"{host.name}: more br-tun ports than Open vSwitch can number")
            number = spare
        result[name] = number
        taken.add(number)
    return result


def requested_ofports(host: Host, config: Config) -> dict[str, int]:
    """The ofport brtun asks for, for every port this host's br-tun could have, on an empty switch."""
    return allocate_ofports(host, config)


def tunnel_ports(host: Host, config: Config) -> list[tuple[str, str, Host]]:
    """(name, type, remote) of the tunnel ports Neutron's agent would create.

    Without l2population: one per remote endpoint and shared tunnel type.
    With it: only toward hosts that share a network of that type.
    """
    result = []
    for name, (tunnel_type, remote) in sorted(possible_tunnel_ports(host, config.hosts).items()):
        if config.options.l2_population:
            shared = host.carried_networks & remote.carried_networks
            if not any(config.network(n).type == tunnel_type for n in shared):
                continue
        result.append((name, tunnel_type, remote))
    return result


def build_bridge(config: Config, host_name: str,
                 observed_ofports: Mapping[str, int] | None = None) -> BridgeModel:
    """The model of one host's br-tun.

    `observed_ofports` is what the switch reports (name -> ofport): when
    given, it is the truth, and a tunnel port the switch does not have yet
    gets no flows (Neutron also programs a port only once it exists).
    """
    host = config.host(host_name)
    requested = requested_ofports(host, config)
    ofports = dict(observed_ofports) if observed_ofports is not None else requested
    ports = tuple(TunnelPort(name, tunnel_type, remote.local_ip, remote.name, ofports[name])
                  for name, tunnel_type, remote in tunnel_ports(host, config) if name in ofports)
    port_toward = {(p.type, p.remote_host): p for p in ports}
    vlans = local_vlans(host, config)
    l2pop = config.options.l2_population
    networks = []
    remote_ports = []
    ports_on: dict[tuple[str, str], list[Port]] = {}  # (host, network) -> its ports, in config order
    for remote in config.hosts:
        for remote_port in remote.ports:
            ports_on.setdefault((remote.name, remote_port.network), []).append(remote_port)
    for network in config.networks:
        if network.name not in vlans:
            continue
        flood = set()
        for remote in config.hosts:
            port = port_toward.get((network.type, remote.name))
            if port is None:
                continue
            if l2pop and network.name not in remote.carried_networks:
                continue
            flood.add(port.ofport)
            if not l2pop:
                continue
            for remote_port in ports_on.get((remote.name, network.name), ()):
                # l2population announces a port by its (MAC, fixed IP) pairs only: a port without
                # a fixed IP gets no FDB entry (neutron l2pop mech_driver _get_port_fdb_entries),
                # so its MAC is flooded and learned like any other.
                if remote_port.ip is None:
                    continue
                remote_ports.append(RemotePort(network.name, fields.mac_value(remote_port.mac),
                                               fields.ipv4_value(remote_port.ip), remote.name, port.ofport))
        networks.append(LocalNetwork(network.name, network.type, network.segmentation_id,
                                     vlans[network.name], tuple(sorted(flood))))
    return BridgeModel(host.name, host.datapath_id, host.local_ip, config.cookie, config.options,
                       ofports.get(naming.PATCH_INT, naming.PATCH_INT_OFPORT), ports,
                       tuple(networks), tuple(remote_ports))
