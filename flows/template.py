"""Flow shapes: a builder's flows that differ only in a few values, made without a Flow each.

At 100,000 flows a br-tun is almost all tables 20 and 21: one flow per
(network, remote port), each the same flow but for its local VLAN, key,
MAC, IP and tunnel port.  Building each as a Flow (a Match, its fields, its
actions, then their bytes and their text) costs ~30 us and ~2 KB a flow,
which set `brtun render`'s and a cold agent's pace and its memory (bench/
bench_agent.py).  A `Shape` builds such a flow once with sample values
(through the real builder, so through the declarations of its fields and
actions and the table checks), finds where each value lands in its text
and its bytes, and from then on fills those places in: a `ShapedFlow` is
two references, and its text, bytes and match are made on demand.

Nothing here knows a field or an action: a value's text is its field's
`format`, its bytes its field's width.  A shape is checked when it is made:
two more sets of values are built both ways and must give the same text,
bytes and match; if they do not (a sample value that also occurs where it
is not a value, a builder that reads more than its declared values), the
shape builds every flow through the builder instead, which is only slower.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flows.fields import Field
from flows.flow import Encoded, Flow, Match, MatchField

Builder = Callable[..., Flow]  # builder(model, *args) -> Flow


@dataclass(frozen=True)
class Value:
    """One value a shape's flows differ in: `getattr(args[owner], attr)`.

    `field` gives its text (`Field.format`) and its width on the wire; `present` is OR-ed into it
    where it is matched or sent (a VLAN ID with OFPVID_PRESENT, as in vlan_vid and vlan_tci);
    `text` replaces the field's notation where the flow prints it otherwise (dl_vlan in decimal)."""

    owner: int
    attr: str
    field: Field
    samples: tuple[int, int, int]  # the first is searched for; the others check the result
    present: int = 0
    text: Callable[[int], str] | None = None

    @property
    def formatter(self) -> Callable[[int], str]:
        return self.text if self.text is not None else self.field.formatter

    def format(self, value: int) -> str:
        return self.formatter(value)

    def wire(self, value: int) -> int:
        return value | self.present

    @property
    def size(self) -> int:
        return (self.field.bits + 7) // 8


_PACK = {1: "B", 2: "H", 4: "I", 8: "Q"}


class _NoShape(Exception):
    """The sample flow does not reduce to a template (the shape builds through the builder)."""


def _split_positions(values: Sequence[Value]) -> dict[int, int]:
    """Where in a shape's wired list each 6-byte value's two parts follow the values (struct has no
    48-bit code: a MAC is packed as its high 16 and low 32 bits)."""
    sixes = [index for index, value in enumerate(values) if value.size == 6]
    return {index: len(values) + 2 * rank for rank, index in enumerate(sixes)}


class _Bytes:
    """Bytes with holes: constants and, in between, values packed big-endian at their field's width.

    Filled by one `itemgetter` and one `struct.pack`, both in C: the wired values (Shape.wired)
    followed by the constants are picked in the order the format packs them."""

    def __init__(self, sample: bytes, values: Sequence[Value], sampled: Sequence[int],
                 split: Mapping[int, int]) -> None:
        holes: list[tuple[int, int]] = []  # (offset, index of the value)
        for index, value in enumerate(values):
            needle = value.wire(sampled[index]).to_bytes(value.size, "big")
            start = sample.find(needle)
            while start != -1:
                holes.append((start, index))
                start = sample.find(needle, start + len(needle))
        holes.sort()
        wired_length = len(values) + 2 * len(split)
        fmt, order, constants, at = "!", [], [], 0
        for offset, index in holes:
            if offset < at:
                raise _NoShape("two values overlap in the bytes")
            if offset > at:
                fmt += f"{offset - at}s"
                order.append(wired_length + len(constants))
                constants.append(sample[at:offset])
            size = values[index].size
            if index in split:
                fmt += "HI"
                order += [split[index], split[index] + 1]
            elif size in _PACK:
                fmt += _PACK[size]
                order.append(index)
            else:
                raise _NoShape(f"no packing for a {size}-byte value")
            at = offset + size
        if at < len(sample):
            fmt += f"{len(sample) - at}s"
            order.append(wired_length + len(constants))
            constants.append(sample[at:])
        self._pack = struct.Struct(fmt).pack
        self._pick = operator.itemgetter(*order, *order[:1])  # one more: itemgetter of one gives no tuple
        self._constants = constants
        self.constant = sample if not holes else None

    def fill(self, wired: list[int]) -> bytes:
        if self.constant is not None:
            return self.constant
        return self._pack(*self._pick(wired + self._constants)[:-1])


class _Text:
    """A flow's line with holes where its values are printed.

    A value's text counts only as a whole token (after `=`, `:` or `,`, before `,`, `-`, `/`, a
    space or the end), so a sample that also occurs inside a cookie or another value is left alone."""

    def __init__(self, sample: str, values: Sequence[Value], sampled: Sequence[int]) -> None:
        template = sample.replace("{", "{{").replace("}", "}}")
        printed = []  # (owner, attr, format) of each value the line prints, in placeholder order
        for index, value in enumerate(values):
            text = re.escape(value.format(sampled[index]))
            template, count = re.subn(rf"(?<=[=:,]){text}(?=[,\-/ ]|$)", f"{{{len(printed)}}}", template)
            if count:
                printed.append((value.owner, operator.attrgetter(value.attr), value.formatter))
        self._format = template.format
        self._printed = tuple(printed)

    def fill(self, args: Sequence[Any]) -> str:
        return self._format(*[text(get(args[owner])) for owner, get, text in self._printed])


class _MatchTemplate:
    """The sample's normalised match fields, each a constant or one value (plus its `present` bits)."""

    def __init__(self, sample: Match, values: Sequence[Value], sampled: Sequence[int]) -> None:
        if sample.raw:
            raise _NoShape("a raw match")
        wired = [value.wire(sampled[index]) for index, value in enumerate(values)]
        parts = []
        for item in sample.fields:
            hits = [index for index, wire in enumerate(wired) if wire == item.value]
            parts.append((item, hits[0] if len(hits) == 1 else None))
        self._parts = tuple(parts)
        self.uses = tuple(sorted({index for _, index in parts if index is not None}))

    def fill(self, wired: Sequence[int]) -> Match:
        found = tuple([item if index is None else _new_tuple(MatchField, (item.name, wired[index], item.mask))
                       for item, index in self._parts])
        match = object.__new__(Match)  # the sample's fields were normalised and checked; these are alike
        match.__dict__.update(fields=found, raw=())
        return match


class Shape:
    """The flows one builder makes for different values of `values`, all else equal.

    The builder is called as `builder(model, *args)`; it may read of `args` only the
    declared values (the pipeline's shapes are checked for that by tests/unit/test_template.py,
    and each shape checks itself with two more sets of values when it is made)."""

    def __init__(self, builder: Builder, model: object, values: tuple[Value, ...]) -> None:
        self.builder, self.model, self.values = builder, model, values
        self._ready: bool | None = None  # None: not made yet; False: build every flow through the builder

    def flow(self, *args: Any) -> Flow:
        if self._ready is None:
            self._ready = self._make(args)
        if not self._ready:
            return self.builder(self.model, *args)
        flow = object.__new__(ShapedFlow)
        _set(flow, "_shape", self)
        _set(flow, "_args", args)
        _set(flow, "_built", None)
        return flow

    def _with(self, args: Sequence[Any], sampled: Sequence[int]) -> tuple[Any, ...]:
        """`args` with the values set to `sampled`."""
        changes: dict[int, dict[str, int]] = {}
        for value, number in zip(self.values, sampled, strict=True):
            changes.setdefault(value.owner, {})[value.attr] = number
        return tuple(dataclasses.replace(arg, **changes[i]) if i in changes else arg for i, arg in enumerate(args))

    def _make(self, args: Sequence[Any]) -> bool:
        samples = [tuple(value.samples[i] for value in self.values) for i in range(3)]
        sample = self.builder(self.model, *self._with(args, samples[0]))
        try:
            self._learn(sample, samples[0])
        except _NoShape:
            return False
        for check in samples[1:]:
            real_args = self._with(args, check)
            real = self.builder(self.model, *real_args)
            made = object.__new__(ShapedFlow)
            for name, value in (("_shape", self), ("_args", real_args), ("_built", real)):
                _set(made, name, value)
            if (made.render(), made.encoded, made.match) != (real.render(), real.encoded, real.match):
                return False
        return True

    def _learn(self, sample: Flow, sampled: Sequence[int]) -> None:
        self.head = (sample.table, sample.priority, sample.goto, sample.cookie, sample.idle_timeout,
                     sample.hard_timeout)
        encoded = sample.encoded
        reported = encoded.key[6]
        split = _split_positions(self.values)
        self._split = tuple(split)
        self._getters = tuple((value.owner, operator.attrgetter(value.attr), value.present) for value in self.values)
        self._match_bytes = _Bytes(encoded.match, self.values, sampled, split)
        self._sent = _Bytes(encoded.instructions, self.values, sampled, split)
        self._reported = self._sent if reported is encoded.instructions else \
            _Bytes(reported, self.values, sampled, split)
        self._text = _Text(sample.render(), self.values, sampled)
        self._match = _MatchTemplate(sample.match, self.values, sampled)
        self._identity = tuple((self.values[i].owner, operator.attrgetter(self.values[i].attr))
                               for i in self._match.uses)

    @property
    def place(self) -> tuple[int, int]:
        """(table, priority) of all its flows."""
        return self.head[0], self.head[1]

    def wired(self, args: Sequence[Any]) -> list[int]:
        """Each value as matched or sent (Value.wire), then each 6-byte value's two parts."""
        wired = [get(args[owner]) | present for owner, get, present in self._getters]
        for index in self._split:
            wired += (wired[index] >> 32, wired[index] & 0xFFFFFFFF)
        return wired

    def render(self, args: Sequence[Any]) -> str:
        return self._text.fill(args)

    def encode(self, args: Sequence[Any]) -> Encoded:
        wired = self.wired(args)
        match = self._match_bytes.fill(wired)
        sent = self._sent.fill(wired)
        reported = sent if self._reported is self._sent else self._reported.fill(wired)
        table, priority, _goto, cookie, idle, hard = self.head
        return Encoded(match, sent, (table, priority, cookie, idle, hard, match, reported))

    def match(self, args: Sequence[Any]) -> Match:
        return self._match.fill(self.wired(args))

    def identity(self, args: Sequence[Any]) -> tuple[Any, ...]:
        """What tells this shape's flows apart: the values in their match (each has its own place
        in it, so equal identities are equal matches and different ones different matches)."""
        return tuple([get(args[owner]) for owner, get in self._identity])


_set = object.__setattr__
_new_tuple = tuple.__new__  # a MatchField without its constructor's argument handling


class ShapedFlow(Flow):
    """A Flow made by a Shape: its shape and the builder's arguments, the rest made when asked.

    It is a Flow in every way a reader can tell (equal to, and hashing like, the Flow its builder
    makes; `dataclasses.replace` and pickling give a plain Flow), but it holds two references and,
    no Match, actions, bytes or text are kept."""

    __slots__ = ("_args", "_built", "_shape")

    _shape: Shape
    _args: tuple[Any, ...]

    def __new__(cls, *args: Any, **kwargs: Any) -> Flow:  # type: ignore[misc]
        """What `dataclasses.replace` calls: a changed flow is no longer the shape's."""
        return Flow(*args, **kwargs)

    table = property(lambda self: self._shape.head[0])  # type: ignore[assignment]
    priority = property(lambda self: self._shape.head[1])  # type: ignore[assignment]
    goto = property(lambda self: self._shape.head[2])  # type: ignore[assignment]
    cookie = property(lambda self: self._shape.head[3])  # type: ignore[assignment]
    idle_timeout = property(lambda self: self._shape.head[4])  # type: ignore[assignment]
    hard_timeout = property(lambda self: self._shape.head[5])  # type: ignore[assignment]

    @property  # type: ignore[override]
    def match(self) -> Match:
        return self._shape.match(self._args)

    @property  # type: ignore[override]
    def actions(self) -> tuple[Any, ...]:
        return self.built.actions

    @property
    def built(self) -> Flow:
        """The builder's own Flow, made (and kept) the first time actions are asked for."""
        if self._built is None:
            _set(self, "_built", self._shape.builder(self._shape.model, *self._args))
        return self._built

    @property  # type: ignore[override]
    def encoded(self) -> Encoded:
        """Made anew each time (~3 us): keeping each shaped flow's bytes would cost ~400 bytes a flow
        for as long as the agent keeps its desired flows, twice what the rest of the flow costs."""
        return self._shape.encode(self._args)

    @property  # type: ignore[override]
    def key(self) -> tuple[int, int, Match]:
        return (self._shape.head[0], self._shape.head[1], self.match)

    def render(self) -> str:
        return self._shape.render(self._args)

    @property
    def shape(self) -> Shape:
        return self._shape

    @property
    def identity(self) -> tuple[Any, ...]:
        """`key` within its shape, without making a Match (Shape.identity)."""
        return self._shape.identity(self._args)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return self.built == (other.built if isinstance(other, ShapedFlow) else other)

    def __hash__(self) -> int:
        return hash(self.built)

    def __reduce__(self) -> tuple[Any, ...]:
        built = self.built
        return (Flow, tuple(getattr(built, f.name) for f in dataclasses.fields(Flow)))
