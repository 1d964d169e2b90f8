"""The pipeline, one Neutron concept at a time, and the table declarations that guard it."""

from __future__ import annotations

import pytest

from flows import tables
from flows.actions import Learn, Output, PopVlan, SetField
from flows.flow import Flow, Match
from flows.tables import TableViolation
from tests.unit.helpers import config, desired, table


def test_every_table_neutron_declares_is_there_even_when_empty() -> None:
    flows = desired(config("vxlan_only"), "host3")
    assert {flow.table for flow in flows} == {0, 2, 3, 4, 6, 10, 20, 22}
    assert all(any(f.priority == 0 for f in table(flows, number)) for number in (0, 3, 4, 6, 20, 22))


def test_without_l2population_there_are_no_fdb_or_arp_entries() -> None:
    flows = desired(config("gre_no_l2pop"), "compute1")
    assert [f for f in table(flows, 20) if f.priority == 2] == []
    assert table(flows, 21) == []
    assert [f for f in table(flows, 2) if f.goto == 21] == []


def test_a_host_without_networks_still_classifies_its_tunnels_but_floods_nowhere() -> None:
    flows = desired(config("gre_no_l2pop"), "compute3")
    assert len([f for f in table(flows, 0) if f.goto == 3]) == 3
    assert [f.render() for f in table(flows, 22)] == [" cookie=0x1234, table=22, priority=0 actions=drop"]


def test_split_horizon_a_packet_from_a_tunnel_only_ever_reaches_patch_int() -> None:
    for name in ("example", "mixed", "gre_no_l2pop"):
        cfg = config(name)
        for host in cfg.host_names:
            flows = desired(cfg, host)
            for flow in flows:
                if flow.table in (3, 4, 6):
                    assert flow.goto in (10, None) and not any(isinstance(a, Output) for a in flow.actions)
                if flow.table == 10:
                    assert flow.goto is None
                    assert [a for a in flow.actions if isinstance(a, Output)] == [Output(1)]


def test_the_learn_action_learns_vlan_mac_key_and_port_into_table_20_with_our_cookie() -> None:
    (flow,) = [f for f in desired(config("gre_no_l2pop"), "compute1") if f.table == 10 and f.priority == 1]
    learn = flow.actions[0]
    assert isinstance(learn, Learn)
    assert (learn.table, learn.priority, learn.hard_timeout, learn.cookie) == (20, 1, 120, 0x1234)
    assert learn.render().endswith("NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
                                   "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
                                   "output:OXM_OF_IN_PORT[])")


def test_each_network_key_maps_to_the_hosts_own_local_vlan_both_ways() -> None:
    cfg = config("gre_no_l2pop")
    for host, vlan in (("compute1", 1), ("compute2", 7)):
        flows = desired(cfg, host)
        (ingress,) = [f for f in table(flows, 3) if f.match.value("tun_id") == 100]
        assert SetField("vlan_vid", 0x1000 | vlan) in ingress.actions
        (egress,) = [f for f in table(flows, 22) if f.match.dl_vlan == vlan]
        assert egress.actions[:2] == (PopVlan(), SetField("tun_id", 100))


def test_a_remote_port_without_an_address_gets_no_l2population_entry_as_neutron_announces_none() -> None:
    flows = desired(config("geneve"), "a")
    answered = [f.match.render() for f in table(flows, 21) if f.priority == 1]
    assert answered == [["arp", "dl_vlan=1", "arp_tpa=10.9.0.2"]]
    unicast = [f.match.render() for f in table(flows, 20) if f.priority == 2]
    assert unicast == [["dl_vlan=1", "dl_dst=fa:16:3e:00:00:b1"]]  # b2, without an address, is flooded


def test_every_built_flow_carries_our_cookie_and_passes_its_table_declaration() -> None:
    for name in ("example", "mixed", "geneve", "vxlan_only", "gre_no_l2pop"):
        cfg = config(name)
        for host in cfg.host_names:
            for flow in desired(cfg, host):
                assert flow.cookie == cfg.cookie
                assert tables.check(flow) is flow


@pytest.mark.parametrize("flow, message", [
    (Flow(22, 1, Match.of(in_port=1)), "FLOOD_TO_TUN \\(table 22\\) does not match on in_port"),
    (Flow(0, 1, Match.of(in_port=1), goto=10), "LOCAL_SWITCHING \\(table 0\\) may not go to table 10"),
    (Flow(3, 1, Match.of(tun_id=1), (SetField("tun_id", 2),)), "GRE_TUN_TO_LV \\(table 3\\) may not set tun_id"),
    (Flow(7, 0), "table 7 is not a br-tun table"),
    (Flow(2, 0, actions=(Learn(20, ()),)), "PATCH_LV_TO_TUN \\(table 2\\) may not learn into table 20"),
])
def test_a_flow_its_table_does_not_declare_is_refused(flow: Flow, message: str) -> None:
    with pytest.raises(TableViolation, match=message):
        tables.check(flow)


def test_table_names_are_neutrons() -> None:
    assert {n: s.name for n, s in tables.TABLES.items()} == {
        0: "LOCAL_SWITCHING", 2: "PATCH_LV_TO_TUN", 3: "GRE_TUN_TO_LV", 4: "VXLAN_TUN_TO_LV",
        6: "GENEVE_TUN_TO_LV", 10: "LEARN_FROM_TUN", 20: "UCAST_TO_TUN", 21: "ARP_RESPONDER",
        22: "FLOOD_TO_TUN"}
