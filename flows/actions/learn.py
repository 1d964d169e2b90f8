"""Nicira's learn action: table 10 writes the flows of table 20 with it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from flows import ofp
from flows.actions.base import Action, Execution, Learned, Packet, WireKey, number
from flows.actions.nicira import Load, subfield_from_text
from flows.actions.openflow import Output
from flows.fields import BY_NXM, BY_SET_NAME, Subfield, c_hex
from flows.ofp import Unsupported


@dataclass(frozen=True)
class LearnMatch:
    """Match the learned flow's `dst` against this packet's `src` (or a constant)."""

    KIND: ClassVar[int] = 0  # the spec's destination type on the wire

    dst: Subfield
    src: Subfield | int

    def render(self) -> str:
        if isinstance(self.src, int):
            spec = BY_NXM.get(self.dst.field)
            if spec is not None and self.dst.whole and spec.set_name:
                return f"{spec.set_name}={spec.format(self.src)}"
            return f"{self.dst.render()}={c_hex(self.src)}"
        if self.src == self.dst:
            return self.dst.render()
        return f"{self.dst.render()}={self.src.render()}"


@dataclass(frozen=True)
class LearnLoad:
    """Make the learned flow load `src` (this packet's bits or a constant) into `dst`."""

    KIND: ClassVar[int] = 1

    dst: Subfield
    src: Subfield | int

    def render(self) -> str:
        source = c_hex(self.src) if isinstance(self.src, int) else self.src.render()
        return f"load:{source}->{self.dst.render()}"


@dataclass(frozen=True)
class LearnOutput:
    """Make the learned flow output to the port held in `src` (here: the in_port)."""

    KIND: ClassVar[int] = 2

    src: Subfield

    def render(self) -> str:
        return f"output:{self.src.render()}"


LearnSpec = LearnMatch | LearnLoad | LearnOutput
# Each learn action's entries by the packet bits they came from (the action is kept with them, so
# its id stays its own); bounded: a flood of new MACs cannot grow it without end.
_LEARNED_BY: dict[int, tuple[Learn, dict[tuple[int, ...], Learned]]] = {}
_LEARNED_KEPT = 1 << 16
_LEARN_SETTINGS = ("table", "priority", "idle_timeout", "hard_timeout", "cookie")


def _spec_bytes(spec: LearnSpec, reported: bool) -> bytes:
    """nx_flow_mod_spec: a header (source type, destination type, bits), the source, the destination."""
    if isinstance(spec, LearnOutput):
        return struct.pack("!HIH", (spec.KIND << 11) | spec.src.bits, spec.src.header(reported).number,
                           spec.src.start)
    n_bits = spec.dst.bits
    if isinstance(spec.src, int):
        source, src_type = spec.src.to_bytes((n_bits + 15) // 16 * 2, "big"), 1
    else:
        source, src_type = struct.pack("!IH", spec.src.header(reported).number, spec.src.start), 0
    head = struct.pack("!H", (src_type << 13) | (spec.KIND << 11) | n_bits)
    return head + source + struct.pack("!IH", spec.dst.header(reported).number, spec.dst.start)


def _spec_at(data: bytes, at: int) -> tuple[LearnSpec | None, int]:
    """The spec at `at` and where the next starts; None for padding."""
    (head,) = struct.unpack_from("!H", data, at)
    at += 2
    if head == 0:
        return None, at
    src_type, dst_type, n_bits = (head >> 13) & 1, (head >> 11) & 3, head & 0x3FF
    source: Subfield | int
    if src_type == 0:
        number, start = struct.unpack_from("!IH", data, at)
        source, at = Subfield.at(number, start, n_bits), at + 6
    else:
        width = (n_bits + 15) // 16 * 2
        source, at = int.from_bytes(data[at:at + width], "big"), at + width
    if dst_type == LearnOutput.KIND:
        if not isinstance(source, Subfield):
            raise Unsupported("learn output of a constant")
        return LearnOutput(source), at
    if dst_type not in (LearnMatch.KIND, LearnLoad.KIND):
        raise Unsupported(f"learn spec destination {dst_type}")
    number, start = struct.unpack_from("!IH", data, at)
    target = Subfield.at(number, start, n_bits)
    return (LearnMatch(target, source) if dst_type == LearnMatch.KIND else LearnLoad(target, source)), at + 6


def _spec_from_text(key: str, value: Any) -> LearnSpec:
    if key == "load":
        source = subfield_from_text(value["src"]) if "src" in value else int(value["value"])
        return LearnLoad(subfield_from_text(value["dst"]), source)
    if key == "output":
        return LearnOutput(Subfield.parse(value["port"]))
    if "[" in key:
        return LearnMatch(Subfield.parse(key), subfield_from_text(value) if isinstance(value, dict) else int(value))
    spec = BY_SET_NAME.get(key)
    if spec is not None and spec.subfield_name:
        return LearnMatch(Subfield.of(spec), number(value))
    raise ValueError(f"learn specification {key}={value} is not supported")


@dataclass(frozen=True)
class Learn(Action):
    """NXAST_LEARN, printed in lib/learn.c `learn_format` order."""

    TEXT: ClassVar[tuple[str, ...]] = ("learn",)
    WIRE: ClassVar[WireKey | None] = (ofp.OFPAT_EXPERIMENTER, ofp.NXAST_LEARN)
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("!HHHQHBxHH")  # after the experimenter header

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

    def encode(self, reported: bool = False) -> bytes:
        specs = b"".join(_spec_bytes(spec, reported) for spec in self.specs)
        body = self._LAYOUT.pack(self.idle_timeout, self.hard_timeout, self.priority, self.cookie, 0,
                                 self.table, 0, 0) + specs
        head = ofp.EXPERIMENTER.pack(ofp.OFPAT_EXPERIMENTER, ofp.padded_length(10 + len(body)), ofp.NX_VENDOR_ID,
                                     ofp.NXAST_LEARN)
        return ofp.pad8(head + body)

    def execute(self, packet: Packet, run: Execution) -> None:
        """Write the flow Open vSwitch would learn from this packet.

        The same packet bits always learn the same flow (a MAC learned again), so the entry is built
        once per bits and handed over as the same object: the simulator keys its flows by it."""
        values = tuple(spec.src if isinstance(spec.src, int) else spec.src.read(packet) for spec in self.specs)
        cache = _LEARNED_BY.setdefault(id(self), (self, {}))[1]
        entry = cache.get(values)
        if entry is None:
            if len(cache) >= _LEARNED_KEPT:
                cache.clear()
            entry = cache[values] = self._learned(values)
        run.learn(entry)

    def _learned(self, values: tuple[int, ...]) -> Learned:
        match: dict[str, tuple[int, int]] = {}
        actions: list[Action] = []
        for spec, value in zip(self.specs, values, strict=True):
            if isinstance(spec, LearnOutput):
                actions.append(Output(value))
                continue
            if isinstance(spec, LearnLoad):
                actions.append(Load(spec.dst, value))
                continue
            name, bits = spec.dst.spec.name, (1 << spec.dst.bits) - 1
            old_value, old_mask = match.get(name, (0, 0))
            match[name] = (old_value | ((value & bits) << spec.dst.start), old_mask | (bits << spec.dst.start))
        return Learned(self.table, self.priority, self.cookie, self.idle_timeout, self.hard_timeout,
                       tuple((name, value, mask) for name, (value, mask) in match.items()), tuple(actions))

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        settings: dict[str, int] = {}
        specs: list[LearnSpec] = []
        for item in value:
            ((name, part),) = item.items()
            if name in _LEARN_SETTINGS:
                settings[name] = int(part)
            else:
                specs.append(_spec_from_text(name, part))
        return cls(specs=tuple(specs), **settings)

    @classmethod
    def decode(cls, data: bytes) -> Action:
        idle, hard, priority, cookie, _flags, table, _from, _to = cls._LAYOUT.unpack_from(data, 10)
        specs: list[LearnSpec] = []
        at = 32
        while at + 2 <= len(data):
            spec, at = _spec_at(data, at)
            if spec is not None:
                specs.append(spec)
        return cls(table=table, priority=priority, idle_timeout=idle, hard_timeout=hard, cookie=cookie,
                   specs=tuple(specs))
