"""An action is declared once: one class gives the text, the bytes both ways and the simulator's effect."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from os_ken.ofproto import ofproto_v1_3
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from flows import actions, wire
from flows.actions import base
from flows.flow import Flow, Match
from flows.simulator import FlowTableSimulator
from flows.textparse import parse_flow
from tests.unit.test_roundtrip import ALL_FLOWS
from tests.unit.test_wire import stats_entry

DP = ProtocolDesc(ofproto_v1_3.OFP_VERSION)


@pytest.fixture
def dec_ttl() -> Iterator[type[actions.Action]]:
    """A new action, declared the way every action is, and only for this test."""
    saved = dict(base._BY_TEXT), dict(base._BY_WIRE)

    @dataclass(frozen=True)
    class DecTtl(actions.Action):
        TEXT: ClassVar[tuple[str, ...]] = ("dec_ttl",)
        WIRE: ClassVar[base.WireKey | None] = (ofproto_v1_3.OFPAT_DEC_NW_TTL, None)

        def render(self) -> str:
            return "dec_ttl"

        def encode(self, reported: bool = False) -> bytes:
            return struct.pack("!HH4x", ofproto_v1_3.OFPAT_DEC_NW_TTL, 8)

        def execute(self, packet: actions.Packet, run: actions.Execution) -> None:
            packet["nw_ttl"] = max(packet.get("nw_ttl", 64) - 1, 0)

        @classmethod
        def from_text(cls, key: str, value: Any) -> actions.Action | None:
            return cls()

        @classmethod
        def decode(cls, data: bytes) -> actions.Action:
            return cls()

    yield DecTtl
    base._BY_TEXT.clear()
    base._BY_TEXT.update(saved[0])
    base._BY_WIRE.clear()
    base._BY_WIRE.update(saved[1])


def test_a_new_action_is_one_class_that_text_wire_and_simulator_all_use(dec_ttl: type[actions.Action]) -> None:
    line = " priority=5,in_port=1 actions=dec_ttl,output:2"
    flow = parse_flow(line)
    assert flow.actions == (dec_ttl(), actions.Output(2)) and flow.render() == line
    osken = DP.ofproto_parser.OFPActionDecNwTtl()
    buffer = bytearray()
    osken.serialize(buffer, 0)
    assert flow.actions[0].encode() == bytes(buffer)
    assert wire.decode_stats(stats_entry(flow, as_reported=True), 0) == flow
    verdict = FlowTableSimulator.of([flow]).process({"in_port": 1})
    assert verdict.ports == (2,)


def test_an_action_brtun_does_not_model_parses_and_decodes_raw(dec_ttl: type[actions.Action]) -> None:
    base._BY_TEXT.pop("dec_ttl")
    base._BY_WIRE.pop((ofproto_v1_3.OFPAT_DEC_NW_TTL, None))
    flow = parse_flow(" priority=5,in_port=1 actions=dec_ttl,output:2")
    assert flow.actions == (actions.RawAction("dec_ttl"), actions.Output(2))
    entry = struct.pack("!HH4x", ofproto_v1_3.OFPAT_DEC_NW_TTL, 8)
    assert isinstance(actions.decode(entry), actions.RawAction)
    with pytest.raises(actions.CannotSimulate):
        FlowTableSimulator.of([flow]).process({"in_port": 1})


def test_every_modelled_action_is_registered_once_under_each_of_its_keys() -> None:
    declared = [kind for kind in (actions.Output, actions.PushVlan, actions.PopVlan, actions.SetField,
                                  actions.Move, actions.Load, actions.Learn)]
    assert {kind for kind in base._BY_TEXT.values()} == set(declared)
    assert {kind for kind in base._BY_WIRE.values()} == set(declared)
    for kind in declared:
        assert kind.WIRE is not None and base._BY_WIRE[kind.WIRE] is kind and kind.TEXT
        assert all(base._BY_TEXT[key] is kind for key in kind.TEXT)


def test_every_action_of_every_pipeline_decodes_from_its_own_bytes_both_ways() -> None:
    seen = {action for flow in ALL_FLOWS for action in flow.actions}
    assert {type(action) for action in seen} >= {actions.Output, actions.PushVlan, actions.PopVlan,
                                                 actions.SetField, actions.Move, actions.Load, actions.Learn}
    for action in seen:
        for reported in (False, True):
            assert actions.decode(action.encode(reported)) == action, action.render()


def test_a_flow_without_actions_encodes_no_instruction_and_reads_back_as_drop() -> None:
    flow = Flow(0, 0, Match(), cookie=1)
    assert flow.encoded.instructions == b"" and flow.render() == " cookie=0x1, priority=0 actions=drop"
    assert wire.decode_stats(stats_entry(flow, as_reported=True), 0) == flow
