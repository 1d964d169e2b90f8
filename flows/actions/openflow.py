"""The OpenFlow 1.3 actions br-tun uses: output, push/pop VLAN, set_field."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from flows import ofp
from flows.actions.base import Action, Execution, Packet, RawAction, WireKey, number
from flows.fields import (
    BY_HEADER,
    BY_SET_NAME,
    ETH_TYPE_8021Q,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    PORT_BY_NAME,
    RESERVED_PORTS,
    VLAN_CFI,
)
from flows.ofp import Unsupported


@dataclass(frozen=True)
class Output(Action):
    TEXT: ClassVar[tuple[str, ...]] = ("output", "CONTROLLER")
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_OUTPUT, None)
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("!HHIH6x")

    port: int
    max_len: int = 0

    def render(self) -> str:
        if self.port == OFPP_CONTROLLER:
            return f"CONTROLLER:{self.max_len}"
        if self.port in RESERVED_PORTS:
            return RESERVED_PORTS[self.port]
        return f"output:{self.port}"

    def encode(self, reported: bool = False) -> bytes:
        return self._LAYOUT.pack(ofp.OFPAT_OUTPUT, 16, self.port, self.max_len)

    def execute(self, packet: Packet, run: Execution) -> None:
        if self.port == OFPP_IN_PORT:
            run.emit(run.in_port)
        elif self.port != run.in_port:  # OpenFlow: back out of the input port only by IN_PORT
            run.emit(self.port)

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        if key == "CONTROLLER":
            max_len = value.get("max_len", 65535) if isinstance(value, dict) else 65535
            return cls(OFPP_CONTROLLER, int(max_len))
        if isinstance(value, dict) and "port" in value:
            port = value["port"]
            return cls(port if isinstance(port, int) else PORT_BY_NAME[str(port).upper()])
        return None

    @classmethod
    def decode(cls, data: bytes) -> Action:
        _type, _length, port, max_len = cls._LAYOUT.unpack_from(data)
        return cls(port, max_len if port == OFPP_CONTROLLER else 0)


@dataclass(frozen=True)
class PushVlan(Action):
    TEXT: ClassVar[tuple[str, ...]] = ("push_vlan",)
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_PUSH_VLAN, None)

    ethertype: int = ETH_TYPE_8021Q

    def render(self) -> str:
        return f"push_vlan:{self.ethertype:#x}"

    def encode(self, reported: bool = False) -> bytes:
        return struct.pack("!HHH2x", ofp.OFPAT_PUSH_VLAN, 8, self.ethertype)

    def execute(self, packet: Packet, run: Execution) -> None:
        packet["vlan_tci"] = VLAN_CFI

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        return cls(int(value))

    @classmethod
    def decode(cls, data: bytes) -> Action:
        return cls(struct.unpack_from("!H", data, 4)[0])


@dataclass(frozen=True)
class PopVlan(Action):
    TEXT: ClassVar[tuple[str, ...]] = ("pop_vlan", "strip_vlan")
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_POP_VLAN, None)

    def render(self) -> str:
        return "pop_vlan"

    def encode(self, reported: bool = False) -> bytes:
        return struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)

    def execute(self, packet: Packet, run: Execution) -> None:
        packet["vlan_tci"] = 0

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        return cls()

    @classmethod
    def decode(cls, data: bytes) -> Action:
        return cls()


@dataclass(frozen=True)
class SetField(Action):
    """set_field: the field is named by Open vSwitch's own field name (tun_id, vlan_vid, eth_src...)."""

    TEXT: ClassVar[tuple[str, ...]] = ("set_field",)
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_SET_FIELD, None)

    field: str  # a key of fields.BY_SET_NAME
    value: int

    def __post_init__(self) -> None:
        spec = BY_SET_NAME.get(self.field)
        if spec is None:
            raise ValueError(f"set_field of unknown field {self.field!r}")
        if not 0 <= self.value <= spec.full:
            raise ValueError(f"{self.value:#x} does not fit {self.field}")

    def render(self) -> str:
        return f"set_field:{BY_SET_NAME[self.field].format(self.value)}->{self.field}"

    def encode(self, reported: bool = False) -> bytes:
        header = BY_SET_NAME[self.field].oxm
        if header is None:
            raise Unsupported(f"set_field of {self.field} has no OpenFlow 1.3 form")
        tlv = header.tlv(self.value)
        return ofp.pad8(ofp.TLV.pack(ofp.OFPAT_SET_FIELD, ofp.padded_length(4 + len(tlv))) + tlv)

    def execute(self, packet: Packet, run: Execution) -> None:
        BY_SET_NAME[self.field].store(packet, self.value)

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        name = value["dst"]["field"]
        if name not in BY_SET_NAME:
            return None
        return cls(name, number(value["value"][name]))

    @classmethod
    def decode(cls, data: bytes) -> Action:
        (header,) = struct.unpack_from("!I", data, 4)
        spec = BY_HEADER.get(header)  # a masked header (has-mask bit set) is not found: raw
        if spec is None or spec.set_name is None:
            return RawAction(f"set_field:{data[8:].hex()}->oxm({header:#x})")
        width = header & 0xFF
        return cls(spec.set_name, int.from_bytes(data[8:8 + width], "big"))


