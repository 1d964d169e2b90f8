"""The match and action fields br-tun uses, declared once.

Each field knows its three spellings, because three parties name it
differently: Open vSwitch's match text (`dl_dst`), os-ken's OXM keyword
(`eth_dst`), and the NXM name Open vSwitch prints inside move/load/learn
(`NXM_OF_ETH_DST`).  The declaration order is the order in which
`ovs-ofctl` prints match fields (lib/match.c `match_format`), so rendering
a match is sorting by this order.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """How a field's value is written in Open vSwitch's text."""

    DEC = "dec"  # decimal integer
    HEX = "hex"  # C's %#x: 0 prints as "0", others as 0x..
    MAC = "mac"
    IPV4 = "ipv4"
    PORT = "port"  # OpenFlow port number, with reserved names
    TCI = "tci"  # 802.1Q TCI (dl_vlan / vlan_tci)


@dataclass(frozen=True)
class Field:
    """One packet field as the three vocabularies spell it."""

    name: str  # Open vSwitch match name
    bits: int
    kind: Kind
    oxm: str | None  # os-ken OFPMatch / set_field keyword (None: not an OXM field)
    nxm: str | None  # name printed in move/load/learn subfields
    mf_name: str | None = None  # Open vSwitch's own name, printed by set_field

    @property
    def osken(self) -> str | None:
        """os-ken's name for the field in move/load/learn, where NXM-only
        fields (vlan_tci) are allowed."""
        return self.oxm or (self.name if self.nxm else None)


# Print order of lib/match.c (dl_type / nw_proto are consumed by the protocol
# shorthand when it applies; see flows.flow).  arp_spa/arp_tpa share nw_src/
# nw_dst's slot and icmp_type/icmp_code share tp_src/tp_dst's.
FIELDS: tuple[Field, ...] = (
    Field("tun_id", 64, Kind.HEX, "tunnel_id", "NXM_NX_TUN_ID", "tun_id"),
    Field("in_port", 32, Kind.PORT, "in_port", "OXM_OF_IN_PORT", "in_port"),
    Field("vlan_tci", 16, Kind.TCI, None, "NXM_OF_VLAN_TCI", "vlan_tci"),
    Field("dl_src", 48, Kind.MAC, "eth_src", "NXM_OF_ETH_SRC", "eth_src"),
    Field("dl_dst", 48, Kind.MAC, "eth_dst", "NXM_OF_ETH_DST", "eth_dst"),
    Field("dl_type", 16, Kind.HEX, "eth_type", "NXM_OF_ETH_TYPE", "eth_type"),
    Field("nw_src", 32, Kind.IPV4, "ipv4_src", "NXM_OF_IP_SRC", "ip_src"),
    Field("nw_dst", 32, Kind.IPV4, "ipv4_dst", "NXM_OF_IP_DST", "ip_dst"),
    Field("arp_spa", 32, Kind.IPV4, "arp_spa", "NXM_OF_ARP_SPA", "arp_spa"),
    Field("arp_tpa", 32, Kind.IPV4, "arp_tpa", "NXM_OF_ARP_TPA", "arp_tpa"),
    Field("nw_proto", 8, Kind.DEC, "ip_proto", "NXM_OF_IP_PROTO", "nw_proto"),
    Field("arp_op", 16, Kind.DEC, "arp_op", "NXM_OF_ARP_OP", "arp_op"),
    Field("arp_sha", 48, Kind.MAC, "arp_sha", "NXM_NX_ARP_SHA", "arp_sha"),
    Field("arp_tha", 48, Kind.MAC, "arp_tha", "NXM_NX_ARP_THA", "arp_tha"),
    Field("tp_src", 16, Kind.DEC, None, None),
    Field("tp_dst", 16, Kind.DEC, None, None),
    Field("icmp_type", 8, Kind.DEC, None, None),
    Field("icmp_code", 8, Kind.DEC, None, None),
)

# Fields that exist only as action targets (set_field), not as match fields.
VLAN_VID = Field("vlan_vid", 13, Kind.DEC, "vlan_vid", None, "vlan_vid")

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
BY_NAME[VLAN_VID.name] = VLAN_VID
BY_NXM: dict[str, Field] = {f.nxm: f for f in FIELDS if f.nxm}
BY_MF_NAME: dict[str, Field] = {f.mf_name: f for f in (*FIELDS, VLAN_VID) if f.mf_name}
ORDER: dict[str, int] = {f.name: i for i, f in enumerate(FIELDS)}

# os-ken names a field with or without an `_nxm` suffix depending on the
# header the switch used; both mean the same Open vSwitch field.
BY_OXM: dict[str, Field] = {}
for _field in (*FIELDS, VLAN_VID):
    if _field.oxm:
        BY_OXM[_field.oxm] = _field
        BY_OXM[_field.oxm + "_nxm"] = _field
BY_OXM["vlan_tci"] = BY_NAME["vlan_tci"]
BY_OXM["in_port_nxm"] = BY_NAME["in_port"]

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
    return ":".join(f"{(value >> shift) & 0xFF:02x}" for shift in range(40, -8, -8))


def mac_value(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"{text!r} is not a MAC address")
    return int("".join(p.zfill(2) for p in parts), 16)


def ipv4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def ipv4_value(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def full_mask(field: Field) -> int:
    return (1 << field.bits) - 1


def format_value(field: Field, value: int) -> str:
    """The value alone, as Open vSwitch prints it in matches and set_field."""
    if field.kind is Kind.MAC:
        return mac_text(value)
    if field.kind is Kind.IPV4:
        return ipv4_text(value)
    if field.kind is Kind.HEX:
        return c_hex(value)
    if field.kind is Kind.PORT:
        return RESERVED_PORTS.get(value, str(value))
    return str(value)


def parse_value(field: Field, text: str) -> int:
    """Inverse of format_value, for text written by hand or by the switch."""
    if field.kind is Kind.MAC:
        return mac_value(text)
    if field.kind is Kind.IPV4:
        return ipv4_value(text)
    if field.kind is Kind.PORT and text.upper() in PORT_BY_NAME:
        return PORT_BY_NAME[text.upper()]
    return int(text, 0)


def format_port(port: int) -> str:
    return RESERVED_PORTS.get(port, str(port))
