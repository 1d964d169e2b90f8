"""Where brtun departs from Neutron on purpose, Neutron's side is shown to do what docs/PIPELINE.md says.

Each test runs Neutron's own code into a real switch and checks the
behaviour brtun departs from, then brtun's: if a Neutron release changes,
these tests say the departure is gone.
"""

from __future__ import annotations

import pytest

from flows.actions import Output
from flows.config import parse_config
from flows.diff import Kind, diff
from flows.flow import Flow
from flows.tables import FLOOD_TO_TUN, UCAST_TO_TUN
from flows.textparse import parse_flow
from tests.compat.cloud import NeutronCloud, brtun_flows, plugged_only
from tests.compat.switch import NeutronSwitch

pytestmark = pytest.mark.compat

# h1 carries n1 and n2 (both VXLAN); h0 carries only n1, so only h1 has n2.
TWO_HOSTS = """
options: {l2_population: true}
networks: {n1: {type: vxlan, segmentation_id: 2}, n2: {type: vxlan, segmentation_id: 3}}
hosts:
  h0: {datapath_id: 1, local_ip: 10.0.0.10, ports: [{network: n1, mac: "fa:16:3e:00:00:01"}]}
  h1: {datapath_id: 2, local_ip: 10.0.1.11, ports: [{network: n1, mac: "fa:16:3e:00:00:02"},
                                                   {network: n2, mac: "fa:16:3e:00:00:03"}]}
"""


def flood_ports(flows: list[Flow] | tuple[Flow, ...], vlan: int) -> list[int]:
    return sorted(a.port for f in flows if f.table == FLOOD_TO_TUN and f.match.dl_vlan == vlan
                  for a in f.actions if isinstance(a, Output))


def test_neutron_seeds_a_new_networks_flood_list_with_every_tunnel_of_its_type(
        neutron_switch: NeutronSwitch) -> None:
    config = parse_config(TWO_HOSTS)
    cloud = NeutronCloud(config)
    cloud.start()  # h1 binds n1 (its tunnel to h0 appears), then n2
    vlans = cloud.agents["h1"].local_vlans()
    neutron = neutron_switch.replay(cloud.messages("h1"))
    toward_h0 = 0x2000 + (0x0A00000A & 0xFFF)  # vxlan-0a00000a
    assert flood_ports(neutron, vlans["n2"]) == [toward_h0]  # h0 does not carry n2: l2pop sends no FDB for it
    assert flood_ports(brtun_flows(config, "h1", vlans), vlans["n2"]) == []  # brtun: nobody else to flood to


def test_neutron_keeps_flooding_to_a_tunnel_port_it_deleted(neutron_switch: NeutronSwitch) -> None:
    config = parse_config(TWO_HOSTS.replace("l2_population: true", "l2_population: false"))
    cloud = NeutronCloud(config)
    cloud.start()
    toward_h0 = 0x2000 + (0x0A00000A & 0xFFF)
    cloud.remove_host("h0")  # tunnel_delete: the port and its in_port flows go, the flood output stays
    assert "vxlan-0a00000a" not in cloud.tunnel_ports("h1")
    vlans = cloud.agents["h1"].local_vlans()
    neutron = neutron_switch.replay(cloud.messages("h1"))
    assert flood_ports(neutron, vlans["n1"]) == [toward_h0]
    gone = plugged_only(config, {("h1", 0), ("h1", 1)}, ["h1"])
    assert flood_ports(brtun_flows(gone, "h1", vlans), vlans["n1"]) == []


def test_neutron_leaves_learned_flows_of_a_reclaimed_network_that_brtun_deletes(
        neutron_switch: NeutronSwitch) -> None:
    """docs/PIPELINE.md, Stale learned flows: reclaim_local_vlan deletes table 20 by dl_vlan, which
    does not cover learned flows (vlan_tci=V/0x0fff)."""
    config = parse_config(TWO_HOSTS)
    cloud = NeutronCloud(config)
    cloud.start()
    vlan = cloud.agents["h1"].local_vlans()["n2"]
    learned = parse_flow(f" cookie={config.cookie:#x}, table=20, hard_timeout=300, priority=1,"
                         f"vlan_tci={vlan:#06x}/0x0fff,dl_dst=fa:16:3e:00:00:99 actions=load:0->NXM_OF_VLAN_TCI[],"
                         "load:0x3->NXM_NX_TUN_ID[],output:8202")
    before = len(cloud.messages("h1"))
    cloud.unplug("h1-port1")  # n2's only port on h1: Neutron reclaims n2's VLAN
    reclaim = cloud.messages("h1")[before:]
    assert reclaim, "Neutron sent nothing for the reclaim"
    neutron_switch.replay(cloud.messages("h1")[:before])
    neutron_switch.add([learned])  # as table 10's learn action wrote it from n2's traffic
    neutron_switch.send(reclaim)
    after = neutron_switch.flows()
    assert learned in after  # still there on Neutron's switch, leaking n2's key should the VLAN come back
    remaining = plugged_only(config, {("h0", 0), ("h1", 0)}, config.host_names)
    ours = diff(brtun_flows(remaining, "h1", cloud.agents["h1"].local_vlans()), after, config.cookie)
    deleted = [c.flow for c in ours.changes if c.kind is Kind.DELETE and c.flow.table == UCAST_TO_TUN]
    assert deleted == [learned]
