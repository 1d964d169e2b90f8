"""Not only cold starts: events in a running cloud, compared after each step.

A network appears on a host that already has tunnel ports, ports are
plugged in any order across hosts, ports are deleted, a host goes away:
after every event each remaining host's br-tun is compared with brtun's
render of the config as it then stands.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.config import Config, parse_config
from tests.compat.check import TALLY, differences
from tests.compat.cloud import NeutronCloud, plugged_only
from tests.compat.generate import configs
from tests.compat.switch import NeutronSwitch

pytestmark = pytest.mark.compat

THREE_HOSTS = """
options: {{l2_population: {l2pop}, arp_responder: {l2pop}}}
networks: {{blue: {{type: gre, segmentation_id: 100}}, red: {{type: gre, segmentation_id: 200}}}}
hosts:
  a: {{datapath_id: 1, local_ip: 10.0.0.1, ports: [{{network: blue, mac: "fa:16:3e:00:00:01", ip: 10.1.0.1}},
                                              {{network: red, mac: "fa:16:3e:00:00:02", ip: 10.2.0.1}}]}}
  b: {{datapath_id: 2, local_ip: 10.0.0.2, ports: [{{network: blue, mac: "fa:16:3e:00:00:03", ip: 10.1.0.2}}]}}
  c: {{datapath_id: 3, local_ip: 10.0.0.3, ports: [{{network: red, mac: "fa:16:3e:00:00:04"}}]}}
"""


class Play:
    """A cloud and the record of what is plugged, compared with brtun after each event."""

    def __init__(self, config: Config, switch: NeutronSwitch, label: str) -> None:
        self.config, self.switch = config, switch
        self.cloud = NeutronCloud(config)
        self.cloud.start(plug=False)
        self.plugged: set[tuple[str, int]] = set()
        self.ids: dict[tuple[str, int], str] = {}
        TALLY.configs.add(label)

    def check(self, event: str) -> None:
        now = plugged_only(self.config, self.plugged, self.cloud.agents)
        assert differences(self.cloud, now, self.switch) == [], f"after {event}"

    def plug(self, host: str, index: int) -> None:
        self.ids[(host, index)] = self.cloud.plug(host, index).id
        self.plugged.add((host, index))
        self.check(f"plugging port {index} of {host}")

    def unplug(self, host: str, index: int) -> None:
        self.cloud.unplug(self.ids.pop((host, index)))
        self.plugged.discard((host, index))
        self.check(f"deleting port {index} of {host}")

    def remove_host(self, host: str) -> None:
        self.cloud.remove_host(host)
        self.plugged = {(h, i) for h, i in self.plugged if h != host}
        self.check(f"removing host {host}")


@pytest.mark.parametrize("l2pop", ["true", "false"])
def test_a_network_first_appearing_on_a_host_with_tunnel_ports_then_ports_and_a_host_going(
        l2pop: str, neutron_switch: NeutronSwitch) -> None:
    play = Play(parse_config(THREE_HOSTS.format(l2pop=l2pop)), neutron_switch, f"three-hosts-{l2pop}")
    play.check("every agent started")
    play.plug("a", 0)  # blue on a
    play.plug("b", 0)  # blue on b: a now has its tunnel port toward b
    play.plug("c", 0)  # red on c
    play.plug("a", 1)  # red appears on a, which already has a tunnel port (toward b, for blue)
    play.unplug("b", 0)  # b's last port: blue is gone from b
    play.plug("b", 0)
    play.unplug("a", 1)  # red's last port on a: a reclaims red's VLAN
    play.remove_host("c")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(config=configs(), data=st.data())
def test_ports_plugged_and_deleted_in_any_order_and_a_host_removed(
        config: Config, data: st.DataObject, neutron_switch: NeutronSwitch) -> None:
    play = Play(config, neutron_switch, f"events-{len(TALLY.configs)}")
    ports = [(host.name, index) for host in config.hosts for index in range(len(host.ports))]
    for host, index in data.draw(st.permutations(ports), label="plug order"):
        play.plug(host, index)
    for host, index in data.draw(st.lists(st.sampled_from(ports), unique=True, max_size=4), label="deleted") \
            if ports else []:
        play.unplug(host, index)
    play.remove_host(data.draw(st.sampled_from(config.host_names), label="host removed"))
