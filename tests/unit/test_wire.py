"""flows.wire against os-ken: the same bytes out, the same Flows in, for every flow brtun makes."""

from __future__ import annotations

import struct
from functools import cache

import pytest
from os_ken.ofproto import ofproto_parser, ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from bench import bigconfig
from controller import lazystats
from flows import ofp, wire
from flows.actions import Output, RawAction
from flows.config import parse_config
from flows.diff import Change, Kind, diff
from flows.flow import Flow, Match, instructions
from flows.model import build_bridge
from flows.pipeline import build
from flows.textparse import parse_flow
from tests import osken_reference as reference
from tests.unit.helpers import config
from tests.unit.helpers import desired as desired_flows
from tests.unit.test_roundtrip import ALL_FLOWS, LEARNED

DP = ProtocolDesc(ofproto_v1_3.OFP_VERSION)
COOKIE = 0x5E1EC7AB1E


@cache
def big_flows() -> tuple[Flow, ...]:
    """The benchmarks' generated configs, small: every table they fill, GRE and VXLAN."""
    import yaml

    flows: list[Flow] = []
    for hosts in (2, 5):
        config = parse_config(yaml.safe_dump(bigconfig.generate(600, hosts=hosts)))
        for host in ("h0", f"h{hosts - 1}"):
            flows.extend(build(build_bridge(config, host)))
    return tuple(flows)


def one_big_br_tun() -> list[Flow]:
    import yaml

    return list(build(build_bridge(parse_config(yaml.safe_dump(bigconfig.generate(600, hosts=5))), "h0")))


def every_flow() -> list[Flow]:
    return [*ALL_FLOWS, *big_flows()]


def osken_bytes(flow: Flow, command: str, xid: int) -> bytes:
    message = reference.flow_mod(DP, flow, command)
    message.set_xid(xid)
    message.serialize()
    return bytes(message.buf)


def stats_entry(flow: Flow, as_reported: bool) -> bytes:
    """The ofp_flow_stats a switch would send for `flow` (with made-up counters)."""
    body = instructions(flow.actions, flow.goto, reported=as_reported)
    match = ofp.pad8(flow.match.encode())
    length = 48 + len(match) + len(body)
    head = struct.pack("!HBxIIHHHH4xQQQ", length, flow.table, 12, 345, flow.priority, flow.idle_timeout,
                       flow.hard_timeout, 1, flow.cookie, 99, 9900)
    return head + match + body


def osken_decoded(entry: bytes) -> Flow:
    return reference.from_flow_stats(parser.OFPFlowStats.parser(entry, 0))


def test_the_benchmark_configs_are_part_of_the_check() -> None:
    assert len(big_flows()) > 1000
    assert {flow.table for flow in big_flows()} >= {0, 2, 3, 4, 10, 20, 21, 22}


@pytest.mark.parametrize("command", ["add", "modify", "delete"])
def test_every_flow_mod_is_byte_identical_to_os_ken(command: str) -> None:
    for xid, flow in enumerate(every_flow(), start=1):
        assert wire.flow_mod(flow, command, xid) == osken_bytes(flow, command, xid), flow.render()


def test_a_bundle_add_is_byte_identical_to_os_ken() -> None:
    flags = DP.ofproto.ONF_BF_ATOMIC | DP.ofproto.ONF_BF_ORDERED
    for xid, flow in enumerate(ALL_FLOWS[:50], start=7):
        message = parser.ONFBundleAddMsg(DP, 3, flags, reference.flow_mod(DP, flow), [])
        message.set_xid(xid)
        message.serialize()
        assert wire.bundle_add(wire.flow_mod(flow, "add", xid), 3, flags) == bytes(message.buf)


@pytest.mark.parametrize("as_reported", [False, True], ids=["os-ken headers", "Open vSwitch's NXM headers"])
def test_every_flow_stats_entry_decodes_to_what_os_ken_gives(as_reported: bool) -> None:
    for flow in every_flow():
        entry = stats_entry(flow, as_reported)
        assert wire.decode_stats(entry, 0) == osken_decoded(entry) == flow, flow.render()


def test_the_key_of_an_entry_as_open_vswitch_reports_it_is_the_flows_encoded_key() -> None:
    for flow in every_flow():
        key, length = wire.stats_key(stats_entry(flow, as_reported=True), 0)
        assert key == flow.encoded.key and length == len(stats_entry(flow, True)), flow.render()


def test_an_entry_with_parts_brtun_does_not_model_decodes_with_those_parts_raw() -> None:
    group = struct.pack("!HHI", ofproto_v1_3.OFPAT_GROUP, 8, 5)
    meter = struct.pack("!HHI", ofproto_v1_3.OFPIT_METER, 8, 7)
    body = struct.pack("!HH4x", ofproto_v1_3.OFPIT_APPLY_ACTIONS, 8 + len(group) + 16) + group + Output(2).encode()
    match = ofp.pad8(Match.of(in_port=3).encode())
    reg0 = struct.pack("!II", 0x00010004, 9)  # NXM_NX_REG0=9: a field brtun does not model
    odd_match = ofp.pad8(struct.pack("!HH", ofp.OFPMT_OXM, 4 + 8 + len(reg0)) + bytes(match[4:12]) + reg0)
    for match_bytes, raw_match in ((match, ()), (odd_match, ("oxm(0x10004)=0x9",))):
        entry = struct.pack("!HBxIIHHHH4xQQQ", 48 + len(match_bytes) + len(body) + len(meter), 0, 0, 0, 9, 0, 0, 0,
                            0x42, 0, 0) + match_bytes + body + meter
        flow = wire.decode_stats(entry, 0)
        assert flow.match == Match(Match.of(in_port=3).fields, raw_match) and flow.cookie == 0x42
        assert [type(action) for action in flow.actions] == [RawAction, Output, RawAction]
        assert flow.actions[1] == Output(2)
        expected = reference.from_flow_stats(parser.OFPFlowStats.parser(entry, 0))
        assert expected.match.fields == flow.match.fields and expected.actions[1] == Output(2)
        with pytest.raises(ofp.Unsupported):  # a foreign flow is never rebuilt
            flow.encoded  # noqa: B018


def installed_as_bytes(flows: list[Flow]) -> wire.InstalledFlows:
    """Flows as a switch would list them: one multipart body, as Open vSwitch encodes them."""
    body = b"".join(stats_entry(flow, as_reported=True) for flow in flows)
    offsets, at = [], 0
    for flow in flows:
        offsets.append((body, at))
        at += len(stats_entry(flow, as_reported=True))
    return wire.InstalledFlows(offsets)


def test_diff_of_bytes_equals_diff_of_values_for_every_kind_of_difference() -> None:
    desired = list(desired_flows(config("mixed"), "h1"))
    changed = Flow(desired[5].table, desired[5].priority, desired[5].match, (Output(77),), cookie=COOKIE)
    extra = parse_flow(f" cookie={COOKIE:#x}, table=22, priority=1,dl_vlan=9 actions=pop_vlan,output:2")
    foreign = Flow(0, 7, Match.of(in_port=99), cookie=0x42)
    squatter = Flow(desired[9].table, desired[9].priority, desired[9].match, cookie=0x43)
    installed = [flow for i, flow in enumerate(desired) if i not in (3, 5, 9)]
    installed += [changed, extra, foreign, squatter, parse_flow(LEARNED)]
    as_values = diff(desired, installed, COOKIE)
    as_bytes = diff(desired, installed_as_bytes(installed), COOKIE)
    assert as_bytes == as_values and not as_values.in_sync
    assert {change.kind for change in as_values.changes} == {Kind.ADD, Kind.MODIFY, Kind.DELETE}


def test_an_installed_table_equal_to_the_desired_one_is_in_sync_without_decoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    desired = one_big_br_tun()
    installed = installed_as_bytes(desired)
    monkeypatch.setattr(wire, "decode_stats", None)  # any decode would fail
    result = diff(desired, installed, COOKIE)
    assert result.in_sync and result.changes == ()


def test_a_cold_start_adds_every_flow_from_the_last_table_back() -> None:
    desired = one_big_br_tun()
    result = diff(desired, installed_as_bytes([]), COOKIE)
    assert [change.kind for change in result.changes] == [Kind.ADD] * len(desired)
    tables = [change.flow.table for change in result.changes]
    assert tables == sorted(tables, reverse=True)


def test_os_ken_parses_a_flow_stats_reply_only_when_its_body_is_read() -> None:
    lazystats.install()
    flows = list(ALL_FLOWS[:30])
    body = b"".join(stats_entry(flow, as_reported=True) for flow in flows)
    head = struct.pack("!BBHIHH4x", ofproto_v1_3.OFP_VERSION, ofproto_v1_3.OFPT_MULTIPART_REPLY, 16 + len(body), 5,
                       ofproto_v1_3.OFPMP_FLOW, 0)
    message = ofproto_parser.msg(DP, ofproto_v1_3.OFP_VERSION, ofproto_v1_3.OFPT_MULTIPART_REPLY, 16 + len(body), 5,
                                 bytearray(head + body))
    assert type(message).__name__ == "OFPFlowStatsReply" and message._parsed is None
    decoded = wire.InstalledFlows(message.entries())
    assert list(decoded) == flows
    assert [reference.from_flow_stats(stats) for stats in message.body] == flows  # os-ken's parse, on demand


def test_every_kind_of_change_goes_out_as_the_flow_mod_os_ken_makes_for_it() -> None:
    flow = ALL_FLOWS[0]
    retimed = Flow(flow.table, flow.priority, flow.match, flow.actions, flow.goto, flow.cookie, hard_timeout=9)
    for change, command in ((Change(Kind.ADD, flow), "add"), (Change(Kind.DELETE, flow), "delete"),
                            (Change(Kind.MODIFY, flow, old=flow), "modify"),
                            (Change(Kind.MODIFY, flow, old=retimed), "add")):
        assert change.command == command
        message = reference.change_message(DP, change)
        message.set_xid(9)
        message.serialize()
        assert wire.flow_mod(change.flow, change.command, 9) == bytes(message.buf), change


def test_a_flow_with_parts_brtun_does_not_model_cannot_be_encoded() -> None:
    flow = Flow(0, 5, Match.of(icmp_type=3, dl_type=0x0800, nw_proto=1), cookie=COOKIE)
    assert wire.flow_mod(flow, "add", 9) == osken_bytes(flow, "add", 9)
    for raw in (Flow(0, 5, Match(raw=("reg0=1",)), cookie=COOKIE), Flow(0, 5, actions=(RawAction("NORMAL"),)),
                Flow(0, 5, Match.of(dl_type=0x0800, nw_proto=6, tp_dst=80))):
        with pytest.raises(ofp.Unsupported):
            wire.flow_mod(raw, "add", 9)
        with pytest.raises(reference.Unconvertible):  # what os-ken is not given either
            reference.flow_mod(DP, raw)
