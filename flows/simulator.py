"""Execute a flow table offline: what Open vSwitch would do with one packet.

It runs the OpenFlow 1.3 pipeline the way Open vSwitch does for the flows
br-tun uses: highest priority wins, masked matches compare the masked
packet bits, goto_table continues, apply-actions run in order, a table miss
drops.  What each action does is declared with the action
(`Action.execute` in flows.actions); this module supplies what they act
on: outputs are recorded with the headers the packet leaves with, and the
NX learn action's flow is added to the simulated table (same match and
priority replace the old flow and restart its hard timeout, as
`ovs-ofctl --strict mod-flows` would).  Time is a clock the caller moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from flows import fields
from flows.actions import Execution, Learned, Packet
from flows.diff import Change, Kind
from flows.flow import Flow, FlowKey, Match, MatchField

MAX_RESUBMITS = 64


class Emitted(NamedTuple):
    """A packet leaving on a port, with the headers it left with (a named tuple: made for every
    output of every simulated packet, where a frozen dataclass's __init__ costs three times more)."""

    port: int
    vlan: int | None  # the 802.1Q VID, None when untagged
    tun_id: int


class Hit(NamedTuple):
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


class _Entry:
    """A flow in its table, with the values its match compares (in its group's field order)."""

    __slots__ = ("flow", "installed", "used", "values")

    def __init__(self, flow: Flow, now: float) -> None:
        self.flow = flow
        self.installed = self.used = now
        self.values = tuple(item.value for item in flow.match.fields)


class _Group:
    """The flows of one table with one priority that match the same fields under the same masks:
    a packet's masked values find the one flow of the group it matches with one dictionary lookup
    (Open vSwitch's classifier is built the same way: tuple space search)."""

    __slots__ = ("entries", "key", "priority", "signature")

    def __init__(self, priority: int, signature: tuple[tuple[str, int | None], ...]) -> None:
        self.priority = priority
        self.signature = signature
        self.entries: dict[tuple[int, ...], _Entry] = {}
        self.key = _key_function(signature)


def _key_function(signature: tuple[tuple[str, int | None], ...]) -> Callable[[Mapping[str, int]], tuple[int, ...]]:
    """A packet's values under a group's fields and masks, as a function made for the signature
    (the lookup's inner loop: a generator per group and packet would cost more than the search)."""
    masks = tuple(-1 if mask is None else mask for _name, mask in signature)
    names = tuple(name for name, _mask in signature)
    if len(names) == 0:
        return lambda packet: ()
    if len(names) == 1:
        (a,), (ma,) = names, masks
        return lambda packet: (packet.get(a, 0) & ma,)
    if len(names) == 2:
        (a, b), (ma, mb) = names, masks
        return lambda packet: (packet.get(a, 0) & ma, packet.get(b, 0) & mb)
    pairs = tuple(zip(names, masks, strict=True))
    return lambda packet: tuple(packet.get(name, 0) & mask for name, mask in pairs)


class _Table:
    def __init__(self) -> None:
        self.groups: list[_Group] = []  # descending priority; equal priorities in the order they came
        self._by_signature: dict[tuple[int, tuple[tuple[str, int | None], ...]], _Group] = {}

    def put(self, entry: _Entry) -> None:
        flow = entry.flow
        signature = tuple((item.name, item.mask) for item in flow.match.fields)
        group = self._by_signature.get((flow.priority, signature))
        if group is None:
            group = self._by_signature[(flow.priority, signature)] = _Group(flow.priority, signature)
            at = len(self.groups)
            while at and self.groups[at - 1].priority < flow.priority:
                at -= 1
            self.groups.insert(at, group)
        group.entries[entry.values] = entry

    def drop(self, entry: _Entry) -> None:
        flow = entry.flow
        signature = tuple((item.name, item.mask) for item in flow.match.fields)
        group = self._by_signature[(flow.priority, signature)]
        del group.entries[entry.values]
        if not group.entries:
            del self._by_signature[(flow.priority, signature)]
            self.groups.remove(group)

    def entries(self) -> list[_Entry]:
        return [entry for group in self.groups for entry in group.entries.values()]

    def lookup(self, packet: Mapping[str, int]) -> _Entry | None:
        for group in self.groups:
            entry = group.entries.get(group.key(packet))
            if entry is not None:
                return entry
        return None


@dataclass
class FlowTableSimulator:
    """A switch's flow tables plus a clock; learned flows persist between packets."""

    clock: float = 0.0
    _tables: dict[int, _Table] = field(default_factory=dict)
    _by_key: dict[FlowKey, _Entry] = field(default_factory=dict)
    _learned: dict[int, tuple[Learned, Flow]] = field(default_factory=dict)  # id(entry) -> (entry, its flow)

    def learned_flow(self, entry: Learned) -> Flow:
        """The flow for a learn action's entry, built once per entry object (the action hands the
        same object over for the same packet bits)."""
        known = self._learned.get(id(entry))
        if known is None or known[0] is not entry:
            if len(self._learned) >= 1 << 16:
                self._learned.clear()
            known = self._learned[id(entry)] = (entry, learned_flow(entry))
        return known[1]

    @classmethod
    def of(cls, flows: Iterable[Flow]) -> FlowTableSimulator:
        simulator = cls()
        for flow in flows:
            simulator.install(flow)
        return simulator

    def install(self, flow: Flow) -> None:
        """Add, or replace the flow with the same table, priority and match."""
        old = self._by_key.get(flow.key)
        if old is not None and old.flow is flow:  # the same flow learned again: its timeouts restart
            old.installed = old.used = self.clock
            return
        if flow.match.raw:  # a part the simulator cannot evaluate: such a flow never matches
            self._by_key.pop(flow.key, None)
            return
        entry = _Entry(flow, self.clock)
        table = self._tables.setdefault(flow.table, _Table())
        if old is not None:
            table.drop(old)
        table.put(entry)
        self._by_key[flow.key] = entry

    def remove(self, key: FlowKey) -> bool:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return False
        self._tables[key[0]].drop(entry)
        return True

    def apply(self, changes: Iterable[Change]) -> None:
        """Carry out a flows.diff result, as the agent's bundle would on a switch."""
        for change in changes:
            if change.kind is Kind.DELETE:
                self.remove(change.flow.key)
            else:
                self.install(change.flow)

    def flows(self) -> list[Flow]:
        return [entry.flow for table in self._tables.values() for entry in table.entries()]

    def advance(self, seconds: float) -> list[Flow]:
        """Move the clock; return the flows whose hard or idle timeout expired."""
        self.clock += seconds
        expired = []
        for table in self._tables.values():
            for entry in table.entries():
                flow = entry.flow
                # Open vSwitch expires a flow once *more* than its timeout has passed.
                hard = flow.hard_timeout and self.clock - entry.installed > flow.hard_timeout
                idle = flow.idle_timeout and self.clock - entry.used > flow.idle_timeout
                if hard or idle:
                    table.drop(entry)
                    del self._by_key[flow.key]
                    expired.append(flow)
        return expired

    def lookup(self, table: int, packet: Mapping[str, int]) -> Flow | None:
        found = self._tables[table].lookup(packet) if table in self._tables else None
        if found is None:
            return None
        found.used = self.clock
        return found.flow

    def process(self, packet: Mapping[str, int]) -> Verdict:
        """Run one packet through the pipeline from table 0; each action executes itself.

        The tables' lookups are inlined here: this loop is what a replay spends its time in."""
        run = _Run(dict(packet), self)
        state = run.packet
        tables = self._tables
        hits: list[Hit] = []
        number: int | None = 0
        for _ in range(MAX_RESUBMITS):
            if number is None:
                break
            found = None
            table = tables.get(number)
            if table is not None:
                for group in table.groups:
                    found = group.entries.get(group.key(state))
                    if found is not None:
                        break
            if found is None:
                hits.append(tuple.__new__(Hit, (number, None)))
                break
            found.used = self.clock
            flow = found.flow
            hits.append(tuple.__new__(Hit, (number, flow)))
            for action in flow.actions:
                action.execute(state, run)
            number = flow.goto
        return Verdict(tuple(run.emitted), tuple(run.learned), tuple(hits))


class _Run(Execution):
    """One packet's way through the pipeline: what actions see besides the packet."""

    def __init__(self, packet: Packet, switch: FlowTableSimulator) -> None:
        self.packet = packet
        self.in_port = packet.get("in_port", 0)
        self.emitted: list[Emitted] = []
        self.learned: list[Flow] = []
        self._switch = switch

    def emit(self, port: int) -> None:
        tci = self.packet.get("vlan_tci", 0)
        vlan = tci & fields.VLAN_VID_MASK if tci & fields.VLAN_CFI else None
        self.emitted.append(Emitted(port, vlan, self.packet.get("tun_id", 0)))

    def learn(self, entry: Learned) -> None:
        flow = self._switch.learned_flow(entry)
        self._switch.install(flow)
        self.learned.append(flow)


def matches(match: Match, packet: Mapping[str, int]) -> bool:
    for item in match.fields:
        value = packet.get(item.name, 0)
        if item.mask is not None:
            value &= item.mask
        if value != item.value:
            return False
    return not match.raw


def learned_flow(entry: Learned) -> Flow:
    """The flow a learn action writes, as Open vSwitch builds it."""
    match = Match(tuple(MatchField(name, value, mask) for name, value, mask in entry.match))
    return Flow(entry.table, entry.priority, match, entry.actions, cookie=entry.cookie,
                idle_timeout=entry.idle_timeout, hard_timeout=entry.hard_timeout)
