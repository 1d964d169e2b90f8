"""Flow-stats replies that os-ken parses only when someone asks for `.body`.

os-ken parses every flow-stats entry into objects as the reply arrives,
about 22 us an entry: 1.1 s of a 50,000-flow read-back, five times what
`ovs-ofctl dump-flows` needs for the whole switch.  brtun compares entries
by their bytes (flows.wire) and decodes only those that differ, so it swaps
os-ken's reply class for OFPMP_FLOW for this subclass: the same name (so the
same EventOFPFlowStatsReply), the same `.body` when read (os-ken's own
parser, on first access), plus `entries()`, the (buffer, offset) of each
entry, which costs one length read per entry.
"""

from __future__ import annotations

import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows.wire import STATS_MIN, WireError

_LENGTH = struct.Struct("!H")


class _EntryAt:
    """Where one ofp_flow_stats starts, and its length: all the reply parser needs to step on."""

    __slots__ = ("error", "length", "offset")

    def __init__(self, offset: int, length: int, error: str | None = None) -> None:
        self.offset = offset
        self.length = length
        self.error = error  # the entry is not one: the reply is refused when its entries are asked for

    @classmethod
    def parser(cls, buf: Any, offset: int) -> _EntryAt:
        """os-ken steps from entry to entry by this length.  A length too short (0 would never end) or
        running past the message ends the stepping, and the reply is refused (WireError) when its
        entries are asked for, at once rather than by a timeout."""
        length = _LENGTH.unpack_from(buf, offset)[0] if offset + 2 <= len(buf) else 0
        if length < STATS_MIN or offset + length > len(buf):
            # a step past any message's end (lengths are 16 bits): os-ken's loop ends here
            return cls(offset, 1 << 16, f"a flow-stats entry at byte {offset} says it is {length} bytes long "
                       f"({max(len(buf) - offset, 0)} left, at least {STATS_MIN} needed)")
        return cls(offset, length)


class OFPFlowStatsReply(parser.OFPFlowStatsReply):  # type: ignore[misc]
    """os-ken's flow-stats reply, with the body parsed lazily (see the module docstring)."""

    cls_stats_body_cls = _EntryAt

    @property  # type: ignore[override]
    def body(self) -> Any:
        if self._positions is not None and self._parsed is None:
            self.entries()  # refuses a malformed reply before os-ken's parser reads it
            self._parsed = [parser.OFPFlowStats.parser(self.buf, at.offset) for at in self._positions]
        return self._parsed

    @body.setter
    def body(self, value: Any) -> None:
        positions = value is not None and all(isinstance(item, _EntryAt) for item in value)
        self._positions = value if positions else None
        self._parsed = None if positions else value

    def entries(self) -> list[tuple[Any, int]]:
        """(message buffer, offset) of every ofp_flow_stats in this part of the reply."""
        if self._positions is None:
            raise ValueError("this reply was built, not received: it has no wire entries")
        for at in self._positions:
            if at.error is not None:
                raise WireError(at.error)
        return [(self.buf, at.offset) for at in self._positions]


def install() -> None:
    """Make os-ken use the lazy reply for OFPMP_FLOW (idempotent; this process only)."""
    parser.OFPMultipartReply._STATS_MSG_TYPES[ofp.OFPMP_FLOW] = OFPFlowStatsReply
