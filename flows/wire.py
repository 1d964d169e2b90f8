"""A fast OpenFlow 1.3 encoder and decoder for the flows brtun makes, byte-identical to os-ken.

Why: building and serialising os-ken message objects costs about 55 us per
flow and parsing flow-stats about 22 us per entry, so at 50,000 flows
Python, not the switch, set the pace (bench/bench_agent.py).  A Flow is an
immutable value, so its bytes are computed once (`Flow.encoded`) and kept;
a flow-stats entry is first reduced to a cheap key (its table, priority,
cookie, timeouts and the raw bytes of its match and instructions), and
only an entry whose key no desired flow has is decoded into a Flow.

os-ken stays the library of record: the field numbers come from its OXM
tables, `tests/unit/test_wire.py` proves every flow the pipeline makes
encodes to exactly os-ken's bytes and decodes to exactly what
`flows.ofmsg.from_flow_stats` gives, and anything this module does not
know (a foreign flow's unknown action, say) is handed to os-ken instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, overload

from os_ken.ofproto import ofproto_v1_3 as ofp

from flows import fields
from flows.actions import (
    Action,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    LearnSpec,
    Load,
    Move,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    Subfield,
)
from flows.fields import Field
from flows.flow import Flow, Match, MatchField


class Unsupported(ValueError):
    """Outside what this module encodes or decodes: os-ken does it instead."""


# ----- field numbers, from os-ken's OXM tables -------------------------------

@dataclass(frozen=True)
class _Oxm:
    name: str  # os-ken's name for it
    header: int  # 32-bit OXM/NXM header, no mask bit
    width: int  # value bytes
    order: int  # os-ken sorts a match's fields by this

    def tlv(self, value: int, mask: int | None) -> bytes:
        if mask is None:
            return struct.pack("!I", self.header) + value.to_bytes(self.width, "big")
        header = (self.header | 0x100) + self.width  # has-mask bit, doubled length
        return struct.pack("!I", header) + value.to_bytes(self.width, "big") + mask.to_bytes(self.width, "big")


def _oxm(name: str) -> _Oxm:
    number = ofp.oxm_from_user_header(name)
    header = bytearray()
    ofp.oxm_serialize_header(number, header, 0)
    (value,) = struct.unpack("!I", header)
    order = number[0] if isinstance(number, tuple) else number
    return _Oxm(name, value, value & 0xFF, order)


_NAMES = sorted({*fields.BY_OXM, "icmpv4_type", "icmpv6_type", "icmpv4_code", "icmpv6_code"} - {"vlan_vid_nxm"})
OXM: dict[str, _Oxm] = {name: _oxm(name) for name in _NAMES}
_BY_HEADER: dict[int, _Oxm] = {oxm.header: oxm for oxm in OXM.values()}

OFP_VERSION = ofp.OFP_VERSION
OFPT_FLOW_MOD = ofp.OFPT_FLOW_MOD
OFPT_EXPERIMENTER = ofp.OFPT_EXPERIMENTER
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_ADD_MESSAGE = ofp.ONF_ET_BUNDLE_ADD_MESSAGE
NX_VENDOR_ID = 0x00002320
NXAST_REG_MOVE, NXAST_REG_LOAD, NXAST_LEARN = 6, 7, 16
_COMMANDS = {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT, "delete": ofp.OFPFC_DELETE_STRICT}
_ALL_ONES = 0xFFFFFFFFFFFFFFFF

_HEADER = struct.Struct("!BBHI")  # ofp_header
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # ofp_flow_mod after the header
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")  # header, experimenter, exp_type, bundle_id, pad, flags
_STATS = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to its match
_TLV = struct.Struct("!HH")


# (table, priority, cookie, idle_timeout, hard_timeout, match bytes, instruction bytes)
StatsKey = tuple[int, int, int, int, int, bytes, bytes]


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


# ----- Flow -> bytes -----------------------------------------------------------

def _match_oxm(item: MatchField, eth_type: int | None) -> tuple[_Oxm, int, int | None]:
    """The OXM an os-ken OFPMatch built by flows.ofmsg.to_match would carry."""
    if item.name == "vlan_tci":
        mask = 0xFFFF if item.mask is None else item.mask
        if mask & 0xE000:
            return OXM["vlan_tci"], item.value, item.mask
        vid_mask = mask & 0x1FFF
        return OXM["vlan_vid"], item.value & 0x1FFF, None if vid_mask == 0x1FFF else vid_mask
    if item.name in ("icmp_type", "icmp_code"):
        family = "icmpv6" if eth_type == fields.ETH_TYPE_IPV6 else "icmpv4"
        return OXM[f"{family}_{item.name.split('_')[1]}"], item.value, item.mask
    oxm = fields.BY_NAME[item.name].oxm
    if oxm is None:
        raise Unsupported(f"{item.name} has no OpenFlow 1.3 match field")
    return OXM[oxm], item.value, item.mask


def encode_match(match: Match) -> bytes:
    """ofp_match (OXM), padded: the fields in os-ken's order (by OXM number)."""
    if match.raw:
        raise Unsupported(f"raw match {match.raw}")
    eth_type = match.value("dl_type")
    entries = sorted((_match_oxm(item, eth_type) for item in match.fields), key=lambda entry: entry[0].order)
    body = b"".join(oxm.tlv(value, mask) for oxm, value, mask in entries)
    return _pad8(_TLV.pack(ofp.OFPMT_OXM, 4 + len(body)) + body)


def _subfield_oxm(subfield: Subfield, as_reported: bool = False) -> _Oxm:
    """The header naming a field in a Nicira action (move, load, learn).

    os-ken writes the OXM header; Open vSwitch reports the field by its NXM
    header wherever one of the same width exists (NXM_OF_IN_PORT is 16 bits,
    so in_port stays OXM_OF_IN_PORT): `as_reported` gives the latter.
    """
    spec = fields.BY_NXM.get(subfield.field)
    if spec is None or spec.osken is None:
        raise Unsupported(f"field {subfield.field}")
    oxm = OXM[spec.osken]
    if as_reported:
        nxm = OXM.get(spec.osken + "_nxm")
        if nxm is not None and nxm.width == oxm.width:
            return nxm
    return oxm


def _learn_spec(spec: LearnSpec, as_reported: bool) -> bytes:
    if isinstance(spec, LearnOutput):
        assert spec.src.n_bits is not None
        source = _subfield_oxm(spec.src, as_reported)
        return struct.pack("!HIH", (2 << 11) | spec.src.n_bits, source.header, spec.src.start)
    n_bits = spec.dst.n_bits
    assert n_bits is not None
    dst_type = 0 if isinstance(spec, LearnMatch) else 1
    if isinstance(spec.src, int):
        source = spec.src.to_bytes((n_bits + 15) // 16 * 2, "big")
        src_type = 1
    else:
        source = struct.pack("!IH", _subfield_oxm(spec.src, as_reported).header, spec.src.start)
        src_type = 0
    head = struct.pack("!H", (src_type << 13) | (dst_type << 11) | n_bits)
    return head + source + struct.pack("!IH", _subfield_oxm(spec.dst, as_reported).header, spec.dst.start)


@lru_cache(maxsize=1 << 16)
def encode_action(action: Action, as_reported: bool = False) -> bytes:
    """One action's bytes; remembered, because most actions recur across thousands of flows
    (pop_vlan, a network's set_field of its key, an output to a tunnel, the ARP responder's moves)."""
    if isinstance(action, Output):
        return struct.pack("!HHIH6x", ofp.OFPAT_OUTPUT, 16, action.port, action.max_len)
    if isinstance(action, PushVlan):
        return struct.pack("!HHH2x", ofp.OFPAT_PUSH_VLAN, 8, action.ethertype)
    if isinstance(action, PopVlan):
        return struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)
    if isinstance(action, SetField):
        spec = fields.BY_MF_NAME[action.field]
        if spec.oxm is None:
            raise Unsupported(f"set_field of {action.field}")
        tlv = OXM[spec.oxm].tlv(action.value, None)
        return _pad8(_TLV.pack(ofp.OFPAT_SET_FIELD, (4 + len(tlv) + 7) // 8 * 8) + tlv)
    if isinstance(action, Move):
        assert action.src.n_bits is not None
        return struct.pack("!HHIHHHHII", ofp.OFPAT_EXPERIMENTER, 24, NX_VENDOR_ID, NXAST_REG_MOVE,
                           action.src.n_bits, action.src.start, action.dst.start,
                           _subfield_oxm(action.src, as_reported).header,
                           _subfield_oxm(action.dst, as_reported).header)
    if isinstance(action, Load):
        assert action.dst.n_bits is not None
        ofs_nbits = (action.dst.start << 6) | (action.dst.n_bits - 1)
        return struct.pack("!HHIHHIQ", ofp.OFPAT_EXPERIMENTER, 24, NX_VENDOR_ID, NXAST_REG_LOAD, ofs_nbits,
                           _subfield_oxm(action.dst, as_reported).header, action.value)
    if isinstance(action, Learn):
        specs = b"".join(_learn_spec(spec, as_reported) for spec in action.specs)
        length = (32 + len(specs) + 7) // 8 * 8
        head = struct.pack("!HHIHHHHQHBxHH", ofp.OFPAT_EXPERIMENTER, length, NX_VENDOR_ID, NXAST_LEARN,
                           action.idle_timeout, action.hard_timeout, action.priority, action.cookie, 0,
                           action.table, 0, 0)
        return _pad8(head + specs)
    raise Unsupported(f"action {action.render()}")


def encode_instructions(flow: Flow, as_reported: bool = False) -> bytes:
    parts = []
    if flow.actions:
        actions = b"".join(encode_action(action, as_reported) for action in flow.actions)
        parts.append(struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions)
    if flow.goto is not None:
        parts.append(struct.pack("!HHB3x", ofp.OFPIT_GOTO_TABLE, 8, flow.goto))
    return b"".join(parts)


@dataclass(frozen=True)
class Encoded:
    """A flow's bytes, kept with the flow (`Flow.encoded`): the match and
    instructions as os-ken sends them, and the key of the flow-stats entry
    Open vSwitch reports for it (the same bytes, but NXM field headers in
    Nicira actions)."""

    match: bytes  # ofp_match, without its padding (the key shares it)
    instructions: bytes
    key: StatsKey  # see stats_key()

    def flow_mod(self, flow: Flow, command: str, xid: int) -> bytes:
        """What flows.ofmsg.flow_mod serialises: add, strict modify or strict delete."""
        deleting = command == "delete"
        instructions = b"" if deleting else self.instructions
        body = _FLOW_MOD.pack(flow.cookie, 0 if command == "add" else _ALL_ONES, flow.table, _COMMANDS[command],
                              flow.idle_timeout, flow.hard_timeout, flow.priority, ofp.OFP_NO_BUFFER,
                              ofp.OFPP_ANY, ofp.OFPG_ANY, 0)
        padding = bytes(-len(self.match) % 8)
        length = 8 + len(body) + len(self.match) + len(padding) + len(instructions)
        return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, length, xid) + body + self.match + padding + instructions


def encode(flow: Flow) -> Encoded:
    padded = encode_match(flow.match)
    (match_length,) = struct.unpack_from("!H", padded, 2)
    match = padded[:match_length]
    instructions = encode_instructions(flow)
    nicira = any(isinstance(action, (Move, Load, Learn)) for action in flow.actions)
    reported = encode_instructions(flow, as_reported=True) if nicira else instructions
    key = (flow.table, flow.priority, flow.cookie, flow.idle_timeout, flow.hard_timeout, match, reported)
    return Encoded(match, instructions, key)


def bundle_add(message: bytes, bundle_id: int, flags: int) -> bytes:
    """ONF bundle extension (OpenFlow 1.3): `message`, whose xid the wrapper shares, into a bundle."""
    xid = struct.unpack_from("!I", message, 4)[0]
    head = _BUNDLE_ADD.pack(OFP_VERSION, OFPT_EXPERIMENTER, 24 + len(message), xid, ONF_EXPERIMENTER_ID,
                            ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags)
    return head + message


# ----- flow-stats bytes -> keys and Flows --------------------------------------

def stats_key(buf: bytes | bytearray, offset: int) -> tuple[StatsKey, int]:
    """The key of the ofp_flow_stats at `offset` (equal to `Encoded.key` of the same flow), and its length."""
    length, table, _sec, _nsec, priority, idle, hard, _flags, cookie, _packets, _bytes = _STATS.unpack_from(buf, offset)
    match_start = offset + 48
    (match_length,) = struct.unpack_from("!H", buf, match_start + 2)
    instructions_start = match_start + (match_length + 7) // 8 * 8
    key = (table, priority, cookie, idle, hard, bytes(buf[match_start:match_start + match_length]),
           bytes(buf[instructions_start:offset + length]))
    return key, length


def _value(data: bytes | bytearray, start: int, width: int) -> int:
    return int.from_bytes(data[start:start + width], "big")


def _field_of(oxm: _Oxm) -> Field:
    spec = fields.BY_OXM.get(oxm.name)
    if spec is None or spec is fields.VLAN_VID:
        raise Unsupported(oxm.name)
    return spec


def _oxm_at(data: bytes | bytearray, at: int) -> tuple[_Oxm, bool]:
    (header,) = struct.unpack_from("!I", data, at)
    oxm = _BY_HEADER.get(header & ~0x1FF | ((header & 0xFF) >> 1 if header & 0x100 else header & 0xFF))
    if oxm is None:
        raise Unsupported(f"OXM header {header:#x}")
    return oxm, bool(header & 0x100)


def decode_match(data: bytes) -> Match:
    """An ofp_match (without its padding) -> Match, as flows.ofmsg.from_match reads os-ken's."""
    items = []
    at = 4
    while at < len(data):
        oxm, masked = _oxm_at(data, at)
        value = _value(data, at + 4, oxm.width)
        mask = _value(data, at + 4 + oxm.width, oxm.width) if masked else None
        at += 4 + oxm.width * (2 if masked else 1)
        name = oxm.name.removesuffix("_nxm")
        if name == "vlan_vid":
            items.append(MatchField("vlan_tci", value, 0x1FFF if mask is None else mask))
        elif name in ("icmpv4_type", "icmpv6_type", "icmpv4_code", "icmpv6_code"):
            items.append(MatchField("icmp_" + name.split("_")[1], value, mask))
        else:
            items.append(MatchField(_field_of(oxm).name, value, mask))
    return Match(tuple(items))


def _subfield_at(data: bytes | bytearray, at: int, n_bits: int) -> Subfield:
    oxm, masked = _oxm_at(data, at)
    (start,) = struct.unpack_from("!H", data, at + 4)
    if masked:
        raise Unsupported("a masked subfield")
    spec = _field_of(oxm)
    if spec.nxm is None:
        raise Unsupported(oxm.name)
    return Subfield(spec.nxm, start, n_bits)


def _learn(data: bytes | bytearray, at: int, end: int) -> Learn:
    idle, hard, priority, cookie, _flags, table = struct.unpack_from("!HHHQHB", data, at + 10)
    specs: list[LearnSpec] = []
    at += 32
    while at + 2 <= end:
        (head,) = struct.unpack_from("!H", data, at)
        at += 2
        if head == 0:
            continue  # padding
        src_type, dst_type, n_bits = (head >> 13) & 1, (head >> 11) & 3, head & 0x3FF
        source: Subfield | int
        if src_type == 0:
            source = _subfield_at(data, at, n_bits)
            at += 6
        else:
            width = (n_bits + 15) // 16 * 2
            source = _value(data, at, width)
            at += width
        if dst_type == 2:
            if not isinstance(source, Subfield):
                raise Unsupported("learn output of a constant")
            specs.append(LearnOutput(source))
            continue
        if dst_type not in (0, 1):
            raise Unsupported(f"learn spec destination {dst_type}")
        target = _subfield_at(data, at, n_bits)
        at += 6
        specs.append(LearnMatch(target, source) if dst_type == 0 else LearnLoad(target, source))
    return Learn(table=table, priority=priority, idle_timeout=idle, hard_timeout=hard, cookie=cookie,
                 specs=tuple(specs))


def decode_action(data: bytes | bytearray, at: int) -> tuple[Action, int]:
    """One action at `at` -> (Action, its length), as flows.ofmsg.from_action reads os-ken's."""
    kind, length = _TLV.unpack_from(data, at)
    if kind == ofp.OFPAT_OUTPUT:
        port, max_len = struct.unpack_from("!IH", data, at + 4)
        return Output(port, max_len if port == fields.OFPP_CONTROLLER else 0), length
    if kind == ofp.OFPAT_PUSH_VLAN:
        return PushVlan(struct.unpack_from("!H", data, at + 4)[0]), length
    if kind == ofp.OFPAT_POP_VLAN:
        return PopVlan(), length
    if kind == ofp.OFPAT_SET_FIELD:
        oxm, masked = _oxm_at(data, at + 4)
        spec = fields.BY_OXM.get(oxm.name)
        if masked or spec is None or spec.mf_name is None:
            raise Unsupported(f"set_field of {oxm.name}")
        return SetField(spec.mf_name, _value(data, at + 8, oxm.width)), length
    if kind == ofp.OFPAT_EXPERIMENTER:
        vendor, subtype = struct.unpack_from("!IH", data, at + 4)
        if vendor == NX_VENDOR_ID and subtype == NXAST_REG_MOVE:
            n_bits, src_ofs, dst_ofs = struct.unpack_from("!HHH", data, at + 10)
            src_oxm, _ = _oxm_at(data, at + 16)
            dst_oxm, _ = _oxm_at(data, at + 20)
            src, dst = _field_of(src_oxm), _field_of(dst_oxm)
            if src.nxm is None or dst.nxm is None:
                raise Unsupported("move of a field without an NXM name")
            return Move(Subfield(src.nxm, src_ofs, n_bits), Subfield(dst.nxm, dst_ofs, n_bits)), length
        if vendor == NX_VENDOR_ID and subtype == NXAST_REG_LOAD:
            ofs_nbits, _header, value = struct.unpack_from("!HIQ", data, at + 10)
            dst_oxm, _ = _oxm_at(data, at + 12)
            dst = _field_of(dst_oxm)
            if dst.nxm is None:
                raise Unsupported("load into a field without an NXM name")
            return Load(Subfield(dst.nxm, ofs_nbits >> 6, (ofs_nbits & 0x3F) + 1), value), length
        if vendor == NX_VENDOR_ID and subtype == NXAST_LEARN:
            return _learn(data, at, at + length), length
    raise Unsupported(f"action type {kind}")


def decode_instructions(data: bytes) -> tuple[tuple[Action, ...], int | None]:
    actions: list[Action] = []
    goto = None
    at = 0
    while at < len(data):
        kind, length = _TLV.unpack_from(data, at)
        if kind == ofp.OFPIT_GOTO_TABLE:
            goto = data[at + 4]
        elif kind == ofp.OFPIT_APPLY_ACTIONS:
            inner = at + 8
            while inner < at + length:
                action, size = decode_action(data, inner)
                actions.append(action)
                inner += size
        else:
            raise Unsupported(f"instruction type {kind}")
        at += length
    return tuple(actions), goto


def decode_stats(buf: bytes | bytearray, offset: int) -> Flow:
    """The ofp_flow_stats at `offset` -> Flow (ofmsg.from_flow_stats of os-ken's parse, faster)."""
    key, _length = stats_key(buf, offset)
    table, priority, cookie, idle, hard, match, instructions = key
    actions, goto = decode_instructions(instructions)
    return Flow(table, priority, decode_match(match), actions, goto, cookie, idle, hard)


class InstalledFlows(Sequence[Flow]):
    """A switch's flow-stats entries, kept as bytes; decoded to Flows only when asked.

    `split` is how flows.diff compares them with the desired flows: an entry
    whose key equals a desired flow's `Encoded.key` is that flow, installed
    unchanged, and is never decoded.  `decode` decodes one entry (os-ken's
    parser where this module does not know a part of it).
    """

    def __init__(self, entries: list[tuple[bytes | bytearray, int]],
                 fallback: Any = None) -> None:
        self._entries = entries  # (message buffer, offset of an ofp_flow_stats)
        self._fallback = fallback  # (buffer, offset) -> Flow, for what this module does not know
        self._flows: list[Flow] | None = None

    def decode(self, buf: bytes | bytearray, offset: int) -> Flow:
        try:
            return decode_stats(buf, offset)
        except (Unsupported, KeyError, ValueError, struct.error):
            if self._fallback is None:
                raise
            return self._fallback(buf, offset)

    def split(self, desired: Mapping[StatsKey, Flow]) -> tuple[list[Flow], list[Flow]]:
        """(desired flows installed exactly, every other entry decoded)."""
        same, other = [], []
        for buf, offset in self._entries:
            key, _length = stats_key(buf, offset)
            flow = desired.get(key)
            if flow is not None:
                same.append(flow)
            else:
                other.append(self.decode(buf, offset))
        return same, other

    def _all(self) -> list[Flow]:
        if self._flows is None:
            self._flows = [self.decode(buf, offset) for buf, offset in self._entries]
        return self._flows

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Flow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Flow]: ...
    def __getitem__(self, index: int | slice) -> Flow | Sequence[Flow]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._all())
