"""OpenFlow 1.3 messages for the flows brtun makes, and flow-stats entries read back, as bytes.

Why bytes and not an OpenFlow library's message objects: building and
serialising os-ken's objects costs about 55 us per flow and parsing
flow-stats about 22 us per entry, so at 50,000 flows Python, not the
switch, set the pace (bench/bench_agent.py).  A Flow is an immutable value,
so its bytes are computed once (`Flow.encoded`, from the field and action
declarations) and kept; a flow-stats entry is first reduced to a cheap key
(its table, priority, cookie, timeouts and the raw bytes of its match and
instructions), and only an entry whose key no desired flow has is decoded
into a Flow.

The bytes are os-ken's, to the byte: `tests/unit/test_wire.py` builds every
flow the pipeline makes with os-ken and compares, and
`tests/integration/test_wire_on_ovs.py` decodes what a real switch reports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from flows import actions, fields, ofp
from flows.actions import Action, RawAction
from flows.flow import Flow, Match, MatchField, StatsKey

_COMMANDS = {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT, "delete": ofp.OFPFC_DELETE_STRICT}
_ALL_ONES = 0xFFFFFFFFFFFFFFFF
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")  # ofp_header, then ofp_flow_mod up to its match
_PADDING = [bytes(count) for count in range(8)]
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")  # header, experimenter, exp_type, bundle_id, pad, flags
_STATS = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to its match


# ----- Flow -> messages ----------------------------------------------------------

def flow_mod(flow: Flow, command: str, xid: int) -> bytes:
    """An add, a strict modify or a strict delete of `flow`.

    A strict delete or modify also checks the cookie, so it cannot touch a
    foreign flow that happens to share the match."""
    encoded = flow.encoded
    match = encoded.match
    instructions = b"" if command == "delete" else encoded.instructions
    padding = _PADDING[-len(match) % 8]
    length = _FLOW_MOD.size + len(match) + len(padding) + len(instructions)
    head = _FLOW_MOD.pack(
        ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, length, xid,
        flow.cookie, 0 if command == "add" else _ALL_ONES, flow.table, _COMMANDS[command], flow.idle_timeout,
        flow.hard_timeout, flow.priority, ofp.OFP_NO_BUFFER, fields.OFPP_ANY, ofp.OFPG_ANY, 0)
    return b"".join((head, match, padding, instructions))


def bundle_add(message: bytes, bundle_id: int, flags: int) -> bytes:
    """ONF bundle extension (OpenFlow 1.3): `message`, whose xid the wrapper shares, into a bundle."""
    xid = struct.unpack_from("!I", message, 4)[0]
    head = _BUNDLE_ADD.pack(ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, 24 + len(message), xid, ofp.ONF_EXPERIMENTER_ID,
                            ofp.ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags)
    return head + message


# ----- flow-stats bytes -> keys and Flows ------------------------------------------
#
# A switch's bytes are checked before they are trusted: every length must fit inside what holds it and
# be long enough to step on, so a malformed entry is a WireError (a ValueError) saying where, never an
# IndexError, a struct.error or a loop that does not end.

STATS_MIN = _STATS.size + 8  # an ofp_flow_stats with an empty match, padded


class WireError(ValueError):
    """Bytes from a switch that are not what OpenFlow 1.3 says they are."""


def stats_key(buf: bytes | bytearray, offset: int) -> tuple[StatsKey, int]:
    """The key of the ofp_flow_stats at `offset` (equal to `Flow.encoded.key` of the same flow), and its length."""
    if offset < 0 or offset + STATS_MIN > len(buf):
        raise WireError(f"a flow-stats entry at byte {offset} runs past the message ({len(buf)} bytes)")
    length, table, _sec, _nsec, priority, idle, hard, _flags, cookie, _packets, _bytes = _STATS.unpack_from(buf, offset)
    if length < STATS_MIN or offset + length > len(buf):
        raise WireError(f"a flow-stats entry at byte {offset} says it is {length} bytes long; "
                        f"{len(buf) - offset} are left, at least {STATS_MIN} needed")
    match_start = offset + 48
    (match_length,) = struct.unpack_from("!H", buf, match_start + 2)
    instructions_start = match_start + ofp.padded_length(match_length)
    if match_length < 4 or instructions_start > offset + length:
        raise WireError(f"the match of the flow-stats entry at byte {offset} is {match_length} bytes long, "
                        f"which does not fit its {length} bytes")
    key = (table, priority, cookie, idle, hard, bytes(buf[match_start:match_start + match_length]),
           bytes(buf[instructions_start:offset + length]))
    return key, length


CONTENT_HEAD = struct.Struct("!BHHHQ")  # table, priority, idle and hard timeouts, cookie


def content_key(key: StatsKey) -> bytes:
    """A flow's identity and content as one byte string, the form `entry_content` gives an entry."""
    table, priority, cookie, idle, hard, match, instructions = key
    return CONTENT_HEAD.pack(table, priority, idle, hard, cookie) + match + bytes(-len(match) % 8) + instructions


def entry_content(buf: bytes | bytearray, offset: int) -> bytes:
    """The ofp_flow_stats at `offset` without its counters, age and flags: equal to `content_key` of
    the flow it reports.  A few slices and no unpacking: the canary compares every entry each second.
    The entry must have been checked (controller.lazystats steps only on entries that fit)."""
    entry = bytes(buf[offset:offset + (buf[offset] << 8 | buf[offset + 1])])
    return entry[2:3] + entry[12:18] + entry[24:32] + entry[48:]


def decode_match(data: bytes) -> Match:
    """An ofp_match (without its padding) -> Match; fields brtun does not model are kept raw."""
    items: list[MatchField] = []
    raw: list[str] = []
    at = 4
    while at < len(data):
        if at + 4 > len(data):
            raise WireError(f"a match field header at byte {at} of a {len(data)}-byte match is cut short")
        (header,) = struct.unpack_from("!I", data, at)
        masked, width = bool(header & 0x100), ofp.unmasked(header) & 0xFF
        end = at + 4 + width * (2 if masked else 1)
        if width == 0 or end > len(data):
            raise WireError(f"the match field {header:#x} at byte {at} does not fit the match")
        value = int.from_bytes(data[at + 4:at + 4 + width], "big")
        mask = int.from_bytes(data[at + 4 + width:end], "big") if masked else None
        at = end
        number = ofp.unmasked(header)
        if number in fields.BY_HEADER:
            field, value, mask = fields.from_header(number, value, mask)
            items.append(MatchField(field.name, value, mask))
        else:
            raw.append(f"oxm({number:#x})={value:#x}" + ("" if mask is None else f"/{mask:#x}"))
    return Match(tuple(items), tuple(raw))


def decode_instructions(data: bytes) -> tuple[tuple[Action, ...], int | None]:
    found: list[Action] = []
    goto = None
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise WireError(f"an instruction header at byte {at} is cut short")
        kind, length = ofp.TLV.unpack_from(data, at)
        if length < 8 or at + length > len(data):
            raise WireError(f"instruction {kind} at byte {at} says it is {length} bytes long "
                            f"({len(data) - at} left, at least 8 needed)")
        if kind == ofp.OFPIT_GOTO_TABLE:
            goto = data[at + 4]
        elif kind == ofp.OFPIT_APPLY_ACTIONS:
            inner = at + 8
            while inner < at + length:
                if inner + 4 > at + length:
                    raise WireError(f"an action header at byte {inner} is cut short")
                (size,) = struct.unpack_from("!H", data, inner + 2)
                if size < 8 or inner + size > at + length:
                    raise WireError(f"an action at byte {inner} says it is {size} bytes long")
                found.append(actions.decode(bytes(data[inner:inner + size])))
                inner += size
        else:
            found.append(RawAction(f"instruction({kind},{bytes(data[at + 4:at + length]).hex()})"))
        at += length
    return tuple(found), goto


def decode_stats(buf: bytes | bytearray, offset: int) -> Flow:
    """The ofp_flow_stats at `offset` -> Flow (WireError if the bytes are not one)."""
    key, _length = stats_key(buf, offset)
    table, priority, cookie, idle, hard, match, instructions = key
    try:
        found, goto = decode_instructions(instructions)
        return Flow(table, priority, decode_match(match), found, goto, cookie, idle, hard)
    except WireError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, struct.error) as error:
        raise WireError(f"the flow-stats entry at byte {offset} is no flow brtun can read: "
                        f"{type(error).__name__}: {error}") from None


class InstalledFlows(Sequence[Flow]):
    """A switch's flow-stats entries, kept as bytes; decoded to Flows only when asked.

    `split` is how flows.diff compares them with the desired flows: an entry
    whose key equals a desired flow's `Encoded.key` is that flow, installed
    unchanged, and is never decoded.
    """

    def __init__(self, entries: list[tuple[bytes | bytearray, int]]) -> None:
        self._entries = entries  # (message buffer, offset of an ofp_flow_stats)
        self._flows: list[Flow] | None = None

    def split(self, desired: Mapping[StatsKey, Flow]) -> tuple[list[Flow], list[Flow]]:
        """(desired flows installed exactly, every other entry decoded)."""
        same, other = [], []
        for buf, offset in self._entries:
            key, _length = stats_key(buf, offset)
            flow = desired.get(key)
            if flow is not None:
                same.append(flow)
            else:
                other.append(decode_stats(buf, offset))
        return same, other

    def contents(self) -> Iterator[bytes]:
        """Each entry's `entry_content`, nothing decoded (what the canary compares)."""
        for buf, offset in self._entries:
            yield entry_content(buf, offset)

    def _all(self) -> list[Flow]:
        if self._flows is None:
            self._flows = [decode_stats(buf, offset) for buf, offset in self._entries]
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
