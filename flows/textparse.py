"""Parse the lines `ovs-ofctl dump-flows` prints back into Flow values.

The tokenising is Open vSwitch's own Python library (`ovs.flow.ofp`);
this module only maps its dictionaries onto flows.flow and flows.actions.
Anything not modelled stays as raw text, so a foreign flow still parses
and renders back to the same line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flows import actions, fields
from flows.actions import Action, ovs_value
from flows.flow import OFP_DEFAULT_PRIORITY, SHORTHANDS, Flow, Match, MatchField

if TYPE_CHECKING:  # loading ovs.flow (pyparsing, netaddr) costs every command 30 ms: only when parsing
    from ovs.flow.kv import KeyValue
    from ovs.flow.ofp import OFPFlow


class FlowParseError(ValueError):
    pass


@dataclass(frozen=True)
class FlowStats:
    """The counters `dump-flows` prints (absent with --no-stats)."""

    packets: int | None = None
    bytes: int | None = None
    duration: float | None = None  # seconds since the flow was added
    idle_age: float | None = None  # seconds since a packet last hit it


def _parse(line: str) -> OFPFlow:
    from ovs.flow.ofp import OFPFlow

    try:
        return OFPFlow(line.strip())
    except Exception as error:  # the ovs parser raises a variety of types
        raise FlowParseError(f"cannot parse flow {line.strip()!r}: {error}") from None


def parse_flow(line: str) -> Flow:
    """One dump-flows line (with or without statistics) -> Flow."""
    return parse_flow_stats(line)[0]


def parse_flow_stats(line: str) -> tuple[Flow, FlowStats]:
    parsed = _parse(line)
    try:
        flow = _to_flow(parsed)
    except (ValueError, KeyError, TypeError) as error:
        raise FlowParseError(f"cannot read flow {line.strip()!r}: {error}") from None
    info = parsed.info
    stats = FlowStats(info.get("n_packets"), info.get("n_bytes"), info.get("duration"),
                      info.get("idle_age", info.get("duration")))
    return flow, stats


def parse_dump(text: str) -> list[Flow]:
    """Every flow line of a dump; reply headers, comments and blank lines are skipped."""
    return [parse_flow(line) for line in _flow_lines(text.splitlines())]


def parse_dump_stats(text: str) -> list[tuple[Flow, FlowStats]]:
    return [parse_flow_stats(line) for line in _flow_lines(text.splitlines())]


def _flow_lines(lines: Iterable[str]) -> Iterable[str]:
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(("OFPST_", "NXST_")):
            continue
        yield line


def _to_flow(parsed: OFPFlow) -> Flow:
    info = parsed.info
    priority = OFP_DEFAULT_PRIORITY
    items: list[MatchField] = []
    raw: list[str] = []
    vlan_tci: list[tuple[int, int]] = []  # (value, mask) pieces: dl_vlan, dl_vlan_pcp, vlan_tci
    for kv in parsed.match_kv:
        spec = fields.BY_SPELLING.get(kv.key)
        key = spec.name if spec is not None else kv.key
        if key == "priority":
            priority = int(kv.value)
        elif key in SHORTHANDS:
            eth_type, proto = SHORTHANDS[key]
            items.append(MatchField("dl_type", eth_type))
            if proto is not None:
                items.append(MatchField("nw_proto", proto))
        elif key == "dl_vlan":
            vlan_tci.append((fields.VLAN_CFI | int(kv.value), fields.VLAN_CFI | fields.VLAN_VID_MASK))
        elif key == "dl_vlan_pcp":
            vlan_tci.append((fields.VLAN_CFI | int(kv.value) << 13, fields.VLAN_CFI | 0xE000))
        elif key == "vlan_tci":
            value, mask = ovs_value(kv.value)
            vlan_tci.append((value, spec.full if mask is None else mask))
        elif spec is not None:
            value, mask = ovs_value(kv.value)
            items.append(MatchField(key, value, mask))
        else:
            raw.append(_raw_text(kv))
    if vlan_tci:
        value = mask = 0
        for piece_value, piece_mask in vlan_tci:
            value, mask = value | piece_value, mask | piece_mask
        items.append(MatchField("vlan_tci", value, mask))
    found, goto = _actions(parsed.actions_kv)
    return Flow(
        table=int(info.get("table", 0)),
        priority=priority,
        match=Match(tuple(items), tuple(raw)),
        actions=found,
        goto=goto,
        cookie=int(info.get("cookie", 0)),
        idle_timeout=int(info.get("idle_timeout", 0)),
        hard_timeout=int(info.get("hard_timeout", 0)),
    )


def _raw_text(kv: KeyValue) -> str:
    meta = kv.meta
    if not meta.vstring:
        return meta.kstring
    return f"{meta.kstring}{meta.delim}{meta.vstring}{meta.end_delim}"


def _actions(kvs: Iterable[KeyValue]) -> tuple[tuple[Action, ...], int | None]:
    """Each action through its class's declaration (flows.actions); goto and drop are instructions."""
    found: list[Action] = []
    goto = None
    for kv in kvs:
        if kv.key == "drop":
            continue
        if kv.key == "goto_table":
            goto = int(kv.value)
        else:
            found.append(actions.from_text(kv.key, kv.value, _raw_text(kv)))
    return tuple(found), goto
