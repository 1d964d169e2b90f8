"""A brtun config played as a Neutron cloud: every host an OVSNeutronAgent, l2population on a server.

The same state is given to both sides: the config's hosts, networks and
ports; the ofports the switch assigns (brtun's requested numbers, so both
sides see the same switch); the local VLANs (Neutron restores them from
br-int's tags, as on a restart); and brtun's cookie as the agent's cookie.
Events happen as they do in a cloud: an agent starts (default table,
tunnel_sync), binds the ports Nova plugs into its br-int, reports them up
(the server's l2population fans the FDB out), a port is deleted, a host
goes away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from controller import dbplan
from flows import naming
from flows.config import Config, Host
from flows.flow import Flow
from flows.model import build_bridge, local_vlans, requested_ofports
from flows.pipeline import build
from tests.compat.neutron import ACTIVE, L2popServer, NeutronAgent, NeutronPort, Sent, configure


def no_neutron_equivalent(config: Config) -> str | None:
    """Why a config cannot be compared with Neutron, or None."""
    if config.options.learn_hard_timeout != 300:
        return (f"learn_hard_timeout {config.options.learn_hard_timeout}: Neutron's learn action always "
                "uses 300 s (br_tun.py _setup_learn_flows), no option changes it")
    return None


def port_id(host: str, index: int) -> str:
    return f"{host}-port{index}"


# (host, port name, the columns Neutron gives it) -> the ofport the switch assigns
Assign = Callable[[str, str, dict[str, object]], int]


class NeutronCloud:
    def __init__(self, config: Config, cookie: int | None = None, assign: Assign | None = None) -> None:
        """`cookie`: the agents' (default brtun's, so flows compare as they are); `assign`: how the
        switch numbers a port Neutron adds (default: brtun's requested number, one switch for both)."""
        configure()
        self.config = config
        self.cookie = config.cookie if cookie is None else cookie
        self._assign = assign
        endpoints = {tunnel_type: [h.local_ip for h in config.hosts if tunnel_type in h.tunnel_types]
                     for tunnel_type in ("gre", "vxlan", "geneve")}
        self.agents = {host.name: self._agent(host, endpoints) for host in config.hosts}
        self.server = L2popServer(self.agents)

    def _agent(self, host: Host, endpoints: dict[str, list[str]]) -> NeutronAgent:
        options = self.config.options
        segment = {network.name: network.segmentation_id for network in self.config.networks}
        vlans = {(name, segment[name]): vlan for name, vlan in local_vlans(host, self.config).items()}
        requested = requested_ofports(host, self.config)
        assign = self._assign

        def ofport(name: str, columns: dict[str, object]) -> int:
            return assign(host.name, name, columns) if assign is not None else requested[name]

        return NeutronAgent(host.name, host.local_ip, host.tunnel_types, options, self.cookie,
                            requested[naming.PATCH_INT], ofport, vlans, endpoints)

    # ----- events ---------------------------------------------------------------------
    def start(self, plug: bool = True) -> None:
        """Every agent starts; then (unless told not to) each binds its ports and reports them up,
        host by host."""
        for agent in self.agents.values():
            agent.start()
        if plug:
            for host in self.config.hosts:
                for index in range(len(host.ports)):
                    self.plug(host.name, index)

    def plug(self, host_name: str, index: int) -> NeutronPort:
        """Nova plugs port `index` of the host into br-int; the agent binds it and reports it up."""
        host = self.config.host(host_name)
        spec = host.ports[index]
        network = self.config.network(spec.network)
        port = NeutronPort(port_id(host_name, index), spec.network, network.type, network.segmentation_id,
                           spec.mac, (spec.ip,) if spec.ip else (), host_name)
        self.agents[host_name].bind(port, spec.name or f"qvo{host_name}-{index}"[:15], 100 + index)
        self.server.ports[port.id] = port
        self.server.set_status(port, ACTIVE)
        return port

    def unplug(self, port: str) -> None:
        """The VM's port is deleted: its agent unbinds it, the server tells the others."""
        neutron_port = self.server.ports[port]
        self.agents[neutron_port.host].unbind(neutron_port)
        self.server.delete(neutron_port)

    def remove_host(self, host_name: str) -> None:
        """The host is gone: its ports are deleted (l2population's remove_fdb_entries to the others),
        and its agent is deleted, which deletes its tunnel endpoints (tunnel_delete to the others)."""
        for port in [p for p in self.server.ports.values() if p.host == host_name]:
            self.server.delete(port)
        gone = self.agents.pop(host_name)
        for agent in self.agents.values():
            for tunnel_type in gone.agent.tunnel_types:
                with agent.active() as neutron:
                    neutron.tunnel_delete(None, tunnel_ip=gone.agent.local_ip, tunnel_type=tunnel_type)

    # ----- what each side holds ------------------------------------------------------
    def messages(self, host: str) -> list[Sent]:
        return self.agents[host].bridge.messages

    def tunnel_ports(self, host: str) -> dict[str, dict[str, object]]:
        return self.agents[host].bridge.ports


def brtun_view(config: Config, host: str, vlans: dict[str, int]) -> Config:
    """The config with the host's local VLANs as Neutron's agent holds them."""
    hosts = tuple(dataclasses.replace(h, local_vlans=tuple(sorted(vlans.items()))) if h.name == host else h
                  for h in config.hosts)
    return dataclasses.replace(config, hosts=hosts)


def brtun_flows(config: Config, host: str, vlans: dict[str, int]) -> tuple[Flow, ...]:
    return build(build_bridge(brtun_view(config, host, vlans), host))


def brtun_tunnel_ports(config: Config, host: str) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (type, options) of the tunnel ports brtun's agent makes on the host's br-tun."""
    return {spec.name: (spec.type, dict(spec.options))
            for spec in dbplan.port_specs(config, config.host(host))
            if spec.bridge == dbplan.BR_TUN and spec.name != naming.PATCH_INT}


def plugged_only(config: Config, plugged: set[tuple[str, int]], hosts: Iterable[str]) -> Config:
    """The config as it stands when only these ports are plugged and only these hosts remain."""
    remaining = set(hosts)
    kept = tuple(dataclasses.replace(h, ports=tuple(p for i, p in enumerate(h.ports) if (h.name, i) in plugged))
                 for h in config.hosts if h.name in remaining)
    return dataclasses.replace(config, hosts=kept)
