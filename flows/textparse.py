"""Parse the lines `ovs-ofctl dump-flows` prints back into Flow values.

The tokenising is Open vSwitch's own Python library (`ovs.flow.ofp`);
this module only maps its dictionaries onto flows.flow and flows.actions.
Anything not modelled stays as raw text, so a foreign flow still parses
and renders back to the same line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ovs.flow.decoders import EthMask, IntMask, IPMask
from ovs.flow.kv import KeyValue
from ovs.flow.ofp import OFPFlow

from flows import fields
from flows.actions import (
    Action,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    LearnSpec,
    Load,
    Move,
    Output,
    PopVlan,
    PushVlan,
    RawAction,
    SetField,
    Subfield,
)
from flows.flow import OFP_DEFAULT_PRIORITY, SHORTHANDS, Flow, Match, MatchField

# Other spellings Open vSwitch accepts for the fields it prints under another name.
_ALIASES = {"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "ip_proto": "nw_proto",
            "tunnel_id": "tun_id", "ip_src": "nw_src", "ip_dst": "nw_dst",
            "icmpv6_type": "icmp_type", "icmpv6_code": "icmp_code"}


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
        key = _ALIASES.get(kv.key, kv.key)
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
            vlan_tci.append(_int_mask(kv.value))
        elif key in fields.BY_NAME and fields.BY_NAME[key] is not fields.VLAN_VID:
            value, mask = _value_mask(kv.value)
            items.append(MatchField(key, value, mask))
        else:
            raw.append(_raw_text(kv))
    if vlan_tci:
        value = mask = 0
        for piece_value, piece_mask in vlan_tci:
            value, mask = value | piece_value, mask | piece_mask
        items.append(MatchField("vlan_tci", value, mask))
    actions, goto = _actions(parsed.actions_kv)
    return Flow(
        table=int(info.get("table", 0)),
        priority=priority,
        match=Match(tuple(items), tuple(raw)),
        actions=actions,
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


def _int_mask(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, 0xFFFF
    return int(value.value), int(value.mask)


def _value_mask(value: Any) -> tuple[int, int | None]:
    """The ovs decoders' value types -> (int, int mask or None)."""
    if isinstance(value, bool):
        raise TypeError("unexpected flag")
    if isinstance(value, int):
        return value, None
    if isinstance(value, EthMask):
        return int(value.eth), None if value.mask is None else int(value.mask)
    if isinstance(value, IPMask):
        return int(value.ip), int(value.mask)
    if isinstance(value, IntMask):
        return int(value.value), int(value.mask)
    raise TypeError(f"unexpected value {value!r}")


def _port(value: Any) -> int:
    if isinstance(value, int):
        return value
    return fields.PORT_BY_NAME[str(value).upper()]


def _subfield(value: dict[str, Any]) -> Subfield:
    if "start" in value:
        return Subfield(value["field"], int(value["start"]), int(value["end"]) - int(value["start"]) + 1)
    return Subfield(value["field"])


def _actions(kvs: Iterable[KeyValue]) -> tuple[tuple[Action, ...], int | None]:
    actions: list[Action] = []
    goto = None
    for kv in kvs:
        key, value = kv.key, kv.value
        if key == "drop":
            continue
        if key == "goto_table":
            goto = int(value)
        elif key == "output" and isinstance(value, dict) and "port" in value:
            actions.append(Output(_port(value["port"])))
        elif key == "CONTROLLER":
            max_len = value.get("max_len", 65535) if isinstance(value, dict) else 65535
            actions.append(Output(fields.OFPP_CONTROLLER, int(max_len)))
        elif key == "push_vlan":
            actions.append(PushVlan(int(value)))
        elif key in ("pop_vlan", "strip_vlan"):
            actions.append(PopVlan())
        elif key == "set_field" and value["dst"]["field"] in fields.BY_MF_NAME:
            name = value["dst"]["field"]
            actions.append(SetField(name, _value_mask(value["value"][name])[0]))
        elif key == "move":
            actions.append(Move(_subfield(value["src"]), _subfield(value["dst"])))
        elif key == "load" and "value" in value:
            actions.append(Load(_subfield(value["dst"]), int(value["value"])))
        elif key == "learn":
            actions.append(_learn(value))
        else:
            actions.append(RawAction(_raw_text(kv)))
    return tuple(actions), goto


def _learn(items: list[dict[str, Any]]) -> Learn:
    settings: dict[str, int] = {}
    specs: list[LearnSpec] = []
    for item in items:
        (key, value), = item.items()
        if key in ("table", "priority", "idle_timeout", "hard_timeout", "cookie"):
            settings[key] = int(value)
        elif key == "load":
            source = _subfield(value["src"]) if "src" in value else int(value["value"])
            specs.append(LearnLoad(_subfield(value["dst"]), source))
        elif key == "output":
            specs.append(LearnOutput(Subfield.parse(value["port"])))
        elif "[" in key:
            destination = Subfield.parse(key)
            source = _subfield(value) if isinstance(value, dict) else int(value)
            specs.append(LearnMatch(destination, source))
        elif key in fields.BY_MF_NAME and fields.BY_MF_NAME[key].nxm:
            specs.append(LearnMatch(Subfield.of(fields.BY_MF_NAME[key]), _value_mask(value)[0]))
        else:
            raise ValueError(f"learn specification {key}={value} is not supported")
    return Learn(specs=tuple(specs), **settings)
