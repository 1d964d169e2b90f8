"""OpenFlow 1.3 and its Nicira and ONF extensions: the numbers and layouts brtun speaks.

Protocol facts (from the OpenFlow 1.3.5 specification, Open vSwitch's
nicira-ext.h and the ONF bundle extension), declared here once so that
flows/ needs no OpenFlow library: `tests/unit/test_ofp.py` checks every
number against os-ken's tables, and byte-identity tests check whole
messages against os-ken's serialiser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OFP_VERSION = 4  # OpenFlow 1.3

# Message types (ofp_type)
OFPT_EXPERIMENTER = 4
OFPT_FLOW_MOD = 14

# Flow-mod commands
OFPFC_ADD = 0
OFPFC_MODIFY_STRICT = 2
OFPFC_DELETE_STRICT = 4
OFP_NO_BUFFER = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF

# Instruction types
OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4

# Action types
OFPAT_OUTPUT = 0
OFPAT_PUSH_VLAN = 17
OFPAT_POP_VLAN = 18
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF

# Nicira extensions (vendor ID and action subtypes)
NX_VENDOR_ID = 0x00002320
NXAST_REG_MOVE = 6
NXAST_REG_LOAD = 7
NXAST_LEARN = 16

# ONF bundle extension, in OpenFlow 1.3 as an experimenter message
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_ADD_MESSAGE = 2301

# Match types and OXM classes
OFPMT_OXM = 1
OXM_OF_BASIC = 0x8000  # OpenFlow's own fields
NXM_OF = 0x0000  # Nicira's copies of OpenFlow 1.0 fields
NXM_NX = 0x0001  # Nicira's own fields

HEADER = struct.Struct("!BBHI")  # ofp_header: version, type, length, xid
TLV = struct.Struct("!HH")  # type, length: instructions, actions, ofp_match
EXPERIMENTER = struct.Struct("!HHIH")  # an experimenter action: type, length, vendor, subtype


class Unsupported(ValueError):
    """A part of a flow brtun does not encode or decode (a foreign flow's unknown action, say)."""


@dataclass(frozen=True)
class Header:
    """An OXM/NXM field header: how a field is named on the wire, in matches and in Nicira actions.

    `name` is the field's name in the OpenFlow specification (OXM) or in
    Open vSwitch's nicira-ext.h (NXM); os-ken uses the same keywords.
    """

    name: str
    oxm_class: int
    field: int
    width: int  # value bytes

    @property
    def number(self) -> int:
        """The 32-bit header without the has-mask bit."""
        return (self.oxm_class << 16) | (self.field << 9) | self.width

    @property
    def order(self) -> int:
        """os-ken writes a match's fields sorted by class and field: so does brtun."""
        return self.number >> 9

    def tlv(self, value: int, mask: int | None = None) -> bytes:
        if mask is None:
            return struct.pack("!I", self.number) + value.to_bytes(self.width, "big")
        masked = (self.number | 0x100) + self.width  # has-mask bit, doubled length
        return struct.pack("!I", masked) + value.to_bytes(self.width, "big") + mask.to_bytes(self.width, "big")


def unmasked(header: int) -> int:
    """A header as read from the wire -> `Header.number` (masked headers double their length)."""
    if header & 0x100:
        return (header & ~0x1FF) | ((header & 0xFF) >> 1)
    return header


def pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def padded_length(length: int) -> int:
    return (length + 7) // 8 * 8
