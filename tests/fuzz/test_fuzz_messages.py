"""Mutated control requests and OpenFlow bytes, in process.

Control requests: any bytes, any JSON, deep nesting, every op with fields of any type, through the
control socket's decoder and the ops' checks: a request or a ValueError, then None or the reason.

OpenFlow: flow-stats replies as Open vSwitch sends them for real pipelines, mutated, through os-ken's
message parser with brtun's lazy reply class, then flows.wire (keys, decoding, InstalledFlows.split):
each a result or a WireError.  Also os-ken's parser on any OpenFlow 1.3 message of a mutated type
and length: a message or None (os-ken drops what it cannot parse)."""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.exception import OSKenException
from os_ken.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import guard, lazystats
from controller.control import MAX_REQUEST, decode_request
from controller.ops import _FIELDS, check_request
from flows import ofp, wire
from flows.config import load_config
from flows.diff import _by_encoding
from flows.flow import Flow, instructions
from flows.model import build_bridge
from flows.pipeline import build
from flows.wire import WireError
from tests.conftest import CONFIGS
from tests.fuzz.conftest import bounded, outcome

SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=15)
OPS = st.sampled_from([*_FIELDS, "reboot", "", "STATE"])
FIELDS = st.sampled_from(sorted({name for fields in _FIELDS.values() for name in fields} | {"force", "op"}))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        depth = draw(st.integers(1, 200_000))
        return draw(st.sampled_from([b"[", b"{\"a\":", b'{"op": "validate", "config": ['])) * depth
    if kind == 2:
        return json.dumps(draw(JSON)).encode()
    request: dict[str, Any] = {"op": draw(OPS | JSON)}
    for name in draw(st.lists(FIELDS, max_size=4)):
        request[name] = draw(JSON | st.sampled_from(["", "no", "br-tun", "add-network", "networks: {}"]))
    if kind == 3 and isinstance(request["op"], str) and request["op"] in _FIELDS:
        for name, (types, _required) in _FIELDS[request["op"]].items():  # mostly the right types, one wrong
            request.setdefault(name, {str: "x", dict: {}, bool: False, type(None): None}[types[0]])
    return json.dumps(request).encode() + draw(st.sampled_from([b"", b"\n", b"\n\n", b" trailing"]))


@SETTINGS
@given(requests())
def test_control_requests(data: bytes) -> None:
    with bounded("control requests (decode and check)"):
        try:
            request = decode_request(data)
        except ValueError as error:
            outcome("control requests (decode and check)", "malformed")
            assert str(error)
            return
        problem = check_request(request)
        outcome("control requests (decode and check)", "refused" if problem else "accepted")
        assert problem is None or isinstance(problem, str)
    assert len(data) <= MAX_REQUEST or problem is not None


# ----- OpenFlow bytes ------------------------------------------------------------------------

PIPELINES = [tuple(build(build_bridge(load_config(str(CONFIGS / f"{name}.yaml")), host)))
             for name, host in (("example", "compute1"), ("mixed", "h1"), ("geneve", "a"))]
DATAPATH = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)


@pytest.fixture(scope="module", autouse=True)
def as_the_agent_parses() -> Iterator[None]:
    """os-ken's parser as the agent's app sets it up (the lazy flow-stats reply, brtun's check in front),
    for this module only: other tests use os-ken's own."""
    saved = ofproto_parser.msg, dict(parser.OFPMultipartReply._STATS_MSG_TYPES)
    lazystats.install()
    guard.install()
    try:
        yield
    finally:
        ofproto_parser.msg = saved[0]
        parser.OFPMultipartReply._STATS_MSG_TYPES.clear()
        parser.OFPMultipartReply._STATS_MSG_TYPES.update(saved[1])
logging.getLogger("os_ken.ofproto.ofproto_parser").setLevel(logging.CRITICAL)  # it logs each malformed message


def stats_entry(flow: Flow) -> bytes:
    """The ofp_flow_stats Open vSwitch sends for `flow` (its actions as the switch reports them)."""
    match = ofp.pad8(flow.match.encode())
    body = instructions(flow.actions, flow.goto, reported=True)
    return struct.pack("!HBxIIHHHH4xQQQ", 48 + len(match) + len(body), flow.table, 1, 2, flow.priority,
                       flow.idle_timeout, flow.hard_timeout, 0, flow.cookie, 3, 4) + match + body


def flow_stats_reply(flows: tuple[Flow, ...], xid: int = 7) -> bytes:
    body = b"".join(stats_entry(flow) for flow in flows)
    head = struct.pack("!HH4x", ofproto_v1_3.OFPMP_FLOW, 0)
    return struct.pack("!BBHI", 4, ofproto_v1_3.OFPT_MULTIPART_REPLY, 8 + len(head) + len(body), xid) + head + body


@st.composite
def mutated_reply(draw: st.DrawFn) -> bytes:
    flows = draw(st.sampled_from(PIPELINES))
    start = draw(st.integers(0, len(flows) - 1))
    data = bytearray(flow_stats_reply(flows[start:start + draw(st.integers(1, 12))]))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:  # a length field of an entry, a match, an instruction or an action
            value = draw(st.sampled_from([0, 1, 4, 7, 8, 9, 0xFFFF]) | st.integers(0, 0xFFFF))
            data[at:at + 2] = value.to_bytes(2, "big")
        elif kind == 2:
            del data[max(at, 8):max(at, 8) + draw(st.integers(1, 40))]  # the header stays
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=24))
    if draw(st.booleans()):  # keep the message's own length right, so the damage reaches the body
        struct.pack_into("!H", data, 2, min(len(data), 0xFFFF))
    return bytes(data[:0xFFFF])


# What brtun's check (controller.guard) and os-ken's parser raise rather than returning a message: the
# agent's listener then ends that connection with one log line (controller.listener).
REFUSED = (guard.MalformedMessage, OSKenException, struct.error)


def parse(data: bytes) -> Any:
    version, kind, length, xid = struct.unpack_from("!BBHI", data)
    return ofproto_parser.msg(DATAPATH, version, kind, length, xid, data[:length])  # as os-ken's receive loop


@SETTINGS
@given(mutated_reply())
def test_flow_stats_replies_from_a_hostile_switch(data: bytes) -> None:
    target = "OpenFlow flow-stats replies (os-ken + flows.wire)"
    with bounded(target):
        try:
            message = parse(data)
        except REFUSED as error:
            outcome(target, f"os-ken refused ({type(error).__name__})")
            return
        if message is None:
            outcome(target, "dropped: a type brtun does not use")
            return
        if not isinstance(message, lazystats.OFPFlowStatsReply):
            outcome(target, type(message).__name__)
            return
        try:
            installed = wire.InstalledFlows(message.entries())
            contents = list(installed.contents())  # the canary's reading
            same, other = installed.split(_by_encoding(PIPELINES[0]))  # a reconcile's
            assert len(same) + len(other) == len(contents) == len(list(installed))  # every entry decoded
        except WireError as error:
            outcome(target, "WireError")
            assert str(error)
            return
        outcome(target, "read")


@SETTINGS
@given(st.integers(0, 40), st.binary(max_size=300), st.booleans())
def test_any_openflow_message_type_and_body(kind: int, body: bytes, right_length: bool) -> None:
    target = "OpenFlow messages of any type (os-ken's parser)"
    length = 8 + len(body) if right_length else min(0xFFFF, 8 + len(body) // 2)
    data = struct.pack("!BBHI", 4, kind, length, 9) + body
    with bounded(target):
        try:
            message = parse(data)
        except REFUSED as error:
            outcome(target, f"os-ken refused ({type(error).__name__})")
            return
        outcome(target, "dropped" if message is None else "parsed")


def test_the_unmutated_replies_read_back_as_the_pipelines() -> None:
    for flows in PIPELINES:
        message = parse(flow_stats_reply(flows))
        installed = wire.InstalledFlows(message.entries())
        same, other = installed.split(_by_encoding(flows))
        assert len(same) == len(flows) and other == []
