"""Open vSwitch as the printer: Neutron's flow-mods applied to a real bridge, then dumped.

Neutron's messages go to the bridge's management socket as Neutron's agent
sends them (the bytes os-ken serialises, in order, non-strict deletes and
all), then `ovs-ofctl dump-flows` prints what the switch holds, the same
printing `brtun render` reproduces.  A flow-mod the switch refuses fails the
comparison: Neutron's agent would have logged an error there too.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from os_ken.ofproto import ofproto_v1_3 as ofp

from flows.flow import Flow
from flows.textparse import parse_dump
from ovshost.privateovs import PrivateOvs
from tests.compat.neutron import Sent

HEADER = struct.Struct("!BBHI")
BRIDGE = "br-neutron"


class Refused(AssertionError):
    pass


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the switch closed the connection")
        data += chunk
    return data


class NeutronSwitch:
    """A bridge of a private Open vSwitch that takes a host's Neutron flow-mods (by default a
    scratch bridge of its own, replayed from empty for each comparison)."""

    def __init__(self, ovs: PrivateOvs, bridge: str = BRIDGE, create: bool = True) -> None:
        self.ovs = ovs
        self.bridge = bridge
        if create:
            ovs.add_bridge(bridge, "fail_mode=secure", "protocols=OpenFlow13", datapath="dummy")

    def replay(self, messages: Sequence[Sent]) -> list[Flow]:
        """The flows the bridge holds after these messages, starting from no flow at all."""
        self.ovs.ofctl("del-flows", self.bridge)
        self.send(messages)
        return self.flows()

    def send(self, messages: Sequence[Sent]) -> None:
        """Neutron's messages, in order, confirmed by a barrier; any error fails."""
        if not messages:
            return
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(20)
            sock.connect(str(self.ovs.rundir / f"{self.bridge}.mgmt"))
            sock.sendall(HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 1))
            sent = {message.xid: message.text for message in messages}
            barrier = max(sent) + 1
            sock.sendall(b"".join(message.data for message in messages)
                         + HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, 8, barrier))
            refused = []
            while True:
                _version, kind, length, xid = HEADER.unpack(_receive(sock, 8))
                body = _receive(sock, length - 8)
                if kind == ofp.OFPT_ERROR:
                    error_type, code = struct.unpack_from("!HH", body)
                    refused.append(f"error type={error_type} code={code} for {sent.get(xid)}")
                elif kind == ofp.OFPT_BARRIER_REPLY and xid == barrier:
                    break
        if refused:
            raise Refused("the switch refused Neutron's flow-mods:\n" + "\n".join(refused))

    def add(self, flows: Sequence[Flow]) -> None:
        """Flows written by someone else (a learn action), as ovs-ofctl adds them."""
        for flow in flows:
            self.ovs.ofctl("add-flow", self.bridge, flow.render().strip())

    def flows(self) -> list[Flow]:
        return parse_dump(self.ovs.ofctl("--no-stats", "dump-flows", self.bridge))
