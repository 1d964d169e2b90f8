"""Desired flows vs installed flows -> the fewest changes, in an order that never stops traffic.

Ownership is by cookie: a flow with our cookie is ours; any other is
foreign, reported and never touched (not even when it occupies the place
of one of ours: that is a conflict, reported).  Learned flows (table 20,
priority 1, our cookie: the learn action stamps it) belong to the switch's
MAC learning, so a plain diff keeps them; it deletes one only when it has
gone stale (docs/PIPELINE.md, "Stale learned flows"): its local VLAN no longer
maps to the key it loads, or the tunnel port it outputs to is gone.

Order: adds from the last table back, so that a path is complete before
traffic is steered into it; then modifies; then deletes from the first
table on, so that traffic stops entering a path before its end goes.

Installed flows read from a switch come as flows.wire.InstalledFlows: an
entry byte-equal to a desired flow's encoding is that flow, unchanged, and
is neither decoded nor compared field by field (at 50,000 flows that is
the difference between a restart bound by Python and one bound by the
switch).  The result is the same as comparing every flow as a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from flows import fields
from flows.actions import Load, Output, PushVlan, SetField
from flows.flow import Flow, FlowKey, StatsKey
from flows.ofp import Unsupported
from flows.tables import LOCAL_SWITCHING, PRIORITY_ENTRY, TUN_TABLE, UCAST_TO_TUN
from flows.wire import InstalledFlows


class Kind(Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    flow: Flow  # the flow to add, the new version, or the flow to delete
    old: Flow | None = None  # for MODIFY: what the switch holds now
    reason: str = ""

    @property
    def command(self) -> str:
        """The flow-mod that carries it out: add, strict modify or strict delete.

        A modify keeps the flow's counters (OFPFC_MODIFY_STRICT), but OpenFlow
        1.3 lets it change only the instructions; when the timeouts differ the
        flow is replaced with an add of the same identity instead."""
        if self.kind is Kind.MODIFY and self.old is not None and (
                self.old.idle_timeout, self.old.hard_timeout) != (self.flow.idle_timeout, self.flow.hard_timeout):
            return "add"
        return self.kind.value

    def render(self) -> str:
        sign = {Kind.ADD: "+", Kind.MODIFY: "~", Kind.DELETE: "-"}[self.kind]
        text = f"{sign}{self.flow.render()}"
        return f"{text}  # {self.reason}" if self.reason else text


@dataclass(frozen=True)
class Diff:
    changes: tuple[Change, ...] = ()
    foreign: tuple[Flow, ...] = ()  # other cookies: never touched
    learned: tuple[Flow, ...] = ()  # learned flows kept (a taken-over cookie's among them)
    conflicts: tuple[tuple[Flow, Flow], ...] = field(default=())  # (desired, foreign in its place)
    taken: tuple[Flow, ...] = ()  # flows of a taken-over cookie that the changes replace or delete

    @property
    def in_sync(self) -> bool:
        return not self.changes and not self.conflicts

    def of_kind(self, kind: Kind) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.kind is kind)


def is_learned(flow: Flow, cookie: int) -> bool:
    """Written by table 10's learn action (docs/PIPELINE.md: table 20, priority 1, our cookie)."""
    return flow.cookie == cookie and flow.table == UCAST_TO_TUN and flow.priority == PRIORITY_ENTRY


@dataclass(frozen=True)
class _Wiring:
    """What makes a learned flow valid, read off the desired flows."""

    vlan_key_type: frozenset[tuple[int, int, int]]  # (local VLAN, key, tunnel table)
    port_type: dict[int, int]  # tunnel ofport -> its tunnel table


def _wiring(desired: Iterable[Flow]) -> _Wiring:
    vlan_key_type = set()
    port_type = {}
    tunnel_tables = set(TUN_TABLE.values())
    for flow in desired:
        if flow.table in tunnel_tables and PushVlan() in flow.actions:
            key = flow.match.value("tun_id")
            vlans = [a.value for a in flow.actions if isinstance(a, SetField) and a.field == "vlan_vid"]
            if key is not None and vlans:
                vlan_key_type.add((vlans[0] & fields.VLAN_VID_MASK, key, flow.table))
        if flow.table == LOCAL_SWITCHING and flow.goto in tunnel_tables:
            port = flow.match.value("in_port")
            if port is not None:
                port_type[port] = flow.goto
    return _Wiring(frozenset(vlan_key_type), port_type)


def stale_reason(flow: Flow, wiring: _Wiring) -> str | None:
    """Why a learned flow must go, or None if it is still right."""
    tci = flow.match.get("vlan_tci")
    loads = {a.dst.field: a.value for a in flow.actions if isinstance(a, Load)}
    outputs = [a.port for a in flow.actions if isinstance(a, Output)]
    if tci is None or "NXM_NX_TUN_ID" not in loads or len(outputs) != 1:
        return "not the shape table 10 learns"
    vlan, key, port = tci.value & fields.VLAN_VID_MASK, loads["NXM_NX_TUN_ID"], outputs[0]
    table = wiring.port_type.get(port)
    if table is None:
        return f"tunnel port {port} is gone"
    if (vlan, key, table) not in wiring.vlan_key_type:
        return f"local VLAN {vlan} no longer carries key {key:#x}"
    return None


def forgotten(flow: Flow, forget: frozenset[tuple[int, int]]) -> str | None:
    """Why a learned flow goes although its VLAN and port still stand: its MAC's port left (or None)."""
    tci, mac = flow.match.get("vlan_tci"), flow.match.value("dl_dst")
    if tci is not None and mac is not None and (tci.value & fields.VLAN_VID_MASK, mac) in forget:
        return f"its port ({fields.mac_text(mac)}) left the host it was learned on"
    return None


def _by_encoding(desired: tuple[Flow, ...]) -> dict[StatsKey, Flow]:
    """Desired flows by the key their flow-stats entry will have (those flows.wire can encode)."""
    index = {}
    for flow in desired:
        try:
            index[flow.encoded.key] = flow
        except (Unsupported, KeyError):
            continue  # compared as a value instead
    return index


def _ordered_adds(adds: list[Change]) -> list[Change]:
    """From the last table back (docs/PIPELINE.md), in the desired (pipeline) order within a table
    and priority: a stable sort, deterministic because the pipeline is, and no rendering of every
    flow of a cold start."""
    adds.sort(key=lambda change: (-change.flow.table, -change.flow.priority))
    return adds


def diff(desired: Iterable[Flow], installed: Iterable[Flow], cookie: int,
         takeover: frozenset[int] = frozenset(), forget: frozenset[tuple[int, int]] = frozenset()) -> Diff:
    """The changes that make `installed` hold `desired`.

    `takeover`: other cookies whose flows become ours (a node Neutron's agent
    programmed, `brtun run --takeover`): such a flow where a desired flow
    belongs is replaced in place (an add of the same table, priority and
    match: the switch swaps it atomically, no packet sees a gap), a learned
    one is kept unless stale, and the rest is deleted.

    `forget`: (local VLAN, MAC) pairs whose learned flows go too, stale or not (their port left
    the host the flow points at: flows.transition.forgotten_macs)."""
    desired = tuple(desired)
    left = desired  # desired flows not yet known to be installed unchanged
    if isinstance(installed, InstalledFlows) and len(installed):
        unchanged, installed = installed.split(_by_encoding(desired))
        settled = {id(flow) for flow in unchanged}
        left = tuple(flow for flow in desired if id(flow) not in settled)
    installed = tuple(installed)
    if not installed:  # an empty switch (a cold start): every flow is an add, no flow's key is needed
        return Diff(tuple(_ordered_adds([Change(Kind.ADD, flow) for flow in left])))
    wanted: dict[FlowKey, Flow] = {flow.key: flow for flow in left}
    if len(wanted) != len(left):
        raise ValueError("desired flows repeat an identity (table, priority, match)")
    present: set[FlowKey] = set()
    wiring: _Wiring | None = None
    adds, modifies, deletes = [], [], []
    foreign, learned, conflicts, taken = [], [], [], []
    for flow in installed:
        target = wanted.get(flow.key)
        theirs = flow.cookie != cookie
        if theirs and flow.cookie not in takeover:
            foreign.append(flow)
            if target is not None:
                conflicts.append((target, flow))
                present.add(flow.key)
            continue
        whose = f"taken over from cookie {flow.cookie:#x}: " if theirs else ""
        if target is None and is_learned(flow, flow.cookie):
            wiring = wiring or _wiring(desired)
            reason = stale_reason(flow, wiring) or (forgotten(flow, forget) if forget else None)
            if reason is None:
                learned.append(flow)
            else:
                deletes.append(Change(Kind.DELETE, flow, reason=f"{whose}stale learned flow: {reason}"))
                taken += [flow] if theirs else []
            continue
        if target is None:
            deletes.append(Change(Kind.DELETE, flow, reason=f"{whose}not in the desired pipeline"))
            taken += [flow] if theirs else []
            continue
        present.add(flow.key)
        if theirs:
            adds.append(Change(Kind.ADD, target, old=flow, reason=f"{whose}replaced in place"))
            taken.append(flow)
        elif not target.same_effect(flow):
            modifies.append(Change(Kind.MODIFY, target, old=flow))
    adds += [Change(Kind.ADD, flow) for key, flow in wanted.items() if key not in present]
    _ordered_adds(adds)
    modifies.sort(key=lambda c: (-c.flow.table, -c.flow.priority, c.flow.render()))
    deletes.sort(key=lambda c: (c.flow.table, -c.flow.priority, c.flow.render()))
    return Diff(tuple(adds + modifies + deletes), tuple(foreign), tuple(learned), tuple(conflicts), tuple(taken))
