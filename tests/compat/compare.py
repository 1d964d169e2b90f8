"""brtun's flows against Neutron's, as Open vSwitch printed them.

One thing may differ without meaning anything, and is normalised: the order
of a table-22 flood flow's outputs (Neutron's agent keeps a network's flood
ports in a Python set, so it lists them in set order).  Cookies are not
normalised: each Neutron agent is given brtun's cookie, so a flow with
another cookie is a real difference.

Two differences are brtun's on purpose (docs/PIPELINE.md, "Flood lists") and
are taken out, counted, before comparing; both are outputs of a table-22
flood flow that lead nowhere useful, and only those outputs are taken out,
so anything else still shows:
- with l2population, Neutron's provision_local_vlan starts a network's flood
  list with every tunnel port of its type the host already has, and only
  l2population's first FDB message for that network replaces it with the
  hosts that carry it; when no other host carries the network, that message
  never comes (outputs toward hosts that do not carry the network);
- Neutron's cleanup_tunnel_port deletes a tunnel port and the flows that
  match its in_port, but not the flood flows that output to it, until a
  flood flow of that network is written again (outputs to a port that is
  gone).
brtun floods exactly to the tunnel ports toward the hosts that carry the
network, which is what Neutron converges to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from flows.actions import Action, Output
from flows.config import Config, possible_tunnel_ports
from flows.flow import Flow
from flows.model import requested_ofports
from flows.tables import FLOOD_TO_TUN


def normalised(flow: Flow) -> Flow:
    if flow.table != FLOOD_TO_TUN:
        return flow
    outputs = sorted((action for action in flow.actions if isinstance(action, Output)), key=lambda a: a.port)
    others = [action for action in flow.actions if not isinstance(action, Output)]
    return dataclasses.replace(flow, actions=(*others, *outputs))


@dataclass
class Departures:
    toward_hosts_without_the_network: int = 0
    to_ports_that_are_gone: int = 0


def without_flood_departures(config: Config, host: str, vlans: dict[str, int], tunnel_ports: set[str],
                             neutron: Iterable[Flow], counted: Departures) -> list[Flow]:
    """Neutron's flows with the flood outputs brtun departs from taken out (and counted)."""
    ofports = requested_ofports(config.host(host), config)
    existing = {ofports[name] for name in tunnel_ports}
    carriers = {ofports[name]: remote.carried_networks  # ofport -> the networks its remote host carries
                for name, (_type, remote) in possible_tunnel_ports(config.host(host), config.hosts).items()}
    network_of = {vlan: name for name, vlan in vlans.items()}
    result = []
    for flow in neutron:
        network = network_of.get(flow.match.dl_vlan) if flow.table == FLOOD_TO_TUN else None
        if network is None:
            result.append(flow)
            continue
        kept: list[Action] = []
        for action in flow.actions:
            if isinstance(action, Output) and action.port not in existing:
                counted.to_ports_that_are_gone += 1
            elif (isinstance(action, Output) and config.options.l2_population
                  and network not in carriers.get(action.port, {network})):
                counted.toward_hosts_without_the_network += 1
            else:
                kept.append(action)
        if any(isinstance(action, Output) for action in kept):
            result.append(dataclasses.replace(flow, actions=tuple(kept)))
    return result


def difference(neutron: Iterable[Flow], brtun: Iterable[Flow]) -> str:
    """Empty when both hold the same flows; else the lines each side alone has."""
    theirs = {normalised(flow).render() for flow in neutron}
    ours = {normalised(flow).render() for flow in brtun}
    lines = [f"Neutron only: {line.strip()}" for line in sorted(theirs - ours)]
    lines += [f"brtun only:   {line.strip()}" for line in sorted(ours - theirs)]
    return "\n".join(lines)
