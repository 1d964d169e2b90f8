"""flows.simulator, flows.tracetext and replay case loading: the offline half of replay tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.actions import Output, PopVlan, SetField
from flows.flow import Flow, Match, MatchField
from flows.replay import CaseError, case_from_data, load_case, run_offline
from flows.simulator import FlowTableSimulator
from flows.tracetext import parse_trace, trace_flow_text
from tests.unit.helpers import config, desired

LEARN_TRACE = """\
Flow: tun_id=0x1388,in_port=3,vlan_tci=0x0000,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0000

bridge("br-tun")
----------------
 0. in_port=3, priority 1, cookie 0x5e1ec7ab1e
    goto_table:4
 4. tun_id=0x1388, priority 1, cookie 0x5e1ec7ab1e
    push_vlan:0x8100
    set_field:4098->vlan_vid
    goto_table:10
10. priority 1, cookie 0x5e1ec7ab1e
    learn(table=20,hard_timeout=300,priority=1,cookie=0x5e1ec7ab1e,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])
     -> table=20 vlan_tci=0x0002/0x0fff,dl_dst=fa:16:3e:aa:bb:cc priority=1 cookie=0x5e1ec7ab1e hard=300 actions=load:0->NXM_OF_VLAN_TCI[],load:0x1388->NXM_NX_TUN_ID[],output:3
    output:1

Final flow: tun_id=0x1388,in_port=3,dl_vlan=2,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0000
Megaflow: recirc_id=0,eth,in_port=3,dl_src=fa:16:3e:aa:bb:cc,dl_type=0x0000
Datapath actions: push_vlan(vid=2,pcp=0),2
"""


def example() -> FlowTableSimulator:
    return FlowTableSimulator.of(desired(config("example"), "compute1"))


def test_a_packet_from_a_tunnel_is_learned_exactly_as_open_vswitch_writes_it() -> None:
    verdict = example().process({"in_port": 3, "tun_id": 0x1388, "dl_src": 0xFA163EAABBCC,
                                 "dl_dst": 0xFFFFFFFFFFFF})
    assert [(e.port, e.vlan) for e in verdict.emitted] == [(1, 2)]
    (learned,) = verdict.learned
    assert learned.render() == (" cookie=0x5e1ec7ab1e, table=20, hard_timeout=300, priority=1,vlan_tci=0x0002/0x0fff,"
                                "dl_dst=fa:16:3e:aa:bb:cc actions=load:0->NXM_OF_VLAN_TCI[],"
                                "load:0x1388->NXM_NX_TUN_ID[],output:3")


def test_the_trace_parser_reads_the_same_verdict_from_open_vswitchs_text() -> None:
    simulated = example().process({"in_port": 3, "tun_id": 0x1388, "dl_src": 0xFA163EAABBCC,
                                   "dl_dst": 0xFFFFFFFFFFFF})
    traced = parse_trace(LEARN_TRACE, in_port=3)
    assert traced.emitted == simulated.emitted and traced.learned == simulated.learned


def test_masked_matches_compare_only_the_masked_bits() -> None:
    flow = Flow(0, 5, Match((MatchField("dl_dst", 0x010000000000, 0x010000000000),)), (Output(9),))
    simulator = FlowTableSimulator.of([flow])
    assert simulator.process({"in_port": 1, "dl_dst": 0x0100FFFFFFFF}).ports == (9,)
    assert simulator.process({"in_port": 1, "dl_dst": 0x3300FFFFFFFF}).ports == (9,)
    assert simulator.process({"in_port": 1, "dl_dst": 0xFA163E000001}).dropped


def test_the_highest_priority_wins_and_a_miss_drops() -> None:
    low = Flow(0, 1, Match.of(in_port=1), (Output(2),))
    high = Flow(0, 9, Match.of(in_port=1, dl_dst="fa:16:3e:00:00:01"), (Output(3),))
    simulator = FlowTableSimulator.of([low, high])
    assert simulator.process({"in_port": 1, "dl_dst": 0xFA163E000001}).ports == (3,)
    assert simulator.process({"in_port": 1, "dl_dst": 0xFA163E000002}).ports == (2,)
    assert simulator.process({"in_port": 7}).dropped


def test_output_to_the_input_port_needs_in_port() -> None:
    simulator = FlowTableSimulator.of([Flow(0, 1, actions=(Output(1), Output(0xFFFFFFF8)))])
    assert simulator.process({"in_port": 1}).ports == (1,)  # once: the plain output:1 is skipped


def test_pop_and_set_field_change_what_leaves() -> None:
    flow = Flow(0, 1, Match.of(dl_vlan=5), (PopVlan(), SetField("tun_id", 77), Output(4)))
    (emitted,) = FlowTableSimulator.of([flow]).process({"in_port": 1, "vlan_tci": 0x1005}).emitted
    assert (emitted.port, emitted.vlan, emitted.tun_id) == (4, None, 77)


def test_hard_timeouts_expire_only_once_exceeded_as_in_open_vswitch() -> None:
    simulator = example()
    simulator.process({"in_port": 3, "tun_id": 0x1388, "dl_src": 0xFA163EAABBCC, "dl_dst": 0xFFFFFFFFFFFF})
    assert simulator.advance(300) == []
    (expired,) = simulator.advance(0.001)
    assert expired.hard_timeout == 300


def test_trace_flow_text_uses_icmpv6_names_for_icmpv6() -> None:
    text = trace_flow_text({"in_port": 1, "dl_type": 0x86DD, "nw_proto": 58, "icmp_type": 134})
    assert text == "in_port=1,dl_type=0x86dd,nw_proto=58,icmpv6_type=134"


def test_every_shipped_case_passes_on_the_simulator() -> None:
    paths = sorted((Path(__file__).parent.parent / "replay").glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        assert all(result.ok for result in run_offline(load_case(path))), path


@pytest.mark.parametrize("data, message", [
    ({"config": "nope.yaml", "host": "x", "packets": [{}]}, "cannot read"),
    ({"config": "../data/configs/example.yaml", "host": "compute9", "packets": [{}]}, "host 'compute9'"),
    ({"config": "../data/configs/example.yaml", "host": "compute1", "packets": []}, "non-empty list"),
    ({"config": "../data/configs/example.yaml", "host": "compute1",
      "packets": [{"in_port": "gre-00000000", "packet": {}, "expect": {"drop": True}}]}, "is not a port"),
    ({"config": "../data/configs/example.yaml", "host": "compute1",
      "packets": [{"in_port": "patch-int", "packet": {"vlan": 3}, "expect": {"drop": True}}]}, "unknown packet field"),
    ({"config": "../data/configs/example.yaml", "host": "compute1",
      "packets": [{"in_port": "patch-int", "packet": {}, "expect": {"vlan": 1}}]}, "output: \\[ports\\] or drop"),
])
def test_bad_case_files_are_refused_with_a_reason(data: dict[str, object], message: str) -> None:
    with pytest.raises(CaseError, match=message):
        case_from_data(data, Path(__file__).parent.parent / "replay", default_name="bad")


def test_a_traced_walk_reads_hops_tunnels_and_deliveries_from_ovs_text() -> None:
    from flows.tracetext import parse_run
    from tests.conftest import DATA

    unicast = parse_run((DATA / "trace-unicast-compute1.txt").read_text())
    assert [(h.bridge, h.table) for h in unicast.hops] == [
        ("br-int", 0), ("br-int", 59), ("br-int", 60), ("br-tun", 0), ("br-tun", 2), ("br-tun", 20), ("br-phy", 0)]
    assert unicast.tunnels == (("192.168.100.12", 1),)
    # a flood: ofproto/trace nests br-phy inside table 22's actions, and wraps each copy in clone()
    flood = parse_run((DATA / "trace-flood-host1.txt").read_text())
    (table_22,) = [h for h in flood.hops if h.table == 22]
    assert [a for a in table_22.actions if a.startswith("output:")] == ["output:5122", "output:5123", "output:5124"]
    assert flood.tunnels == (("192.168.100.2", 100), ("192.168.100.3", 100), ("192.168.100.4", 100))


def test_on_the_kernel_datapath_a_tunnelled_copy_is_set_tunnel_then_the_vport() -> None:
    from flows.tracetext import parse_run

    # The kernel datapath's actions for a flood of VLAN 1 to two GRE endpoints and a local VM port:
    # one gre_sys vport (datapath port 2) carries both copies, each after its own set(tunnel(...)).
    text = ("Flow: in_port=4\n\nFinal flow: unchanged\nMegaflow: recirc_id=0,eth,in_port=4\n"
            "Datapath actions: 5,set(tunnel(tun_id=0x1,src=192.168.100.11,dst=192.168.100.10,ttl=64,tp_dst=0,"
            "flags(df|key))),2,set(tunnel(tun_id=0x1,src=192.168.100.11,dst=192.168.100.12,ttl=64,tp_dst=0,"
            "flags(df|key))),2\n")
    kernel = parse_run(text, tunnel_ports=frozenset({2}))
    assert kernel.tunnels == (("192.168.100.10", 1), ("192.168.100.12", 1))
    assert kernel.local_ports == (5,)
    # without knowing which datapath ports are tunnel vports, nothing is taken for a tunnel
    assert parse_run(text).tunnels == () and parse_run(text).local_ports == (5, 2, 2)


def test_replay_numbers_each_packet_by_its_place_in_the_case_not_by_its_in_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main
    from tests.conftest import CONFIGS

    case = tmp_path / "numbered.yaml"  # compute1's ofports: patch-int 1, gre-c0a8640d 2, vxlan-c0a8640c 3
    case.write_text(
        f"config: {CONFIGS / 'example.yaml'}\nhost: compute1\npackets:\n"
        "  - in_port: vxlan-c0a8640c\n"
        "    packet: {tun_id: 5000, dl_src: 'fa:16:3e:aa:00:02', dl_dst: 'ff:ff:ff:ff:ff:ff'}\n"
        "    expect: {output: [patch-int], vlan: 2}\n"
        "  - in_port: gre-c0a8640d\n"
        "    packet: {tun_id: 1001, dl_src: 'fa:16:3e:aa:00:01', dl_dst: 'ff:ff:ff:ff:ff:ff'}\n"
        "    expect: {output: [patch-int], vlan: 1}\n"
        "  - in_port: patch-int\n"
        "    packet: {dl_vlan: 1, dl_src: 'fa:16:3e:00:00:01', dl_dst: 'fa:16:3e:aa:00:01'}\n"
        "    expect: {output: [gre-c0a8640d], key: 1001}\n")
    assert [step.describe().split()[:2] for step in load_case(case).steps] == [
        ["#1", "vxlan-c0a8640c"], ["#2", "gre-c0a8640d"], ["#3", "patch-int"]]
    assert main(["replay", str(case)]) == 0
    lines = [line.split()[:3] for line in capsys.readouterr().out.splitlines() if line.startswith("  PASS")]
    assert lines == [["PASS", "#1", "vxlan-c0a8640c"], ["PASS", "#2", "gre-c0a8640d"], ["PASS", "#3", "patch-int"]]
