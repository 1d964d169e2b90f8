"""flows.diff: the fewest changes, safely ordered; foreign and learned flows left alone."""

from __future__ import annotations

from typing import Any

import yaml

from flows.diff import Kind, diff
from flows.flow import Flow
from flows.textparse import parse_flow
from tests.conftest import CONFIGS
from tests.unit.helpers import desired, from_yaml

COOKIE = 0x5E1EC7AB1E
EXAMPLE: dict[str, Any] = yaml.safe_load((CONFIGS / "example.yaml").read_text())


def example(change: Any = None) -> tuple[Flow, ...]:
    data = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    if change is not None:
        change(data)
    return desired(from_yaml(yaml.safe_dump(data)), "compute1")


def learned(vlan: int, mac: str, key: int, port: int, cookie: int = COOKIE) -> Flow:
    """A table-20 flow as table 10's learn action writes it and the switch prints it."""
    return parse_flow(
        f" cookie={cookie:#x}, table=20, hard_timeout=300, priority=1,vlan_tci={vlan:#06x}/0x0fff,"
        f"dl_dst={mac} actions=load:0->NXM_OF_VLAN_TCI[],load:{key:#x}->NXM_NX_TUN_ID[],output:{port}")


FOREIGN = parse_flow(" cookie=0x99, table=20, priority=100,dl_dst=fa:16:3e:99:99:99 actions=drop")
NET1_LEARNED = learned(1, "fa:16:3e:aa:00:01", 1001, 2)  # net1 (GRE 1001) on VLAN 1 via gre port 2
NET2_LEARNED = learned(2, "fa:16:3e:aa:00:02", 5000, 3)  # net2 (VXLAN 5000) on VLAN 2 via vxlan port 3


def remove_network_2(data: dict[str, Any]) -> None:
    del data["networks"]["net2"]
    for host in data["hosts"].values():
        host["ports"] = [p for p in host["ports"] if p["network"] != "net2"]
        host.get("local_vlans", {}).pop("net2", None)
        host.get("ofports", {}).pop("vxlan-c0a8640c", None)


def test_an_unchanged_switch_needs_no_change() -> None:
    flows = example()
    result = diff(flows, flows, COOKIE)
    assert result.in_sync and result.changes == ()


def test_an_empty_switch_gets_every_flow_added_from_the_last_table_back() -> None:
    flows = example()
    result = diff(flows, (), COOKIE)
    assert {c.kind for c in result.changes} == {Kind.ADD}
    assert len(result.changes) == len(flows) and {c.flow for c in result.changes} == set(flows)
    tables_in_order = [c.flow.table for c in result.changes]
    assert tables_in_order == sorted(tables_in_order, reverse=True)


def test_one_missing_flow_is_exactly_one_add() -> None:
    flows = example()
    result = diff(flows, flows[1:], COOKIE)
    assert [(c.kind, c.flow) for c in result.changes] == [(Kind.ADD, flows[0])]


def test_one_extra_flow_of_ours_is_exactly_one_delete() -> None:
    extra = parse_flow(f" cookie={COOKIE:#x}, table=22, priority=1,dl_vlan=9 actions=pop_vlan,output:2")
    result = diff(example(), (*example(), extra), COOKIE)
    assert [(c.kind, c.flow) for c in result.changes] == [(Kind.DELETE, extra)]


def test_a_changed_flood_list_is_one_modify_of_that_flow() -> None:
    before = example()
    after = example(lambda d: d["hosts"]["compute1"]["ofports"].update({"gre-c0a8640d": 12}))
    result = diff(after, before, COOKIE)
    kinds = {(c.kind, c.flow.table, c.flow.priority) for c in result.changes}
    # table 0 in_port=2 goes and in_port=12 comes; 20, 22 change their output
    assert kinds == {(Kind.ADD, 0, 1), (Kind.DELETE, 0, 1), (Kind.MODIFY, 20, 2), (Kind.MODIFY, 22, 1)}
    (modify22,) = [c for c in result.changes if c.kind is Kind.MODIFY and c.flow.table == 22]
    assert modify22.old is not None and modify22.old.render().endswith("output:2")
    assert modify22.flow.render().endswith("output:12")


def test_adds_come_before_modifies_before_deletes() -> None:
    before = example()
    after = example(lambda d: d["hosts"]["compute1"]["ofports"].update({"gre-c0a8640d": 12}))
    kinds = [c.kind for c in diff(after, before, COOKIE).changes]
    assert kinds == sorted(kinds, key=[Kind.ADD, Kind.MODIFY, Kind.DELETE].index)


def test_deletes_go_from_the_first_table_on() -> None:
    result = diff(example(remove_network_2), example(), COOKIE)
    tables = [c.flow.table for c in result.of_kind(Kind.DELETE)]
    assert tables == sorted(tables) and tables[0] == 0


def test_foreign_flows_are_reported_and_never_touched() -> None:
    flows = example()
    result = diff(flows, (*flows, FOREIGN), COOKIE)
    assert result.in_sync and result.foreign == (FOREIGN,)


def test_a_foreign_flow_in_the_place_of_ours_is_a_conflict_not_an_overwrite() -> None:
    flows = example()
    squatter = Flow(flows[0].table, flows[0].priority, flows[0].match, cookie=0x42)
    result = diff(flows, (squatter, *flows[1:]), COOKIE)
    assert result.changes == () and result.conflicts == ((flows[0], squatter),)
    assert not result.in_sync


def test_learned_flows_survive_a_plain_diff() -> None:
    flows = example()
    result = diff(flows, (*flows, NET1_LEARNED, NET2_LEARNED), COOKIE)
    assert result.in_sync and set(result.learned) == {NET1_LEARNED, NET2_LEARNED}


def test_learned_flows_of_a_removed_network_are_deleted_and_only_those() -> None:
    result = diff(example(remove_network_2), (*example(), NET1_LEARNED, NET2_LEARNED), COOKIE)
    deleted = [c.flow for c in result.of_kind(Kind.DELETE)]
    assert NET2_LEARNED in deleted and NET1_LEARNED not in deleted
    assert result.learned == (NET1_LEARNED,)


def test_learned_flows_of_a_remapped_network_are_deleted() -> None:
    remapped = example(lambda d: d["hosts"]["compute1"]["local_vlans"].update({"net1": 7}))
    result = diff(remapped, (*example(), NET1_LEARNED, NET2_LEARNED), COOKIE)
    (stale,) = [c for c in result.of_kind(Kind.DELETE) if c.flow.table == 20 and c.flow.priority == 1]
    assert stale.flow == NET1_LEARNED and "VLAN 1 no longer carries key 0x3e9" in stale.reason


def test_a_vlan_reused_by_another_network_does_not_keep_the_old_keys_learned_flows() -> None:
    """The Neutron leak docs/PIPELINE.md describes: VLAN 1 now carries net2, its learned flows load net1's key."""
    def swap(data: dict[str, Any]) -> None:
        data["hosts"]["compute1"]["local_vlans"] = {"net1": 2, "net2": 1}
    result = diff(example(swap), (*example(), NET1_LEARNED, NET2_LEARNED), COOKIE)
    stale = {c.flow for c in result.of_kind(Kind.DELETE) if c.flow.table == 20 and c.flow.priority == 1}
    assert stale == {NET1_LEARNED, NET2_LEARNED}


def test_learned_flows_toward_a_removed_tunnel_port_are_deleted() -> None:
    def drop_network_host(data: dict[str, Any]) -> None:
        del data["hosts"]["network"]
        del data["hosts"]["compute1"]["ofports"]["gre-c0a8640d"]
    result = diff(example(drop_network_host), (*example(), NET1_LEARNED), COOKIE)
    (stale,) = [c for c in result.of_kind(Kind.DELETE) if c.flow.table == 20 and c.flow.priority == 1]
    assert stale.flow == NET1_LEARNED and "tunnel port 2 is gone" in stale.reason


def test_learned_flows_of_another_cookie_are_foreign_even_when_stale() -> None:
    other = learned(9, "fa:16:3e:aa:00:09", 77, 99, cookie=0x1)
    result = diff(example(), (*example(), other), COOKIE)
    assert result.in_sync and result.foreign == (other,)


def test_changing_a_segmentation_id_modifies_in_place_and_drops_learned_flows_of_the_old_key() -> None:
    changed = example(lambda d: d["networks"]["net1"].update({"segmentation_id": 1002}))
    result = diff(changed, (*example(), NET1_LEARNED), COOKIE)
    assert NET1_LEARNED in [c.flow for c in result.of_kind(Kind.DELETE)]
    assert any(c.flow.table == 3 and c.flow.match.value("tun_id") == 1002 for c in result.of_kind(Kind.ADD))
    assert any(c.flow.table == 22 for c in result.of_kind(Kind.MODIFY))


NEUTRON = 0x8A1B2C3D4E5F6071  # a cookie Neutron's agent picked at its start


def as_neutrons(flow: Flow) -> Flow:
    """The same flow with Neutron's cookie (its learn action's cookie too)."""
    from dataclasses import replace

    from flows.actions import Learn
    return replace(flow, cookie=NEUTRON, actions=tuple(replace(a, cookie=NEUTRON) if isinstance(a, Learn) else a
                                                       for a in flow.actions))


def test_a_takeover_replaces_each_of_neutrons_flows_in_place_deletes_the_rest_and_keeps_learned_ones() -> None:
    ours = example()
    theirs = [as_neutrons(flow) for flow in ours[:-1]]  # Neutron lacks one of ours
    extra = parse_flow(f" cookie={NEUTRON:#x}, table=21, priority=1,arp,dl_vlan=9,arp_tpa=10.9.9.9 actions=drop")
    their_learned = learned(1, "fa:16:3e:aa:00:01", 1001, 2, cookie=NEUTRON)
    their_stale = learned(7, "fa:16:3e:aa:00:07", 77, 2, cookie=NEUTRON)
    installed = [*theirs, extra, their_learned, their_stale, FOREIGN]
    assert diff(ours, installed, COOKIE).conflicts  # without a takeover: foreign, in our place, left alone
    result = diff(ours, installed, COOKIE, frozenset({NEUTRON}))
    replaced = [c for c in result.changes if c.kind is Kind.ADD and c.old is not None]
    assert all(c.old == as_neutrons(c.flow) for c in replaced)  # each replaced by its own, in place
    assert {c.old for c in replaced} == set(theirs) and all(c.command == "add" for c in replaced)
    assert [c.flow for c in result.changes if c.kind is Kind.ADD and c.old is None] == [ours[-1]]
    deleted = {c.flow for c in result.changes if c.kind is Kind.DELETE}
    assert deleted == {extra, their_stale}  # deleted by their cookie (strict, cookie-masked)
    assert result.learned == (their_learned,) and result.foreign == (FOREIGN,) and not result.conflicts
    assert set(result.taken) == {*theirs, extra, their_stale}
    kinds = [c.kind for c in result.changes]
    assert kinds == sorted(kinds, key=[Kind.ADD, Kind.MODIFY, Kind.DELETE].index)  # one bundle, adds first


def test_learned_flows_of_a_port_that_left_its_host_go_with_the_change_and_only_those() -> None:
    """A deleted remote port: its learned flow still points at its old host; flows.transition says so."""
    from flows.transition import forgotten_macs

    before = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    before["hosts"]["compute2"]["ports"].append({"network": "net2", "mac": "fa:16:3e:00:00:13", "ip": "10.2.0.13"})
    old = from_yaml(yaml.safe_dump(before))
    data = yaml.safe_load(yaml.safe_dump(before))
    data["hosts"]["compute2"]["ports"].pop(0)  # fa:16:3e:00:00:03 (net2, VLAN 2 on compute1) is deleted
    new = from_yaml(yaml.safe_dump(data))
    forget = forgotten_macs(old, new, "compute1")
    assert forget == {(2, 0xFA163E000003)}
    gone = learned(2, "fa:16:3e:00:00:03", 5000, 3)
    result = diff(desired(new, "compute1"), (*desired(old, "compute1"), gone, NET1_LEARNED), COOKIE, forget=forget)
    deleted = {c.flow: c.reason for c in result.of_kind(Kind.DELETE)}
    assert "left the host it was learned on" in deleted[gone] and NET1_LEARNED not in deleted
    moved = yaml.safe_load(yaml.safe_dump(before))  # the same MAC now on the network host: forgotten too
    moved["hosts"]["network"]["ports"].append(moved["hosts"]["compute2"]["ports"].pop(0))
    assert forgotten_macs(old, from_yaml(yaml.safe_dump(moved)), "compute1") == forget
    assert forgotten_macs(old, old, "compute1") == frozenset()
    renamed = yaml.safe_load(yaml.safe_dump(before))  # a host renamed has not moved its ports
    renamed["hosts"]["compute2b"] = renamed["hosts"].pop("compute2")
    assert forgotten_macs(old, from_yaml(yaml.safe_dump(renamed)), "compute1") == frozenset()
