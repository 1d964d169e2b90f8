"""The Neutron source against Neutron's own agent: the same RPC messages, the same flows.

Each host's brtun state (flows.neutronstate) is told exactly what Neutron's
agent on that host is told: tunnel_sync's endpoints, the device details of
each port bound to it, every l2population message the server side
(Neutron's own mechanism driver) addresses to it, and tunnel_delete when a
host goes; after each event the config the state amounts to is rendered
and compared with the flows Neutron's agent programmed on a real switch
(the departures docs/PIPELINE.md documents taken out, as in the other
compatibility tests).  So "one model, two sources" is checked against
Neutron itself, not against brtun's YAML.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.config import Config, parse_config
from flows.model import build_bridge, requested_ofports
from flows.neutronstate import LocalHost, NeutronState, parse_details
from flows.pipeline import build
from tests.compat.check import TALLY
from tests.compat.cloud import NeutronCloud, brtun_tunnel_ports, brtun_view, plugged_only
from tests.compat.compare import difference, without_flood_departures
from tests.compat.generate import configs
from tests.compat.neutron import NeutronPort
from tests.compat.switch import NeutronSwitch
from tests.compat.test_events import THREE_HOSTS

pytestmark = pytest.mark.compat


class Fed:
    """A cloud of Neutron's agents, and beside each a brtun state told what that agent is told."""

    def __init__(self, config: Config, switch: NeutronSwitch, label: str) -> None:
        self.config, self.switch = config, switch
        self.cloud = NeutronCloud(config)
        self.cloud.start(plug=False)
        self.states = {host.name: NeutronState(LocalHost(host.name, host.local_ip, host.tunnel_types, host.datapath_id,
                                                         cookie=config.cookie, options=config.options))
                       for host in config.hosts}
        for host in config.hosts:  # what the cloud's tunnel_sync answers (NeutronAgent._tunnel_sync)
            for tunnel_type in host.tunnel_types:
                tunnels = [{"ip_address": h.local_ip, "host": h.name} for h in config.hosts
                           if tunnel_type in h.tunnel_types]
                self.states[host.name].tunnel_sync(tunnel_type, {"tunnels": tunnels})
        self.seen = 0  # l2population messages already delivered
        self.plugged: set[tuple[str, int]] = set()
        self.ports: dict[tuple[str, int], NeutronPort] = {}
        self.messages = 0
        TALLY.configs.add(label)

    def deliver(self) -> None:
        """Every l2population message sent since, to the states it is addressed to, through JSON as on the bus."""
        for method, host, entries in self.cloud.server.messages[self.seen:]:
            for name, state in self.states.items():
                if (host is None or host == name) and self.config.options.l2_population:
                    payload = json.loads(json.dumps(entries))
                    {"add_fdb_entries": state.add_fdb, "remove_fdb_entries": state.remove_fdb,
                     "update_fdb_entries": state.update_fdb}[method](payload)
                    self.messages += 1
        self.seen = len(self.cloud.server.messages)

    def check(self, event: str) -> None:
        self.deliver()
        yaml_view = plugged_only(self.config, self.plugged, self.cloud.agents)
        TALLY.steps += 1
        for host, agent in self.cloud.agents.items():
            vlans = agent.local_vlans()
            config = brtun_view(self.states[host].config(), host, vlans)  # Neutron's VLANs, as a restart keeps them
            neutron = self.switch.replay(self.cloud.messages(host))
            compared = without_flood_departures(yaml_view, host, vlans, set(self.cloud.tunnel_ports(host)), neutron,
                                                TALLY.flood)
            TALLY.hosts += 1
            TALLY.flows += len(neutron)
            # the port numbers the switch gave Neutron's ports (the cloud asks for the YAML's)
            ofports = requested_ofports(yaml_view.host(host), yaml_view)
            lines = difference(compared, build(build_bridge(config, host, observed_ofports=ofports)))
            assert not lines, f"after {event}, {host}: flows differ\n{lines}"
            theirs = {name: (c["type"], c["options"]) for name, c in self.cloud.tunnel_ports(host).items()}
            TALLY.ports += len(theirs)
            assert theirs == brtun_tunnel_ports(config, host), f"after {event}, {host}: tunnel ports differ"

    def plug(self, host: str, index: int) -> None:
        port = self.cloud.plug(host, index)
        self.ports[(host, index)] = port
        self.plugged.add((host, index))
        spec = self.config.host(host).ports[index]
        details = {"device": port.id, "port_id": port.id, "network_id": port.network, "mac_address": port.mac,
                   "network_type": port.network_type, "segmentation_id": port.segmentation_id,
                   "admin_state_up": True, "fixed_ips": [{"ip_address": ip} for ip in port.ips]}
        name = spec.name or f"qvo{host}-{index}"[:15]
        self.states[host].set_local_port(parse_details(details, name, self.config.host(host).tunnel_types))
        self.check(f"plugging port {index} of {host}")

    def unplug(self, host: str, index: int) -> None:
        port = self.ports.pop((host, index))
        self.cloud.unplug(port.id)
        self.plugged.discard((host, index))
        self.states[host].remove_local_port(port.id)
        self.check(f"deleting port {index} of {host}")

    def remove_host(self, host: str) -> None:
        self.cloud.remove_host(host)
        gone = self.states.pop(host)
        self.plugged = {(h, i) for h, i in self.plugged if h != host}
        self.deliver()
        for state in self.states.values():  # as the cloud's tunnel_delete to the others
            for tunnel_type in gone.local.tunnel_types:
                state.tunnel_delete(gone.local.local_ip, tunnel_type)
        self.check(f"removing host {host}")


@pytest.mark.parametrize("l2pop", ["true", "false"])
def test_the_messages_neutrons_agents_get_give_brtun_their_flows(l2pop: str, neutron_switch: NeutronSwitch) -> None:
    fed = Fed(parse_config(THREE_HOSTS.format(l2pop=l2pop)), neutron_switch, f"neutron-source-three-hosts-{l2pop}")
    fed.check("every agent started")
    for host, index in (("a", 0), ("b", 0), ("c", 0), ("a", 1)):
        fed.plug(host, index)
    fed.unplug("b", 0)
    fed.plug("b", 0)
    fed.unplug("a", 1)
    fed.remove_host("c")
    assert fed.messages > 0 or l2pop == "false"


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(config=configs(), data=st.data())
def test_in_any_order_neutrons_messages_give_brtun_neutrons_flows(config: Config, data: st.DataObject,
                                                                   neutron_switch: NeutronSwitch) -> None:
    fed = Fed(config, neutron_switch, f"neutron-source-{len(TALLY.configs)}")
    ports = [(host.name, index) for host in config.hosts for index in range(len(host.ports))]
    for host, index in data.draw(st.permutations(ports), label="plug order"):
        fed.plug(host, index)
    for host, index in data.draw(st.lists(st.sampled_from(ports), unique=True, max_size=4), label="deleted") \
            if ports else []:
        fed.unplug(host, index)
    fed.remove_host(data.draw(st.sampled_from(config.host_names), label="host removed"))
