"""br-tun's tables, declared once (neutron-lib `ovs_constants`).

Every flow the pipeline builds is checked against its table's declaration:
a match on a field the table does not classify by, a goto to a table it
does not feed, or a set_field it has no business doing is a programming
error caught when the flow is built, not a silent black hole on a switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.actions import Learn, Load, Move, SetField
from flows.flow import Flow

LOCAL_SWITCHING = 0
PATCH_LV_TO_TUN = 2
GRE_TUN_TO_LV = 3
VXLAN_TUN_TO_LV = 4
GENEVE_TUN_TO_LV = 6
LEARN_FROM_TUN = 10
UCAST_TO_TUN = 20
ARP_RESPONDER = 21
FLOOD_TO_TUN = 22

TUN_TABLE = {"gre": GRE_TUN_TO_LV, "vxlan": VXLAN_TUN_TO_LV, "geneve": GENEVE_TUN_TO_LV}

# Priorities Neutron's br_tun.py uses, named for what they mean.
PRIORITY_DEFAULT = 0  # table-miss: drop or go on
PRIORITY_ENTRY = 1  # the per-port / per-network / learned entries
PRIORITY_L2POP_UNICAST = 2  # l2population unicast, above learned (1)
PRIORITY_LEARN_ANNOUNCE = 2  # table 10: learn from GARP / RA / NA first


@dataclass(frozen=True)
class TableSpec:
    number: int
    name: str  # Neutron's constant name
    role: str
    matches: frozenset[str]  # match fields (flows.fields names) flows may use
    goto: frozenset[int]
    sets: frozenset[str] = frozenset()  # set_field / move / load targets (mf or NXM names)
    learns_into: frozenset[int] = frozenset()


def _spec(number: int, name: str, role: str, matches: set[str], goto: set[int],
          sets: set[str] | None = None, learns_into: set[int] | None = None) -> TableSpec:
    return TableSpec(number, name, role, frozenset(matches), frozenset(goto),
                     frozenset(sets or ()), frozenset(learns_into or ()))


_TUN_TO_LV_ROLE = "tun_id -> push the network's local VLAN, goto 10; default drop"
_ARP_REPLY_SETS = {"arp_op", "arp_sha", "arp_spa", "eth_src", "NXM_NX_ARP_THA",
                   "NXM_OF_ARP_TPA", "NXM_OF_ETH_DST"}

TABLES: dict[int, TableSpec] = {spec.number: spec for spec in (
    _spec(LOCAL_SWITCHING, "LOCAL_SWITCHING",
          "classify by in_port: patch-int -> 2, tunnel port -> its type's table; else drop",
          {"in_port"}, {PATCH_LV_TO_TUN, *TUN_TABLE.values()}),
    _spec(PATCH_LV_TO_TUN, "PATCH_LV_TO_TUN",
          "from br-int: unicast -> 20, broadcast/multicast -> 22 (ARP broadcast -> 21)",
          {"dl_dst", "dl_type"}, {UCAST_TO_TUN, ARP_RESPONDER, FLOOD_TO_TUN}),
    _spec(GRE_TUN_TO_LV, "GRE_TUN_TO_LV", _TUN_TO_LV_ROLE, {"tun_id"}, {LEARN_FROM_TUN}, {"vlan_vid"}),
    _spec(VXLAN_TUN_TO_LV, "VXLAN_TUN_TO_LV", _TUN_TO_LV_ROLE, {"tun_id"}, {LEARN_FROM_TUN}, {"vlan_vid"}),
    _spec(GENEVE_TUN_TO_LV, "GENEVE_TUN_TO_LV", _TUN_TO_LV_ROLE, {"tun_id"}, {LEARN_FROM_TUN}, {"vlan_vid"}),
    _spec(LEARN_FROM_TUN, "LEARN_FROM_TUN",
          "learn the remote MAC -> tunnel port into 20, then output to patch-int",
          {"dl_type", "nw_proto", "arp_tha", "icmp_type"}, set(), learns_into={UCAST_TO_TUN}),
    _spec(UCAST_TO_TUN, "UCAST_TO_TUN",
          "learned (1) and l2population (2) unicast entries; default goto 22",
          {"vlan_tci", "dl_dst"}, {FLOOD_TO_TUN}, {"tun_id", "NXM_OF_VLAN_TCI", "NXM_NX_TUN_ID"}),
    _spec(ARP_RESPONDER, "ARP_RESPONDER",
          "answer ARP for known remote IPv4/MAC pairs locally; default goto 22",
          {"dl_type", "vlan_tci", "arp_tpa"}, {FLOOD_TO_TUN}, _ARP_REPLY_SETS),
    _spec(FLOOD_TO_TUN, "FLOOD_TO_TUN",
          "local VLAN -> pop VLAN, set tun_id, output to the network's tunnel ports; default drop",
          {"vlan_tci"}, set(), {"tun_id"}),
)}


class TableViolation(ValueError):
    """A flow that its table's declaration does not allow."""


def table_name(number: int) -> str:
    spec = TABLES.get(number)
    return spec.name if spec else f"table {number}"


_WHERE = {number: f"{spec.name} (table {spec.number})" for number, spec in TABLES.items()}  # for errors


def check(flow: Flow) -> Flow:
    """Return the flow if its table's declaration allows it, else raise TableViolation."""
    spec = TABLES.get(flow.table)
    if spec is None:
        raise TableViolation(f"table {flow.table} is not a br-tun table")
    where = _WHERE[flow.table]
    for item in flow.match.fields:
        if item.name not in spec.matches:
            raise TableViolation(f"{where} does not match on {item.name}: {flow.render()}")
    if flow.match.raw:
        raise TableViolation(f"{where}: unmodelled match {flow.match.raw}")
    if flow.goto is not None and flow.goto not in spec.goto:
        raise TableViolation(f"{where} may not go to table {flow.goto}: {flow.render()}")
    for action in flow.actions:
        target = _target(action)
        if target is not None and target not in spec.sets:
            raise TableViolation(f"{where} may not set {target}: {flow.render()}")
        if isinstance(action, Learn) and action.table not in spec.learns_into:
            raise TableViolation(f"{where} may not learn into table {action.table}")
    return flow


def _target(action: object) -> str | None:
    if isinstance(action, SetField):
        return action.field
    if isinstance(action, (Move, Load)):
        return action.dst.field
    return None
