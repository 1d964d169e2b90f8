"""What every action shares: the base class whose subclasses register themselves, the raw action,
and the dispatch the text parser, the wire codec and the simulator use."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Protocol

from flows import ofp
from flows.ofp import Unsupported

Packet = dict[str, int]  # a simulated packet: match field names -> values; vlan_tci 0 is untagged
WireKey = tuple[int, int | None]  # (action type, Nicira subtype or None)

_BY_TEXT: dict[str, type[Action]] = {}
_BY_WIRE: dict[WireKey, type[Action]] = {}


class CannotSimulate(ValueError):
    pass


@dataclass(frozen=True)
class Learned:
    """The flow a learn action writes, as the simulator installs it."""

    table: int
    priority: int
    cookie: int
    idle_timeout: int
    hard_timeout: int
    match: tuple[tuple[str, int, int], ...]  # (field name, value, mask)
    actions: tuple[Action, ...]


class Execution(Protocol):
    """What an action may do beyond changing the packet (flows.simulator provides it)."""

    in_port: int

    def emit(self, port: int) -> None: ...

    def learn(self, entry: Learned) -> None: ...


class Action:
    """An action br-tun models.  Subclasses are frozen dataclasses that declare their keys:
    `TEXT`, the names Open vSwitch's parser gives them, and `WIRE`, their action type and, for
    Nicira's, their subtype."""

    TEXT: ClassVar[tuple[str, ...]] = ()
    WIRE: ClassVar[WireKey | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for key in cls.TEXT:
            _BY_TEXT[key] = cls
        if cls.WIRE is not None:
            _BY_WIRE[cls.WIRE] = cls

    def render(self) -> str:
        raise NotImplementedError

    def encode(self, reported: bool = False) -> bytes:
        """The action's bytes as os-ken writes them; `reported`: as Open vSwitch reports them
        back (Nicira headers for the fields in Nicira actions)."""
        raise NotImplementedError

    def execute(self, packet: Packet, run: Execution) -> None:
        raise NotImplementedError

    @classmethod
    def from_text(cls, key: str, value: Any) -> Action | None:
        """From Open vSwitch's parsed action (`ovs.flow`); None: a form brtun does not model."""
        raise NotImplementedError

    @classmethod
    def decode(cls, data: bytes) -> Action:
        """From the action's bytes (its header included)."""
        raise NotImplementedError


@dataclass(frozen=True)
class RawAction(Action):
    """An action or instruction this project does not model, kept as the switch printed it."""

    text: str

    def render(self) -> str:
        return self.text

    def encode(self, reported: bool = False) -> bytes:
        raise Unsupported(f"action {self.text}")

    def execute(self, packet: Packet, run: Execution) -> None:
        raise CannotSimulate(f"cannot simulate action {self.text}")


# ----- dispatch: what the parsers and the codec use ------------------------------

def from_text(key: str, value: Any, text: str) -> Action:
    """An action as `ovs.flow` parsed it -> its class's value, or RawAction(`text`)."""
    kind = _BY_TEXT.get(key)
    action = kind.from_text(key, value) if kind is not None else None
    return action if action is not None else RawAction(text)


def decode(data: bytes) -> Action:
    """One action's bytes -> its class's value; an action brtun does not model -> RawAction."""
    kind, _length = ofp.TLV.unpack_from(data)
    subtype = None
    if kind == ofp.OFPAT_EXPERIMENTER:
        _type, _length, vendor, subtype = ofp.EXPERIMENTER.unpack_from(data)
        if vendor != ofp.NX_VENDOR_ID:
            return RawAction(f"experimenter({vendor:#x},{data[8:].hex()})")
    decoder = _BY_WIRE.get((kind, subtype))
    if decoder is None:
        return RawAction(f"action({kind}{'' if subtype is None else f'/{subtype}'},{data[4:].hex()})")
    try:
        return decoder.decode(data)
    except (Unsupported, ValueError, KeyError, struct.error):
        return RawAction(f"action({kind}{'' if subtype is None else f'/{subtype}'},{data[4:].hex()})")


@lru_cache(maxsize=1 << 16)
def encoded(action: Action, reported: bool = False) -> bytes:
    """One action's bytes, remembered: most actions recur across thousands of flows (pop_vlan, a
    network's set_field of its key, an output to a tunnel, the ARP responder's moves)."""
    return action.encode(reported)


@lru_cache(maxsize=1 << 16)
def encoded_both(action: Action) -> tuple[bytes, bytes]:
    """(as sent, as reported), the second the very same object when the bytes are equal: only
    actions naming fields by Nicira header (move, load, learn) may differ."""
    sent, reported = action.encode(False), action.encode(True)
    return sent, sent if reported == sent else reported


def encode_all(actions: Iterable[Action], reported: bool = False) -> bytes:
    return b"".join(encoded(action, reported) for action in actions)


@functools.cache
def _ovs_masks() -> tuple[type, type, type]:
    """Open vSwitch's parsed-value classes, imported on the first text parsed: importing them loads
    pyparsing (and with it unittest), 60 ms of every agent's and command's start otherwise."""
    from ovs.flow.decoders import EthMask, IntMask, IPMask

    return EthMask, IntMask, IPMask


def ovs_value(value: Any) -> tuple[int, int | None]:
    """A value as Open vSwitch's flow parser decodes it (int, IntMask, EthMask, IPMask) -> (int, mask)."""
    if isinstance(value, bool):
        raise TypeError("unexpected flag")
    if isinstance(value, int):
        return value, None
    EthMask, IntMask, IPMask = _ovs_masks()
    if isinstance(value, EthMask):
        return int(value.eth), None if value.mask is None else int(value.mask)
    if isinstance(value, IPMask):
        return int(value.ip), int(value.mask)
    if isinstance(value, IntMask):
        return int(value.value), int(value.mask)
    raise TypeError(f"unexpected value {value!r}")


def number(value: Any) -> int:
    return ovs_value(value)[0]

