"""Nicira's register actions: move and load (the learn action writes loads into learned flows)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from flows import ofp
from flows.actions.base import Action, Execution, Packet, WireKey
from flows.fields import Subfield, c_hex


def _nicira(subtype: int, body: bytes) -> bytes:
    return ofp.EXPERIMENTER.pack(ofp.OFPAT_EXPERIMENTER, 10 + len(body), ofp.NX_VENDOR_ID, subtype) + body


def subfield_from_text(value: dict[str, Any]) -> Subfield:
    """ovs.flow's {"field", "start", "end"} -> Subfield."""
    if "start" in value:
        return Subfield(value["field"], int(value["start"]), int(value["end"]) - int(value["start"]) + 1)
    return Subfield(value["field"])


@dataclass(frozen=True)
class Move(Action):
    TEXT: ClassVar[tuple[str, ...]] = ("move",)
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_EXPERIMENTER, ofp.NXAST_REG_MOVE)
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("!HHHII")  # after the experimenter header

    src: Subfield
    dst: Subfield

    def __post_init__(self) -> None:
        if self.src.n_bits != self.dst.n_bits:
            raise ValueError(f"move of {self.src.render()} to {self.dst.render()}: widths differ")

    def render(self) -> str:
        return f"move:{self.src.render()}->{self.dst.render()}"

    def encode(self, reported: bool = False) -> bytes:
        return _nicira(ofp.NXAST_REG_MOVE, self._LAYOUT.pack(
            self.src.bits, self.src.start, self.dst.start,
            self.src.header(reported).number, self.dst.header(reported).number))

    def execute(self, packet: Packet, run: Execution) -> None:
        self.dst.write(packet, self.src.read(packet))

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        return cls(subfield_from_text(value["src"]), subfield_from_text(value["dst"]))

    @classmethod
    def decode(cls, data: bytes) -> Action:
        n_bits, src_ofs, dst_ofs, src, dst = cls._LAYOUT.unpack_from(data, 10)
        return cls(Subfield.at(src, src_ofs, n_bits), Subfield.at(dst, dst_ofs, n_bits))


@dataclass(frozen=True)
class Load(Action):
    """NXAST_REG_LOAD; the learn action writes these into learned flows."""

    TEXT: ClassVar[tuple[str, ...]] = ("load",)
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_EXPERIMENTER, ofp.NXAST_REG_LOAD)
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("!HIQ")  # ofs_nbits, field header, value

    dst: Subfield
    value: int

    def render(self) -> str:
        return f"load:{c_hex(self.value)}->{self.dst.render()}"

    def encode(self, reported: bool = False) -> bytes:
        ofs_nbits = (self.dst.start << 6) | (self.dst.bits - 1)
        return _nicira(ofp.NXAST_REG_LOAD, self._LAYOUT.pack(ofs_nbits, self.dst.header(reported).number,
                                                             self.value))

    def execute(self, packet: Packet, run: Execution) -> None:
        self.dst.write(packet, self.value)

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        return cls(subfield_from_text(value["dst"]), int(value["value"])) if "value" in value else None

    @classmethod
    def decode(cls, data: bytes) -> Action:
        ofs_nbits, header, value = cls._LAYOUT.unpack_from(data, 10)
        return cls(Subfield.at(header, ofs_nbits >> 6, (ofs_nbits & 0x3F) + 1), value)


