"""parse(render(f)) == f, and os-ken encode/decode == identity, for every flow brtun makes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_parser, ofproto_v1_3
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from flows.actions import Load, Output, PopVlan, PushVlan, SetField
from flows.diff import Change, Kind
from flows.fields import Subfield
from flows.flow import Flow, Match, MatchField
from flows.textparse import FlowParseError, parse_dump, parse_flow
from tests import osken_reference as reference
from tests.conftest import CONFIG_NAMES, EXPECTED
from tests.unit.helpers import config, desired

LEARNED = (" cookie=0x5e1ec7ab1e, table=20, hard_timeout=300, priority=1,vlan_tci=0x0002/0x0fff,"
           "dl_dst=fa:16:3e:aa:bb:cc actions=load:0->NXM_OF_VLAN_TCI[],load:0x1388->NXM_NX_TUN_ID[],output:3")
DP = ProtocolDesc(ofproto_v1_3.OFP_VERSION)


def every_pipeline_flow() -> list[Flow]:
    flows = []
    for name in CONFIG_NAMES:
        cfg = config(name)
        for host in cfg.host_names:
            flows.extend(desired(cfg, host))
    return [*flows, parse_flow(LEARNED)]


ALL_FLOWS = every_pipeline_flow()


def through_osken(flow: Flow) -> Flow:
    """Serialise the flow-mod to wire bytes, parse them back with os-ken, convert back."""
    message = reference.flow_mod(DP, flow)
    message.serialize()
    parsed = ofproto_parser.msg(DP, ofproto_v1_3.OFP_VERSION, message.msg_type, message.msg_len,
                                message.xid, bytes(message.buf))
    return reference.from_flow_stats(parsed)


def test_every_pipeline_flow_parses_back_from_its_rendered_line() -> None:
    assert len(ALL_FLOWS) > 300
    for flow in ALL_FLOWS:
        assert parse_flow(flow.render()) == flow, flow.render()


def test_the_learned_flow_line_renders_back_exactly() -> None:
    assert parse_flow(LEARNED).render() == LEARNED


def test_every_pipeline_flow_survives_os_ken_wire_encoding() -> None:
    for flow in ALL_FLOWS:
        assert through_osken(flow) == flow, flow.render()


def test_a_whole_dump_with_headers_and_statistics_parses() -> None:
    dump = ("OFPST_FLOW reply (OF1.3) (xid=0x2):\n"
            " cookie=0x5, duration=1.5s, table=3, n_packets=7, n_bytes=700, idle_age=1, "
            "priority=1,tun_id=0x3e9 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10\n\n")
    (flow,) = parse_dump(dump)
    assert flow == Flow(3, 1, Match.of(tun_id=0x3E9), (PushVlan(), SetField("vlan_vid", 4097)), 10, cookie=5)


def test_foreign_flows_with_unmodelled_parts_render_back_to_the_same_line() -> None:
    lines = [
        " cookie=0x5, table=5, priority=6,icmp6,tun_id=0x5/0xff,in_port=3,vlan_tci=0x0000/0x1fff,"
        "icmp_type=136,icmp_code=0 actions=output:1,IN_PORT,set_field:0x5->tun_id,"
        "load:0x1->NXM_NX_TUN_ID[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
        " table=5, priority=7,tcp,dl_vlan=5,dl_vlan_pcp=3,nw_src=10.0.0.0/255.0.255.0,tp_dst=80"
        " actions=NORMAL",
        " priority=5,ct_state=+trk,reg0=0x5 actions=resubmit(,3),write_metadata:0x5",
        " in_port=1 actions=drop",
    ]
    for line in lines:
        assert parse_flow(line).render() == line


def test_garbage_is_a_clear_parse_error() -> None:
    with pytest.raises(FlowParseError, match="cannot"):
        parse_flow("this is not a flow")


def test_drop_flows_carry_no_instructions_as_the_switch_reports_them() -> None:
    message = reference.flow_mod(DP, Flow(0, 0, cookie=1))
    assert message.instructions == []


def test_deletes_and_modifies_are_strict_and_limited_to_our_cookie() -> None:
    flow = Flow(22, 1, Match.of(dl_vlan=1), (PopVlan(), Output(2)), cookie=0x77)
    delete = reference.change_message(DP, Change(Kind.DELETE, flow))
    assert delete.command == DP.ofproto.OFPFC_DELETE_STRICT
    assert (delete.cookie, delete.cookie_mask) == (0x77, 2**64 - 1)
    modify = reference.change_message(DP, Change(Kind.MODIFY, flow, old=flow))
    assert modify.command == DP.ofproto.OFPFC_MODIFY_STRICT and modify.cookie_mask == 2**64 - 1


def test_a_modify_that_changes_timeouts_becomes_a_replacing_add() -> None:
    old = Flow(20, 1, Match.of(dl_vlan=1), (Output(2),), cookie=1, hard_timeout=300)
    new = Flow(20, 1, Match.of(dl_vlan=1), (Output(2),), cookie=1, hard_timeout=100)
    assert Change(Kind.MODIFY, new, old=old).command == "add"
    assert Change(Kind.MODIFY, new, old=new).command == "modify"
    assert reference.change_message(DP, Change(Kind.MODIFY, new, old=old)).command == DP.ofproto.OFPFC_ADD


def test_os_ken_masked_vlan_vid_reads_as_vlan_tci() -> None:
    """Open vSwitch reports learned flows' vlan_tci=0x0002/0x0fff as OXM vlan_vid (2, 0xfff)."""
    match = DP.ofproto_parser.OFPMatch(vlan_vid=(2, 0xFFF), eth_dst="fa:16:3e:aa:bb:cc")
    assert reference.from_match(match).render() == ["vlan_tci=0x0002/0x0fff", "dl_dst=fa:16:3e:aa:bb:cc"]


def test_the_example_file_parses_into_the_pipeline_flows() -> None:
    text = (EXPECTED / "example-compute1.flows").read_text()
    assert sorted(parse_dump(text), key=Flow.sort_key) == sorted(desired(config("example"), "compute1"),
                                                                  key=Flow.sort_key)


macs = st.integers(0, 2**48 - 1)
flows_strategy = st.builds(
    lambda table, priority, cookie, port, key, vlan, mac, mask, out, timeout: Flow(
        table, priority,
        Match((MatchField("in_port", port), MatchField("tun_id", key),
               MatchField("vlan_tci", 0x1000 | vlan, 0x1FFF), MatchField("dl_dst", mac, mask))),
        (PopVlan(), SetField("tun_id", key), Load(Subfield("NXM_OF_VLAN_TCI"), 0), Output(out)),
        cookie=cookie, hard_timeout=timeout),
    st.integers(0, 254), st.integers(0, 65535), st.integers(0, 2**64 - 1), st.integers(1, 0xFFFFFF00),
    st.integers(0, 2**64 - 1), st.integers(0, 4095), macs, st.one_of(st.none(), macs),
    st.integers(1, 0xFFFFFF00), st.integers(0, 65535))


@given(flows_strategy)
def test_random_flows_round_trip_through_text_and_os_ken(flow: Flow) -> None:
    assert parse_flow(flow.render()) == flow
    assert through_osken(flow) == flow
