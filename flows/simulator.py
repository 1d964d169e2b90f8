"""Execute a flow table offline: what Open vSwitch would do with one packet.

It runs the OpenFlow 1.3 pipeline the way Open vSwitch does for the flows
br-tun uses: highest priority wins, masked matches compare the masked
packet bits, goto_table continues, apply-actions run in order (push/pop
VLAN, set_field, move, load, output, IN_PORT), a table miss drops, and the
NX learn action adds its flow to the simulated table (same match and
priority replace the old flow and restart its hard timeout, as
`ovs-ofctl --strict mod-flows` would).  Time is a clock the caller moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flows import fields
from flows.actions import (
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Load,
    Move,
    Output,
    PopVlan,
    PushVlan,
    RawAction,
    SetField,
    Subfield,
)
from flows.diff import Change, Kind
from flows.flow import Flow, FlowKey, Match, MatchField

Packet = dict[str, int]  # flows.fields match names -> value; vlan_tci 0 means untagged

# set_field names that write a different packet field than their own name.
_SET_TARGET = {"vlan_vid": "vlan_tci", "eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type",
               "ip_src": "nw_src", "ip_dst": "nw_dst"}
_NXM_TO_FIELD = {spec.nxm: spec.name for spec in fields.FIELDS if spec.nxm}
MAX_RESUBMITS = 64


class SimulationError(ValueError):
    pass


@dataclass(frozen=True)
class Emitted:
    """A packet leaving on a port, with the headers it left with."""

    port: int
    vlan: int | None  # the 802.1Q VID, None when untagged
    tun_id: int


@dataclass(frozen=True)
class Hit:
    table: int
    flow: Flow | None  # None: table miss


@dataclass(frozen=True)
class Verdict:
    emitted: tuple[Emitted, ...]
    learned: tuple[Flow, ...]  # flows added or refreshed by this packet
    hits: tuple[Hit, ...]

    @property
    def dropped(self) -> bool:
        return not self.emitted

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(sorted(e.port for e in self.emitted))


@dataclass
class _Entry:
    flow: Flow
    installed: float
    used: float


@dataclass
class FlowTableSimulator:
    """A switch's flow tables plus a clock; learned flows persist between packets."""

    clock: float = 0.0
    _tables: dict[int, list[_Entry]] = field(default_factory=dict)
    _by_key: dict[FlowKey, _Entry] = field(default_factory=dict)

    @classmethod
    def of(cls, flows: Iterable[Flow]) -> FlowTableSimulator:
        simulator = cls()
        for flow in flows:
            simulator.install(flow)
        return simulator

    def install(self, flow: Flow) -> None:
        """Add, or replace the flow with the same table, priority and match."""
        old = self._by_key.get(flow.key)
        entry = _Entry(flow, self.clock, self.clock)
        table = self._tables.setdefault(flow.table, [])
        if old is not None:
            table[table.index(old)] = entry
        else:
            table.append(entry)
            table.sort(key=lambda e: -e.flow.priority)  # stable: equal priorities keep install order
        self._by_key[flow.key] = entry

    def remove(self, key: FlowKey) -> bool:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return False
        self._tables[key[0]].remove(entry)
        return True

    def apply(self, changes: Iterable[Change]) -> None:
        """Carry out a flows.diff result, as the agent's bundle would on a switch."""
        for change in changes:
            if change.kind is Kind.DELETE:
                self.remove(change.flow.key)
            else:
                self.install(change.flow)

    def flows(self) -> list[Flow]:
        return [entry.flow for table in self._tables.values() for entry in table]

    def advance(self, seconds: float) -> list[Flow]:
        """Move the clock; return the flows whose hard or idle timeout expired."""
        self.clock += seconds
        expired = []
        for table in self._tables.values():
            for entry in list(table):
                flow = entry.flow
                # Open vSwitch expires a flow once *more* than its timeout has passed.
                hard = flow.hard_timeout and self.clock - entry.installed > flow.hard_timeout
                idle = flow.idle_timeout and self.clock - entry.used > flow.idle_timeout
                if hard or idle:
                    table.remove(entry)
                    del self._by_key[flow.key]
                    expired.append(flow)
        return expired

    def lookup(self, table: int, packet: Mapping[str, int]) -> Flow | None:
        for entry in self._tables.get(table, ()):
            if matches(entry.flow.match, packet):
                entry.used = self.clock
                return entry.flow
        return None

    def process(self, packet: Mapping[str, int]) -> Verdict:
        """Run one packet through the pipeline from table 0."""
        state: Packet = dict(packet)
        in_port = state.get("in_port", 0)
        emitted: list[Emitted] = []
        learned: list[Flow] = []
        hits: list[Hit] = []
        table: int | None = 0
        for _ in range(MAX_RESUBMITS):
            if table is None:
                break
            flow = self.lookup(table, state)
            hits.append(Hit(table, flow))
            if flow is None:
                break
            for action in flow.actions:
                self._apply(action, state, in_port, emitted, learned)
            table = flow.goto
        return Verdict(tuple(emitted), tuple(learned), tuple(hits))

    def _apply(self, action: object, state: Packet, in_port: int, emitted: list[Emitted],
               learned: list[Flow]) -> None:
        if isinstance(action, Output):
            port = in_port if action.port == fields.OFPP_IN_PORT else action.port
            if action.port != fields.OFPP_IN_PORT and port == in_port:
                return  # OpenFlow: output to the input port needs IN_PORT
            tci = state.get("vlan_tci", 0)
            vlan = tci & fields.VLAN_VID_MASK if tci & fields.VLAN_CFI else None
            emitted.append(Emitted(port, vlan, state.get("tun_id", 0)))
        elif isinstance(action, PushVlan):
            state["vlan_tci"] = fields.VLAN_CFI
        elif isinstance(action, PopVlan):
            state["vlan_tci"] = 0
        elif isinstance(action, SetField):
            target = _SET_TARGET.get(action.field, action.field)
            if target == "vlan_tci":
                state[target] = (state.get(target, 0) & ~0x1FFF) | action.value
            else:
                state[target] = action.value
        elif isinstance(action, Move):
            _write(state, action.dst, _read(state, action.src))
        elif isinstance(action, Load):
            _write(state, action.dst, action.value)
        elif isinstance(action, Learn):
            flow = learn(action, state)
            self.install(flow)
            learned.append(flow)
        elif isinstance(action, RawAction):
            raise SimulationError(f"cannot simulate action {action.text}")


def matches(match: Match, packet: Mapping[str, int]) -> bool:
    for item in match.fields:
        value = packet.get(item.name, 0)
        if item.mask is not None:
            value &= item.mask
        if value != item.value:
            return False
    return not match.raw


def _bits(subfield: Subfield) -> tuple[str, int, int]:
    name = _NXM_TO_FIELD.get(subfield.field)
    if name is None:
        raise SimulationError(f"cannot simulate field {subfield.field}")
    assert subfield.n_bits is not None
    return name, subfield.start, (1 << subfield.n_bits) - 1


def _read(packet: Mapping[str, int], subfield: Subfield) -> int:
    name, start, mask = _bits(subfield)
    return (packet.get(name, 0) >> start) & mask


def _write(packet: Packet, subfield: Subfield, value: int) -> None:
    name, start, mask = _bits(subfield)
    packet[name] = (packet.get(name, 0) & ~(mask << start)) | ((value & mask) << start)


def learn(action: Learn, packet: Mapping[str, int]) -> Flow:
    """The flow a learn action writes for this packet, as Open vSwitch builds it."""
    match_fields: dict[str, tuple[int, int]] = {}
    actions: list[Output | Load] = []
    for spec in action.specs:
        if isinstance(spec, LearnMatch):
            name, start, mask = _bits(spec.dst)
            value = spec.src if isinstance(spec.src, int) else _read(packet, spec.src)
            old_value, old_mask = match_fields.get(name, (0, 0))
            match_fields[name] = (old_value | ((value & mask) << start), old_mask | (mask << start))
        elif isinstance(spec, LearnLoad):
            value = spec.src if isinstance(spec.src, int) else _read(packet, spec.src)
            actions.append(Load(spec.dst, value))
        elif isinstance(spec, LearnOutput):
            actions.append(Output(_read(packet, spec.src)))
    match = Match(tuple(MatchField(name, value, mask) for name, (value, mask) in match_fields.items()))
    return Flow(action.table, action.priority, match, tuple(actions), cookie=action.cookie,
                idle_timeout=action.idle_timeout, hard_timeout=action.hard_timeout)
