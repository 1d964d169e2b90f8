"""The OpenFlow messages a switch may send the agent, checked before os-ken parses them.

os-ken parses every message a connection brings, on the hub that also serves
the other switch, and some of its parsers trust the lengths inside a
message: a HELLO element of length 0 keeps its loop going forever, with no
yield to the hub (found by tests/fuzz).  A switch has no business sending
the agent most message types anyway.  So `install` puts this check in front
of os-ken's `ofproto_parser.msg`:

- a message of a type brtun never asks for or uses (PACKET_IN, FLOW_REMOVED,
  a multipart reply other than flow, aggregate and port-desc, ...) is
  dropped, as os-ken drops what it cannot parse;
- a message of a type brtun uses whose lengths do not add up (an element,
  a port or a property that does not fit, a reply of the wrong size), or
  that os-ken's parser fails on, ends the connection (rather than leaving a
  request waiting for a reply that was dropped): the listener
  (controller.listener) logs it in one line.

Flow-stats entries are checked where they are stepped on (controller.lazystats).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp

_HEADER = struct.Struct("!BBHI")
_TLV = struct.Struct("!HH")
PORT_SIZE = 64  # ofp_port, fixed in OpenFlow 1.3
USED = {ofp.OFPT_HELLO, ofp.OFPT_ERROR, ofp.OFPT_ECHO_REQUEST, ofp.OFPT_ECHO_REPLY, ofp.OFPT_EXPERIMENTER,
        ofp.OFPT_FEATURES_REPLY, ofp.OFPT_PORT_STATUS, ofp.OFPT_MULTIPART_REPLY, ofp.OFPT_BARRIER_REPLY}
MULTIPART_USED = {ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE, ofp.OFPMP_PORT_DESC}


class MalformedMessage(ValueError):
    """A message of a type brtun uses whose lengths do not add up: its connection ends."""


def check(version: int, msg_type: int, msg_len: int, buf: bytes | bytearray) -> bool:
    """True: parse it; False: drop it (a type brtun does not use); MalformedMessage: end the connection."""
    if msg_type == ofp.OFPT_HELLO:
        _hello(msg_len, buf)
        return True
    if version != ofp.OFP_VERSION or msg_type not in USED:
        return False
    minimum = {ofp.OFPT_ERROR: 12, ofp.OFPT_EXPERIMENTER: 16, ofp.OFPT_FEATURES_REPLY: 32,
               ofp.OFPT_PORT_STATUS: 16 + PORT_SIZE, ofp.OFPT_MULTIPART_REPLY: 16}.get(msg_type, 8)
    if msg_len < minimum:
        raise MalformedMessage(f"a message of type {msg_type} of {msg_len} bytes (at least {minimum} expected)")
    if msg_type == ofp.OFPT_MULTIPART_REPLY:
        (part,) = struct.unpack_from("!H", buf, 8)
        if part not in MULTIPART_USED:
            return False
        body = msg_len - 16
        if part == ofp.OFPMP_PORT_DESC and body % PORT_SIZE:
            raise MalformedMessage(f"a port-desc reply of {body} bytes, not a number of {PORT_SIZE}-byte ports")
        if part == ofp.OFPMP_AGGREGATE and body != 24:
            raise MalformedMessage(f"an aggregate reply of {body} bytes (24 expected)")
    return True


def _hello(msg_len: int, buf: bytes | bytearray) -> None:
    """HELLO elements must each fit, and be at least their own header long (os-ken steps by them)."""
    at = 8
    while at < msg_len:
        if at + _TLV.size > msg_len:
            raise MalformedMessage(f"a HELLO element header at byte {at} of {msg_len} is cut short")
        _type, length = _TLV.unpack_from(buf, at)
        if length < _TLV.size or at + length > msg_len:
            raise MalformedMessage(f"a HELLO element at byte {at} says it is {length} bytes long")
        at += length


def install() -> None:
    """Put `check` in front of os-ken's message parser (idempotent; this process only)."""
    parse: Callable[..., Any] = ofproto_parser.msg
    if getattr(parse, "brtun_guarded", False):
        return

    def guarded(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: Any) -> Any:
        if len(buf) < msg_len or msg_len < _HEADER.size:
            raise MalformedMessage(f"a message says it is {msg_len} bytes long; {len(buf)} arrived")
        if not check(version, msg_type, msg_len, buf):
            return None
        message = parse(datapath, version, msg_type, msg_len, xid, buf)
        if message is None:  # os-ken's parser failed on it (and logged why): a reply would never come
            raise MalformedMessage(f"a message of type {msg_type} that os-ken cannot parse")
        return message

    guarded.brtun_guarded = True  # type: ignore[attr-defined]
    ofproto_parser.msg = guarded
