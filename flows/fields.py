"""The match and action fields br-tun uses, each declared once with every name it goes by.

Four parties name a field differently: Open vSwitch's match text
(`dl_dst`), its set_field text (`eth_dst`), the OXM/NXM headers on the wire
(OpenFlow's `eth_dst`, Nicira's `NXM_OF_ETH_DST`, the name Open vSwitch
prints inside move/load/learn).  The text, the wire codec and the
simulator all read these declarations; none keeps a table of its own.
The declaration order is the order in which `ovs-ofctl` prints match fields
(lib/match.c `match_format`), so rendering a match is sorting by it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from flows.ofp import NXM_NX, NXM_OF, OXM_OF_BASIC, Header


class Notation(Enum):
    """How a field's value is written in Open vSwitch's text."""

    DEC = "dec"  # decimal integer
    HEX = "hex"  # C's %#x: 0 prints as "0", others as 0x..
    MAC = "mac"
    IPV4 = "ipv4"
    PORT = "port"  # OpenFlow port number, with reserved names
    TCI = "tci"  # 802.1Q TCI (dl_vlan / vlan_tci)


def _oxm(name: str, field: int, width: int) -> Header:
    return Header(name, OXM_OF_BASIC, field, width)


def _nxm(name: str, oxm_class: int, field: int, width: int) -> Header:
    return Header(name, oxm_class, field, width)


@dataclass(frozen=True)
class Field:
    """One packet field in every vocabulary brtun reads and writes."""

    name: str  # Open vSwitch's match name, and the simulator's packet key
    bits: int
    notation: Notation
    oxm: Header | None = None  # OpenFlow 1.3's header (for ICMP: ICMPv4's)
    nxm: Header | None = None  # Nicira's header of the same width, which Open vSwitch reports in actions
    set_name: str | None = None  # the name set_field prints (Open vSwitch's mf name)
    oxm_ipv6: Header | None = None  # ICMPv6's header for icmp_type/icmp_code in an IPv6 match
    view_of: str | None = None  # the field whose low `bits` this one is (vlan_vid of vlan_tci)

    @property
    def full(self) -> int:
        return (1 << self.bits) - 1

    def format(self, value: int) -> str:
        """The value alone, as Open vSwitch prints it in matches and set_field."""
        return self.formatter(value)

    @property
    def formatter(self) -> Callable[[int], str]:
        """`format` as one function of the value (its notation's), for text made in bulk."""
        return _FORMATTERS.get(self.notation, str)

    def store(self, packet: dict[str, int], value: int) -> None:
        """Set this field of a simulated packet (a view writes its bits of the field it views)."""
        if self.view_of is None:
            packet[self.name] = value
        else:
            packet[self.view_of] = (packet.get(self.view_of, 0) & ~self.full) | (value & self.full)

    def parse(self, text: str) -> int:
        """Inverse of format, for text written by hand or by the switch."""
        if self.notation is Notation.MAC:
            return mac_value(text)
        if self.notation is Notation.IPV4:
            return ipv4_value(text)
        if self.notation is Notation.PORT and text.upper() in PORT_BY_NAME:
            return PORT_BY_NAME[text.upper()]
        return int(text, 0)

    @property
    def subfield_name(self) -> str | None:
        """What Open vSwitch prints in move/load/learn: the NXM name, or OXM_OF_* where Nicira has
        none of the same width (in_port)."""
        if self.nxm is not None:
            return self.nxm.name
        if self.oxm is not None and self.oxm_ipv6 is None and self.view_of is None:
            return f"OXM_OF_{self.oxm.name.upper()}"
        return None

    def action_header(self, reported: bool = False) -> Header:
        """The header naming this field in a Nicira action: OXM where OpenFlow has the field (as
        os-ken writes it), Nicira's where Open vSwitch reports one (`reported`) or OpenFlow has none."""
        if self.nxm is not None and (reported or self.oxm is None):
            return self.nxm
        if self.oxm is None:
            raise ValueError(f"{self.name} has no wire header")
        return self.oxm


# Print order of lib/match.c (dl_type / nw_proto are consumed by the protocol
# shorthand when it applies; see flows.flow).  arp_spa/arp_tpa share nw_src/
# nw_dst's slot and icmp_type/icmp_code share tp_src/tp_dst's.
FIELDS: tuple[Field, ...] = (
    Field("tun_id", 64, Notation.HEX, _oxm("tunnel_id", 38, 8), _nxm("NXM_NX_TUN_ID", NXM_NX, 16, 8), "tun_id"),
    Field("in_port", 32, Notation.PORT, _oxm("in_port", 0, 4), None, "in_port"),
    Field("vlan_tci", 16, Notation.TCI, None, _nxm("NXM_OF_VLAN_TCI", NXM_OF, 4, 2), "vlan_tci"),
    Field("dl_src", 48, Notation.MAC, _oxm("eth_src", 4, 6), _nxm("NXM_OF_ETH_SRC", NXM_OF, 2, 6), "eth_src"),
    Field("dl_dst", 48, Notation.MAC, _oxm("eth_dst", 3, 6), _nxm("NXM_OF_ETH_DST", NXM_OF, 1, 6), "eth_dst"),
    Field("dl_type", 16, Notation.HEX, _oxm("eth_type", 5, 2), _nxm("NXM_OF_ETH_TYPE", NXM_OF, 3, 2), "eth_type"),
    Field("nw_src", 32, Notation.IPV4, _oxm("ipv4_src", 11, 4), _nxm("NXM_OF_IP_SRC", NXM_OF, 7, 4), "ip_src"),
    Field("nw_dst", 32, Notation.IPV4, _oxm("ipv4_dst", 12, 4), _nxm("NXM_OF_IP_DST", NXM_OF, 8, 4), "ip_dst"),
    Field("arp_spa", 32, Notation.IPV4, _oxm("arp_spa", 22, 4), _nxm("NXM_OF_ARP_SPA", NXM_OF, 16, 4), "arp_spa"),
    Field("arp_tpa", 32, Notation.IPV4, _oxm("arp_tpa", 23, 4), _nxm("NXM_OF_ARP_TPA", NXM_OF, 17, 4), "arp_tpa"),
    Field("nw_proto", 8, Notation.DEC, _oxm("ip_proto", 10, 1), _nxm("NXM_OF_IP_PROTO", NXM_OF, 6, 1), "nw_proto"),
    Field("arp_op", 16, Notation.DEC, _oxm("arp_op", 21, 2), _nxm("NXM_OF_ARP_OP", NXM_OF, 15, 2), "arp_op"),
    Field("arp_sha", 48, Notation.MAC, _oxm("arp_sha", 24, 6), _nxm("NXM_NX_ARP_SHA", NXM_NX, 17, 6), "arp_sha"),
    Field("arp_tha", 48, Notation.MAC, _oxm("arp_tha", 25, 6), _nxm("NXM_NX_ARP_THA", NXM_NX, 18, 6), "arp_tha"),
    Field("tp_src", 16, Notation.DEC),
    Field("tp_dst", 16, Notation.DEC),
    Field("icmp_type", 8, Notation.DEC, _oxm("icmpv4_type", 19, 1), oxm_ipv6=_oxm("icmpv6_type", 29, 1)),
    Field("icmp_code", 8, Notation.DEC, _oxm("icmpv4_code", 20, 1), oxm_ipv6=_oxm("icmpv6_code", 30, 1)),
)

# A field that exists only as an action target: OpenFlow 1.3's VLAN ID (with
# OFPVID_PRESENT, the CFI bit) is the low 13 bits of the 802.1Q TCI.  A match on
# vlan_tci whose mask stays within them goes on the wire as this field.
VLAN_VID = Field("vlan_vid", 13, Notation.DEC, _oxm("vlan_vid", 6, 2), None, "vlan_vid", view_of="vlan_tci")

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
BY_NAME[VLAN_VID.name] = VLAN_VID
BY_NXM: dict[str, Field] = {f.subfield_name: f for f in FIELDS if f.subfield_name}
BY_SET_NAME: dict[str, Field] = {f.set_name: f for f in (*FIELDS, VLAN_VID) if f.set_name}
# Every name Open vSwitch accepts for a match field (it prints tunnel_id as tun_id, eth_src as dl_src...).
BY_SPELLING: dict[str, Field] = {spelling: f for f in FIELDS for spelling in
                                 (f.name, f.set_name, *(h.name for h in (f.oxm, f.oxm_ipv6) if h is not None))
                                 if spelling is not None}
ORDER: dict[str, int] = {f.name: i for i, f in enumerate(FIELDS)}
BY_HEADER: dict[int, Field] = {header.number: f for f in (*FIELDS, VLAN_VID)
                               for header in (f.oxm, f.nxm, f.oxm_ipv6) if header is not None}
NARROW: dict[str, Field] = {VLAN_VID.view_of: VLAN_VID} if VLAN_VID.view_of else {}


def match_form(field: Field, value: int, mask: int | None, eth_type: int | None) -> tuple[Header, int, int | None]:
    """How a match on `field` goes on the wire: its header, value and mask, as os-ken writes them.

    vlan_tci travels as OpenFlow 1.3's vlan_vid when the mask leaves the
    priority bits alone, else as Nicira's vlan_tci; ICMP's type and code
    take ICMPv6's headers in an IPv6 match."""
    narrow = NARROW.get(field.name)
    if narrow is not None and narrow.oxm is not None and (field.full if mask is None else mask) & ~narrow.full == 0:
        narrow_mask = (field.full if mask is None else mask) & narrow.full
        return narrow.oxm, value & narrow.full, None if narrow_mask == narrow.full else narrow_mask
    if field.oxm_ipv6 is not None and eth_type == ETH_TYPE_IPV6:
        return field.oxm_ipv6, value, mask
    header = field.oxm or field.nxm
    if header is None:
        raise ValueError(f"{field.name} has no OpenFlow 1.3 match field")
    return header, value, mask


def from_header(number: int, value: int, mask: int | None) -> tuple[Field, int, int | None]:
    """A match TLV -> (the match field, value, mask): inverse of match_form."""
    field = BY_HEADER[number]
    if field.view_of is not None:
        return BY_NAME[field.view_of], value, field.full if mask is None else mask
    return field, value, mask


@dataclass(frozen=True)
class Subfield:
    """A bit range of a field, as Open vSwitch prints it in actions (`NXM_OF_VLAN_TCI[0..11]`)."""

    field: str  # Field.subfield_name
    start: int = 0
    n_bits: int | None = None  # None: the whole field

    def __post_init__(self) -> None:
        known = BY_NXM.get(self.field)
        if known is not None:
            if self.n_bits is None or (self.start == 0 and self.n_bits == known.bits):
                object.__setattr__(self, "n_bits", known.bits)
            if self.start < 0 or self.start + self.n_bits > known.bits:
                raise ValueError(f"{self.field}[{self.start}..] is outside its {known.bits} bits")
        elif self.n_bits is None:
            raise ValueError(f"the width of {self.field} is unknown; give n_bits")

    @property
    def spec(self) -> Field:
        known = BY_NXM.get(self.field)
        if known is None:
            raise ValueError(f"field {self.field} is not known to brtun")
        return known

    @property
    def bits(self) -> int:
        assert self.n_bits is not None
        return self.n_bits

    @property
    def whole(self) -> bool:
        known = BY_NXM.get(self.field)
        return known is not None and self.start == 0 and self.n_bits == known.bits

    def render(self) -> str:
        if self.whole:
            return f"{self.field}[]"
        if self.bits == 1:
            return f"{self.field}[{self.start}]"
        return f"{self.field}[{self.start}..{self.start + self.bits - 1}]"

    @classmethod
    def parse(cls, text: str) -> Subfield:
        """`NAME[]`, `NAME[i]` or `NAME[i..j]`."""
        name, bracket, rest = text.partition("[")
        if not bracket or not rest.endswith("]"):
            raise ValueError(f"{text!r} is not a subfield")
        bits = rest[:-1]
        if not bits:
            return cls(name)
        low, dots, high = bits.partition("..")
        start = int(low)
        end = int(high) if dots else start
        return cls(name, start, end - start + 1)

    @classmethod
    def of(cls, field: Field, start: int = 0, n_bits: int | None = None) -> Subfield:
        assert field.subfield_name is not None, f"{field.name} cannot be named in an action"
        return cls(field.subfield_name, start, n_bits)

    @classmethod
    def at(cls, number: int, start: int, n_bits: int) -> Subfield:
        """The subfield a Nicira action names by header number."""
        field = BY_HEADER.get(number)
        if field is None or field.subfield_name is None:
            raise ValueError(f"field header {number:#x} is not known to brtun")
        return cls(field.subfield_name, start, n_bits)

    def header(self, reported: bool = False) -> Header:
        return self.spec.action_header(reported)

    def read(self, packet: dict[str, int]) -> int:
        """These bits of a simulated packet."""
        return (packet.get(self.spec.name, 0) >> self.start) & ((1 << self.bits) - 1)

    def write(self, packet: dict[str, int], value: int) -> None:
        mask = (1 << self.bits) - 1
        name = self.spec.name
        packet[name] = (packet.get(name, 0) & ~(mask << self.start)) | ((value & mask) << self.start)


ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_8021Q = 0x8100
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
ARP_REQUEST = 1
ARP_REPLY = 2
ICMPV6_ROUTER_ADVERT = 134
ICMPV6_NEIGHBOR_ADVERT = 136

# 802.1Q TCI: the CFI bit doubles as "a VLAN header is present" in both
# Open vSwitch (vlan_tci) and OpenFlow 1.3 (OFPVID_PRESENT in vlan_vid).
VLAN_CFI = 0x1000
VLAN_VID_MASK = 0x0FFF
OFPVID_PRESENT = 0x1000

# Reserved OpenFlow 1.3 port numbers, as ovs-ofctl names them.
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_TABLE = 0xFFFFFFF9
OFPP_NORMAL = 0xFFFFFFFA
OFPP_FLOOD = 0xFFFFFFFB
OFPP_ALL = 0xFFFFFFFC
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPP_ANY = 0xFFFFFFFF
RESERVED_PORTS: dict[int, str] = {
    OFPP_IN_PORT: "IN_PORT",
    OFPP_TABLE: "TABLE",
    OFPP_NORMAL: "NORMAL",
    OFPP_FLOOD: "FLOOD",
    OFPP_ALL: "ALL",
    OFPP_CONTROLLER: "CONTROLLER",
    OFPP_LOCAL: "LOCAL",
    OFPP_ANY: "ANY",
}
PORT_BY_NAME: dict[str, int] = {name: number for number, name in RESERVED_PORTS.items()}


def c_hex(value: int) -> str:
    """Format like C's %#x, which Open vSwitch uses: zero has no 0x prefix."""
    return "0" if value == 0 else hex(value)


def mac_text(value: int) -> str:
    return (value & 0xFFFFFFFFFFFF).to_bytes(6, "big").hex(":")


_MAC = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def mac_value(text: str) -> int:
    """Six hex bytes, colon-separated (one digit allowed: Open vSwitch writes 0:1:2:..)."""
    if _MAC.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a MAC address")
    if len(text) == 17:
        return int(text.replace(":", ""), 16)
    return int("".join(part.zfill(2) for part in text.split(":")), 16)


def ipv4_text(value: int) -> str:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} is not an IPv4 address")
    return f"{value >> 24}.{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def ipv4_quad(text: str) -> int | None:
    """A dotted quad as the ipaddress module spells it (no leading zeros), as its number; None for
    any other text (ipaddress then decides), without ipaddress's cost: a config can hold a hundred
    thousand addresses."""
    if _IPV4.fullmatch(text) is None:
        return None
    a, b, c, d = text.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def ipv4_value(text: str) -> int:
    quad = ipv4_quad(text)
    return int(ipaddress.IPv4Address(text)) if quad is None else quad  # ipaddress raises its own clear error


def format_port(port: int) -> str:
    return RESERVED_PORTS.get(port, str(port))


_FORMATTERS: dict[Notation, Callable[[int], str]] = {
    Notation.MAC: mac_text, Notation.IPV4: ipv4_text, Notation.HEX: c_hex, Notation.PORT: format_port}
