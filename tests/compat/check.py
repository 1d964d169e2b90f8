"""One comparison: every host of a Neutron cloud against brtun's render of the same state."""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.config import Config
from tests.compat.cloud import NeutronCloud, brtun_flows, brtun_tunnel_ports
from tests.compat.compare import Departures, difference, without_flood_departures
from tests.compat.switch import NeutronSwitch


@dataclass
class Tally:
    """What the suite compared, for the summary CI prints."""

    configs: set[str] = field(default_factory=set)
    hosts: int = 0
    steps: int = 0
    flows: int = 0
    ports: int = 0
    departures: list[str] = field(default_factory=list)
    flood: Departures = field(default_factory=Departures)


TALLY = Tally()


def differences(cloud: NeutronCloud, config: Config, switch: NeutronSwitch) -> list[str]:
    """Each host whose flows or tunnel ports differ from brtun's, with the lines that differ."""
    found = []
    TALLY.steps += 1
    for host in cloud.agents:
        vlans = cloud.agents[host].local_vlans()
        neutron = switch.replay(cloud.messages(host))
        ours = brtun_flows(config, host, vlans)
        TALLY.hosts += 1
        TALLY.flows += len(neutron)
        compared = without_flood_departures(config, host, vlans, set(cloud.tunnel_ports(host)), neutron,
                                            TALLY.flood)
        lines = difference(compared, ours)
        if lines:
            found.append(f"{host}: flows differ\n{lines}")
        theirs = {name: (columns["type"], columns["options"]) for name, columns in cloud.tunnel_ports(host).items()}
        mine = brtun_tunnel_ports(config, host)
        TALLY.ports += len(theirs)
        if theirs != mine:
            found.append(f"{host}: tunnel ports differ\n  Neutron: {theirs}\n  brtun:   {mine}")
    return found
