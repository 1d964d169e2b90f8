"""OpenFlow actions as values, each rendering exactly as `ovs-ofctl` prints it.

Only the actions br-tun uses are typed; anything else read back from a
switch (a foreign flow) is kept as `RawAction` text so it can be shown and
compared, never rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows import fields
from flows.fields import Field


@dataclass(frozen=True)
class Subfield:
    """A bit range of a field, as NXM names it (`NXM_OF_VLAN_TCI[0..11]`)."""

    field: str  # NXM name
    start: int = 0
    n_bits: int | None = None  # None: the whole field

    def __post_init__(self) -> None:
        known = fields.BY_NXM.get(self.field)
        if known is not None:
            if self.n_bits is None or (self.start == 0 and self.n_bits == known.bits):
                object.__setattr__(self, "n_bits", known.bits)
            if self.start < 0 or self.start + self.n_bits > known.bits:
                raise ValueError(f"{self.field}[{self.start}..] is outside its {known.bits} bits")
        elif self.n_bits is None:
            raise ValueError(f"the width of {self.field} is unknown; give n_bits")

    @property
    def whole(self) -> bool:
        known = fields.BY_NXM.get(self.field)
        return known is not None and self.start == 0 and self.n_bits == known.bits

    def render(self) -> str:
        assert self.n_bits is not None
        if self.whole:
            return f"{self.field}[]"
        if self.n_bits == 1:
            return f"{self.field}[{self.start}]"
        return f"{self.field}[{self.start}..{self.start + self.n_bits - 1}]"

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
        assert field.nxm is not None, f"{field.name} has no NXM name"
        return cls(field.nxm, start, n_bits)


@dataclass(frozen=True)
class Output:
    port: int
    max_len: int = 0

    def render(self) -> str:
        if self.port == fields.OFPP_CONTROLLER:
            return f"CONTROLLER:{self.max_len}"
        if self.port in fields.RESERVED_PORTS:
            return fields.RESERVED_PORTS[self.port]
        return f"output:{self.port}"


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = fields.ETH_TYPE_8021Q

    def render(self) -> str:
        return f"push_vlan:{self.ethertype:#x}"


@dataclass(frozen=True)
class PopVlan:
    def render(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True)
class SetField:
    """set_field: the field is named by Open vSwitch's own field name."""

    field: str  # a key of fields.BY_MF_NAME: tun_id, vlan_vid, arp_op, eth_src...
    value: int

    def __post_init__(self) -> None:
        spec = fields.BY_MF_NAME.get(self.field)
        if spec is None:
            raise ValueError(f"set_field of unknown field {self.field!r}")
        if not 0 <= self.value <= fields.full_mask(spec):
            raise ValueError(f"{self.value:#x} does not fit {self.field}")

    def render(self) -> str:
        spec = fields.BY_MF_NAME[self.field]
        return f"set_field:{fields.format_value(spec, self.value)}->{self.field}"


@dataclass(frozen=True)
class Move:
    src: Subfield
    dst: Subfield

    def __post_init__(self) -> None:
        if self.src.n_bits != self.dst.n_bits:
            raise ValueError(f"move of {self.src.render()} to {self.dst.render()}: widths differ")

    def render(self) -> str:
        return f"move:{self.src.render()}->{self.dst.render()}"


@dataclass(frozen=True)
class Load:
    """NXAST_REG_LOAD; the learn action writes these into learned flows."""

    dst: Subfield
    value: int

    def render(self) -> str:
        return f"load:{fields.c_hex(self.value)}->{self.dst.render()}"


@dataclass(frozen=True)
class LearnMatch:
    """Match the learned flow's `dst` against this packet's `src` (or a constant)."""

    dst: Subfield
    src: Subfield | int

    def render(self) -> str:
        if isinstance(self.src, int):
            spec = fields.BY_NXM.get(self.dst.field)
            name = spec.mf_name if spec is not None and self.dst.whole and spec.mf_name else None
            if name is not None and spec is not None:
                return f"{name}={fields.format_value(spec, self.src)}"
            return f"{self.dst.render()}={fields.c_hex(self.src)}"
        if self.src == self.dst:
            return self.dst.render()
        return f"{self.dst.render()}={self.src.render()}"


@dataclass(frozen=True)
class LearnLoad:
    """Make the learned flow load `src` (this packet's bits or a constant) into `dst`."""

    dst: Subfield
    src: Subfield | int

    def render(self) -> str:
        source = fields.c_hex(self.src) if isinstance(self.src, int) else self.src.render()
        return f"load:{source}->{self.dst.render()}"


@dataclass(frozen=True)
class LearnOutput:
    """Make the learned flow output to the port held in `src` (here: the in_port)."""

    src: Subfield

    def render(self) -> str:
        return f"output:{self.src.render()}"


LearnSpec = LearnMatch | LearnLoad | LearnOutput


@dataclass(frozen=True)
class Learn:
    """NXAST_LEARN, printed in lib/learn.c `learn_format` order."""

    table: int
    specs: tuple[LearnSpec, ...]
    priority: int = 32768
    idle_timeout: int = 0
    hard_timeout: int = 0
    cookie: int = 0

    def render(self) -> str:
        parts = [f"table={self.table}"]
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        if self.priority != 32768:
            parts.append(f"priority={self.priority}")
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        parts.extend(spec.render() for spec in self.specs)
        return f"learn({','.join(parts)})"


@dataclass(frozen=True)
class RawAction:
    """An action or instruction this project does not model, kept as the switch printed it."""

    text: str

    def render(self) -> str:
        return self.text


Action = Output | PushVlan | PopVlan | SetField | Move | Load | Learn | RawAction
