"""The Flow value: what one OpenFlow flow entry is, and the line the switch prints for it.

A flow's identity in OpenFlow is (table, priority, match): two flow-mods with
the same identity replace each other.  `Flow.key` is that identity, and
`Match` is normalised (fields in print order, values masked, full masks
dropped) so that a flow built here and the same flow read back from a switch
compare equal.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from flows import actions, fields, ofp
from flows.actions import Action
from flows.fields import Field, Notation

OFP_DEFAULT_PRIORITY = 32768

# lib/match.c prints these shorthands instead of dl_type (and nw_proto).
_IP_SHORTHANDS = {fields.IPPROTO_ICMP: "icmp", 2: "igmp", fields.IPPROTO_TCP: "tcp",
                  fields.IPPROTO_UDP: "udp", 132: "sctp"}
_IPV6_SHORTHANDS = {fields.IPPROTO_ICMPV6: "icmp6", fields.IPPROTO_TCP: "tcp6",
                    fields.IPPROTO_UDP: "udp6", 132: "sctp6"}
_TYPE_SHORTHANDS = {fields.ETH_TYPE_ARP: "arp", 0x8035: "rarp", 0x8847: "mpls", 0x8848: "mplsm"}
SHORTHANDS: dict[str, tuple[int, int | None]] = {
    "ip": (fields.ETH_TYPE_IP, None),
    "ipv6": (fields.ETH_TYPE_IPV6, None),
    **{name: (fields.ETH_TYPE_IP, proto) for proto, name in _IP_SHORTHANDS.items()},
    **{name: (fields.ETH_TYPE_IPV6, proto) for proto, name in _IPV6_SHORTHANDS.items()},
    **{name: (eth_type, None) for eth_type, name in _TYPE_SHORTHANDS.items()},
}

# Open vSwitch refuses a match on these fields unless the packet type is pinned.
_NEEDS_ETH_TYPE = {
    "nw_src": (fields.ETH_TYPE_IP,),
    "nw_dst": (fields.ETH_TYPE_IP,),
    "nw_proto": (fields.ETH_TYPE_IP, fields.ETH_TYPE_IPV6),
    "arp_spa": (fields.ETH_TYPE_ARP,),
    "arp_tpa": (fields.ETH_TYPE_ARP,),
    "arp_op": (fields.ETH_TYPE_ARP,),
    "arp_sha": (fields.ETH_TYPE_ARP,),
    "arp_tha": (fields.ETH_TYPE_ARP,),
}
_NEEDS_PROTO = {
    "icmp_type": (fields.IPPROTO_ICMP, fields.IPPROTO_ICMPV6),
    "icmp_code": (fields.IPPROTO_ICMP, fields.IPPROTO_ICMPV6),
    "tp_src": (fields.IPPROTO_TCP, fields.IPPROTO_UDP, 132),
    "tp_dst": (fields.IPPROTO_TCP, fields.IPPROTO_UDP, 132),
}


class MatchField(NamedTuple):
    """One field of a match.  A named tuple, not a dataclass: a desired br-tun holds hundreds of
    thousands of them, and a tuple is smaller and hashes and compares in C."""

    name: str  # a key of fields.BY_NAME
    value: int
    mask: int | None = None  # None: exact match


def _friendly(spec: Field, raw: object) -> tuple[int, int | None]:
    """Accept `value`, `(value, mask)`, text (MAC, IPv4, IPv4/len) and ints."""
    if isinstance(raw, tuple):
        value, mask = raw
        return _friendly_value(spec, value), _friendly_value(spec, mask)
    if isinstance(raw, str) and spec.notation is Notation.IPV4 and "/" in raw:
        network = ipaddress.IPv4Network(raw, strict=False)
        return int(network.network_address), int(network.netmask)
    return _friendly_value(spec, raw), None


def _friendly_value(spec: Field, raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise TypeError(f"{spec.name}: {raw!r} is not a value")
    return spec.parse(raw) if isinstance(raw, str) else raw


# Each match field's (all-ones value, whether it is a port number), for the checks every Match makes.
_LIMITS: dict[str, tuple[int, bool]] = {
    name: (spec.full, spec.notation is Notation.PORT) for name, spec in fields.BY_NAME.items()
    if spec is not fields.VLAN_VID}


@dataclass(frozen=True)
class Match:
    """A normalised OpenFlow match; `raw` keeps fields this project does not model."""

    fields: tuple[MatchField, ...] = ()
    raw: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        normal: dict[str, MatchField] = {}
        for item in self.fields:
            name, value, mask = item
            limits = _LIMITS.get(name)
            if limits is None:
                raise ValueError(f"unknown match field {name!r}")
            full, is_port = limits
            if name in normal:
                raise ValueError(f"match field {name} given twice")
            if mask is not None:
                if not 0 <= mask <= full:
                    raise ValueError(f"mask {mask:#x} does not fit {name}")
                if mask == full:
                    mask = None
                elif mask == 0:
                    continue  # matches everything: Open vSwitch drops the field
            if not 0 <= value <= full:
                raise ValueError(f"{value:#x} does not fit {name} ({full.bit_length()} bits)")
            if mask is not None:
                if is_port:
                    raise ValueError("in_port cannot be masked")
                value &= mask
            normal[name] = item if mask is item.mask and value == item.value else MatchField(name, value, mask)
        if len(normal) > 1:
            order = fields.ORDER
            ordered = tuple(sorted(normal.values(), key=lambda f: order[f.name]))
        else:
            ordered = tuple(normal.values())
        object.__setattr__(self, "fields", ordered)
        self._check_prerequisites(normal)

    @staticmethod
    def _check_prerequisites(present: Mapping[str, MatchField]) -> None:
        eth_type = present["dl_type"].value if "dl_type" in present else None
        proto = present["nw_proto"].value if "nw_proto" in present else None
        for name, allowed in _NEEDS_ETH_TYPE.items():
            if name in present and eth_type not in allowed:
                raise ValueError(f"{name} needs dl_type in {[hex(t) for t in allowed]}")
        for name, allowed in _NEEDS_PROTO.items():
            if name in present and proto not in allowed:
                raise ValueError(f"{name} needs nw_proto in {list(allowed)}")

    @classmethod
    def of(cls, **given: object) -> Match:
        """Build from friendly values: `Match.of(dl_vlan=1, dl_dst="fa:16:3e:00:00:01")`.

        `dl_vlan=V` means "802.1Q VLAN V present" (vlan_tci=0x1000|V/0x1fff),
        which is how Open vSwitch stores OpenFlow 1.3's vlan_vid=V|OFPVID_PRESENT.
        """
        items = []
        for name, raw in given.items():
            if name == "dl_vlan":
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise TypeError(f"dl_vlan: {raw!r} is not a VLAN")
                exact_vlan = fields.VLAN_CFI | fields.VLAN_VID_MASK
                items.append(MatchField("vlan_tci", fields.VLAN_CFI | raw, exact_vlan))
                continue
            spec = fields.BY_NAME.get(name)
            if spec is None:
                raise ValueError(f"unknown match field {name!r}")
            value, mask = _friendly(spec, raw)
            items.append(MatchField(name, value, mask))
        return cls(tuple(items))

    def __hash__(self) -> int:
        """Cached: a Match is immutable, and diffs hash every desired flow's identity."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.fields, self.raw))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, object]:
        """Without the cached hash: text hashes differ between processes."""
        return {name: value for name, value in self.__dict__.items() if name != "_hash"}

    def encode(self) -> bytes:
        """ofp_match (OXM) without its padding: each field as fields.match_form puts it on the
        wire, in os-ken's order (by class and field number)."""
        if self.raw:
            raise ofp.Unsupported(f"raw match {self.raw}")
        eth_type = self.value("dl_type")
        try:
            entries = sorted((fields.match_form(fields.BY_NAME[item.name], item.value, item.mask, eth_type)
                              for item in self.fields), key=lambda entry: entry[0].order)
        except ValueError as error:
            raise ofp.Unsupported(str(error)) from None
        body = b"".join(header.tlv(value, mask) for header, value, mask in entries)
        return ofp.TLV.pack(ofp.OFPMT_OXM, 4 + len(body)) + body

    def get(self, name: str) -> MatchField | None:
        for item in self.fields:
            if item.name == name:
                return item
        return None

    def value(self, name: str) -> int | None:
        item = self.get(name)
        return None if item is None else item.value

    @property
    def dl_vlan(self) -> int | None:
        """The VLAN an exact `dl_vlan=V` match selects, else None."""
        tci = self.get("vlan_tci")
        if tci is None or tci.mask != fields.VLAN_CFI | fields.VLAN_VID_MASK:
            return None
        return tci.value & fields.VLAN_VID_MASK if tci.value & fields.VLAN_CFI else None

    def render(self) -> list[str]:
        """The match tokens in lib/match.c order (priority excluded)."""
        tokens: list[str] = []
        consumed: set[str] = set()
        eth_type = self.get("dl_type")
        proto = self.get("nw_proto")
        if eth_type is not None and eth_type.mask is None:
            shorthand = None
            if eth_type.value in (fields.ETH_TYPE_IP, fields.ETH_TYPE_IPV6):
                table = _IP_SHORTHANDS if eth_type.value == fields.ETH_TYPE_IP else _IPV6_SHORTHANDS
                base = "ip" if eth_type.value == fields.ETH_TYPE_IP else "ipv6"
                if proto is not None and proto.mask is None and proto.value in table:
                    shorthand = table[proto.value]
                    consumed.add("nw_proto")
                else:
                    shorthand = base
            else:
                shorthand = _TYPE_SHORTHANDS.get(eth_type.value)
            if shorthand is not None:
                tokens.append(shorthand)
                consumed.add("dl_type")
        for item in self.fields:
            if item.name == "vlan_tci":
                tokens.extend(_render_tci(item))
            elif item.name not in consumed:
                tokens.append(_render_field(item))
        tokens.extend(self.raw)
        return tokens


def _render_field(item: MatchField) -> str:
    spec = fields.BY_NAME[item.name]
    if item.mask is None:
        return f"{item.name}={spec.format(item.value)}"
    if spec.notation is Notation.MAC:
        return f"{item.name}={fields.mac_text(item.value)}/{fields.mac_text(item.mask)}"
    if spec.notation is Notation.IPV4:
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{fields.ipv4_text(item.mask)}").prefixlen
            return f"{item.name}={fields.ipv4_text(item.value)}/{prefix}"
        except ValueError:
            return f"{item.name}={fields.ipv4_text(item.value)}/{fields.ipv4_text(item.mask)}"
    return f"{item.name}={fields.c_hex(item.value)}/{fields.c_hex(item.mask)}"


def _render_tci(item: MatchField) -> list[str]:
    """lib/match.c: dl_vlan/dl_vlan_pcp when the CFI bit is matched set, else vlan_tci."""
    mask = fields.BY_NAME["vlan_tci"].full if item.mask is None else item.mask
    vid_mask = mask & fields.VLAN_VID_MASK
    pcp_mask = mask & 0xE000
    if (mask & fields.VLAN_CFI and item.value & fields.VLAN_CFI
            and vid_mask in (0, fields.VLAN_VID_MASK) and pcp_mask in (0, 0xE000)
            and (vid_mask or pcp_mask)):
        tokens = []
        if vid_mask:
            tokens.append(f"dl_vlan={item.value & fields.VLAN_VID_MASK}")
        if pcp_mask:
            tokens.append(f"dl_vlan_pcp={item.value >> 13}")
        return tokens
    if item.mask is None:
        return [f"vlan_tci={item.value:#06x}"]
    return [f"vlan_tci={item.value:#06x}/{mask:#06x}"]


FlowKey = tuple[int, int, Match]
# What identifies a flow-stats entry: (table, priority, cookie, idle_timeout, hard_timeout,
# match bytes, instruction bytes).
StatsKey = tuple[int, int, int, int, int, bytes, bytes]


class Encoded(NamedTuple):
    """A flow's bytes, kept with the flow (`Flow.encoded`): the match and instructions as os-ken
    sends them, and the key of the flow-stats entry Open vSwitch reports for it (the same bytes,
    but Nicira's headers in Nicira actions).  A named tuple: one per desired flow, kept."""

    match: bytes  # ofp_match, without its padding (the key shares it)
    instructions: bytes
    key: StatsKey


def instructions(flow_actions: tuple[Action, ...], goto: int | None, reported: bool = False) -> bytes:
    """Apply-actions, then goto-table; a drop flow has no instruction at all (as the switch reports it)."""
    return _instructions(actions.encode_all(flow_actions, reported) if flow_actions else None, goto)


def instructions_both(flow_actions: tuple[Action, ...], goto: int | None) -> tuple[bytes, bytes]:
    """`instructions` as sent and as reported, at once; one bytes object when they are equal
    (as for most flows: saves encoding twice, and the memory of a second copy)."""
    if not flow_actions:
        sent = _instructions(None, goto)
        return sent, sent
    pairs = [actions.encoded_both(action) for action in flow_actions]
    sent = _instructions(b"".join([pair[0] for pair in pairs]), goto)
    if all(pair[0] is pair[1] for pair in pairs):
        return sent, sent
    return sent, _instructions(b"".join([pair[1] for pair in pairs]), goto)


def _instructions(body: bytes | None, goto: int | None) -> bytes:
    head = b"" if body is None else struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(body)) + body
    if goto is None:
        return head
    return head + struct.pack("!HHB3x", ofp.OFPIT_GOTO_TABLE, 8, goto)


@dataclass(frozen=True)
class Flow:
    """One flow entry: what a flow-mod installs and a flow-stats entry reports."""

    table: int
    priority: int
    match: Match = field(default_factory=Match)
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.table <= 254:
            raise ValueError(f"table {self.table} is outside 0..254")
        if not 0 <= self.priority <= 0xFFFF:
            raise ValueError(f"priority {self.priority} is outside 0..65535")
        if self.goto is not None and self.goto <= self.table:
            raise ValueError(f"goto_table:{self.goto} from table {self.table} must go forward")
        for name in ("idle_timeout", "hard_timeout"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} is outside 0..65535")

    @cached_property
    def encoded(self) -> Encoded:
        """The flow's OpenFlow bytes, computed once: a Flow never changes.  Raises
        ofp.Unsupported for a flow with parts brtun does not model (a foreign flow)."""
        match = self.match.encode()
        sent, reported = instructions_both(self.actions, self.goto)
        key = (self.table, self.priority, self.cookie, self.idle_timeout, self.hard_timeout, match, reported)
        return Encoded(match, sent, key)

    @cached_property
    def key(self) -> FlowKey:
        """OpenFlow's identity of a flow entry: a second add with this key replaces it (cached:
        every diff looks up every desired flow by it)."""
        return (self.table, self.priority, self.match)

    def same_effect(self, other: Flow) -> bool:
        """Equal but for the cookie: what a flow-mod would not need to change."""
        return (self.actions, self.goto, self.idle_timeout, self.hard_timeout) == (
            other.actions, other.goto, other.idle_timeout, other.hard_timeout)

    def render_actions(self) -> str:
        parts = [action.render() for action in self.actions]
        if self.goto is not None:
            parts.append(f"goto_table:{self.goto}")
        return ",".join(parts) if parts else "drop"

    def render(self) -> str:
        """The line `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints."""
        head = " "
        if self.cookie:
            head += f"cookie={self.cookie:#x}, "
        if self.table:
            head += f"table={self.table}, "
        if self.idle_timeout:
            head += f"idle_timeout={self.idle_timeout}, "
        if self.hard_timeout:
            head += f"hard_timeout={self.hard_timeout}, "
        tokens = [] if self.priority == OFP_DEFAULT_PRIORITY else [f"priority={self.priority}"]
        tokens += self.match.render()
        line = head + ",".join(tokens)
        if not line.endswith(" "):
            line += " "
        return line + "actions=" + self.render_actions()

    def sort_key(self) -> tuple[int, int, str]:
        """Table, then descending priority, then text: the order `brtun render` prints."""
        return (self.table, -self.priority, self.render())


def sorted_flows(flows: Iterable[Flow]) -> list[Flow]:
    return sorted(flows, key=Flow.sort_key)


def render_flows(flows: Iterable[Flow]) -> str:
    """Lines as the switch prints them, in `brtun render` order, newline-terminated (each flow
    rendered once: the text is both the last sort key and the line)."""
    lines = sorted([(flow.table, -flow.priority, flow.render()) for flow in flows])
    return "\n".join([line for _, _, line in lines]) + "\n" if lines else ""
