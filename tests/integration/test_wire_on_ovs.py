"""flows.wire against the real switch: what Open vSwitch reports decodes as os-ken decodes it,
and every desired flow is found by its bytes (so a restart never decodes an unchanged flow)."""

from __future__ import annotations

import socket
import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows import wire
from flows.flow import Flow, render_flows
from flows.model import build_bridge
from flows.pipeline import build
from flows.textparse import parse_flow
from ovshost.privateovs import PrivateOvs
from tests import osken_reference as reference
from tests.conftest import CONFIG_NAMES
from tests.unit.helpers import config
from tests.unit.test_roundtrip import LEARNED

pytestmark = pytest.mark.integration
HEADER = struct.Struct("!BBHI")


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the switch closed the connection"
        data += chunk
    return data


def flow_stats_entries(ovs: PrivateOvs, bridge: str) -> list[bytes]:
    """Every ofp_flow_stats the switch sends for a table-wide request, as raw bytes (no os-ken)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(ovs.rundir / f"{bridge}.mgmt"))
        sock.sendall(HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 1))
        request = struct.pack("!HH4xB3xII4xQQ", ofp.OFPMP_FLOW, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0)
        request += struct.pack("!HH4x", ofp.OFPMT_OXM, 4)
        sock.sendall(HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REQUEST, 8 + len(request), 2) + request)
        entries = []
        while True:
            _version, kind, length, xid = HEADER.unpack(receive(sock, 8))
            body = receive(sock, length - 8)
            if kind != ofp.OFPT_MULTIPART_REPLY or xid != 2:
                continue
            _type, flags = struct.unpack_from("!HH", body, 0)
            at = 8
            while at < len(body):
                (size,) = struct.unpack_from("!H", body, at)
                entries.append(body[at:at + size])
                at += size
            if not flags & ofp.OFPMPF_REPLY_MORE:
                return entries


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_reported_flow_decodes_as_os_ken_decodes_it_and_every_desired_flow_matches_by_bytes(
        name: str, private_ovs: PrivateOvs) -> None:
    cfg = config(name)
    private_ovs.add_bridge("br-tun", "fail_mode=secure", "protocols=OpenFlow13")
    for host in cfg.host_names:
        desired = build(build_bridge(cfg, host))
        flows = private_ovs.rundir / "flows"
        flows.write_text(render_flows(desired))
        private_ovs.ofctl("--bundle", "replace-flows", "br-tun", str(flows))
        private_ovs.ofctl("add-flow", "br-tun", LEARNED.strip())  # as table 10's learn action writes one
        entries = flow_stats_entries(private_ovs, "br-tun")
        decoded: list[Flow] = []
        for entry in entries:
            fast = wire.decode_stats(entry, 0)
            assert fast == reference.from_flow_stats(parser.OFPFlowStats.parser(entry, 0))
            decoded.append(fast)
        assert set(desired) <= set(decoded) and parse_flow(LEARNED) in decoded
        keys = {wire.stats_key(entry, 0)[0] for entry in entries}
        assert [flow.render() for flow in desired if flow.encoded.key not in keys] == [], host
