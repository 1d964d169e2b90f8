"""The reference brtun's wire codec is held to: Flow values <-> os-ken's OpenFlow 1.3 message objects.

brtun encodes and decodes OpenFlow itself (flows.wire, from the declarations
in flows.fields and flows.actions); these conversions build the same flows
with os-ken, the OpenFlow library of record, so that the tests can compare
bytes and decoded flows with os-ken's.  They take a `datapath` for its
`ofproto`/`ofproto_parser` (os-ken's `ProtocolDesc` in the tests).

Two things the switch does that these conversions undo, so a flow read
back equals the flow sent: Open vSwitch reports a drop flow with no
instructions at all, and reports the learned flows' VLAN match as
OpenFlow 1.3 `vlan_vid` (value, mask) and their loads as NXAST_REG_LOAD.
"""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import nicira_ext

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
)
from flows.diff import Change
from flows.fields import Field, Notation, Subfield
from flows.flow import Flow, Match, MatchField

Datapath = Any  # os-ken Datapath or ProtocolDesc: anything with ofproto and ofproto_parser


# os-ken's keyword for each field: the OXM/NXM names (os-ken spells Nicira's as `<oxm>_nxm`).
BY_OSKEN: dict[str, Field] = {}
for _field in (*fields.FIELDS, fields.VLAN_VID):
    for _header in (_field.oxm, _field.oxm_ipv6):
        if _header is not None:
            BY_OSKEN[_header.name] = BY_OSKEN[_header.name + "_nxm"] = _field
BY_OSKEN["vlan_tci"] = fields.BY_NAME["vlan_tci"]


def osken_name(field: Field) -> str:
    """os-ken's name for a field in move/load/learn, where Nicira-only fields (vlan_tci) are allowed."""
    return field.oxm.name if field.oxm is not None else field.name


class Unconvertible(ValueError):
    """A flow this module cannot express as an os-ken message (a foreign, raw part)."""


# ----- Flow -> os-ken ------------------------------------------------------

def to_match(dp: Datapath, match: Match) -> Any:
    if match.raw:
        raise Unconvertible(f"cannot encode raw match {match.raw}")
    eth_type = match.value("dl_type")
    kwargs: dict[str, Any] = {}
    for item in match.fields:
        spec = fields.BY_NAME[item.name]
        if item.name == "vlan_tci":
            kwargs.update(_vlan_match(item))
            continue
        name = _oxm_name(item.name, eth_type)
        value: Any = item.value
        mask: Any = item.mask
        if spec.notation is Notation.MAC:
            value = fields.mac_text(item.value)
            mask = None if mask is None else fields.mac_text(mask)
        elif spec.notation is Notation.IPV4:
            value = fields.ipv4_text(item.value)
            mask = None if mask is None else fields.ipv4_text(mask)
        kwargs[name] = value if mask is None else (value, mask)
    return dp.ofproto_parser.OFPMatch(**kwargs)


def _oxm_name(name: str, eth_type: int | None) -> str:
    if name in ("icmp_type", "icmp_code"):
        family = "icmpv6" if eth_type == fields.ETH_TYPE_IPV6 else "icmpv4"
        return f"{family}_{name.split('_')[1]}"
    if name in ("tp_src", "tp_dst"):
        raise Unconvertible("tp_src/tp_dst need the transport protocol; not used by br-tun")
    oxm = fields.BY_NAME[name].oxm
    assert oxm is not None
    return oxm.name


def _vlan_match(item: MatchField) -> dict[str, Any]:
    """OpenFlow 1.3 vlan_vid is the TCI's low 13 bits (OFPVID_PRESENT = CFI)."""
    mask = 0xFFFF if item.mask is None else item.mask
    if mask & 0xE000:
        return {"vlan_tci": item.value if item.mask is None else (item.value, item.mask)}
    vid, vid_mask = item.value & 0x1FFF, mask & 0x1FFF
    return {"vlan_vid": vid if vid_mask == 0x1FFF else (vid, vid_mask)}


def _osken_field(subfield: Subfield) -> str:
    spec = fields.BY_NXM.get(subfield.field)
    if spec is None:
        raise Unconvertible(f"field {subfield.field} is not known to brtun")
    return osken_name(spec)


def _learn_source(dp: Datapath, source: Subfield | int) -> Any:
    return source if isinstance(source, int) else (_osken_field(source), source.start)


def _learn_spec(dp: Datapath, spec: LearnSpec) -> Any:
    parser = dp.ofproto_parser
    if isinstance(spec, LearnOutput):
        return parser.NXFlowSpecOutput(src=(_osken_field(spec.src), spec.src.start), dst="",
                                       n_bits=spec.src.n_bits)
    kind = parser.NXFlowSpecMatch if isinstance(spec, LearnMatch) else parser.NXFlowSpecLoad
    return kind(src=_learn_source(dp, spec.src), dst=(_osken_field(spec.dst), spec.dst.start),
                n_bits=spec.dst.n_bits)


def to_action(dp: Datapath, action: Action) -> Any:
    parser = dp.ofproto_parser
    if isinstance(action, Output):
        return parser.OFPActionOutput(action.port, action.max_len)
    if isinstance(action, PushVlan):
        return parser.OFPActionPushVlan(action.ethertype)
    if isinstance(action, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(action, SetField):
        spec = fields.BY_SET_NAME[action.field]
        value: Any = action.value
        if spec.notation is Notation.MAC:
            value = fields.mac_text(value)
        elif spec.notation is Notation.IPV4:
            value = fields.ipv4_text(value)
        if spec.oxm is None:
            raise Unconvertible(f"set_field of {action.field} has no OpenFlow 1.3 form")
        return parser.OFPActionSetField(**{spec.oxm.name: value})
    if isinstance(action, Move):
        return parser.NXActionRegMove(src_field=_osken_field(action.src), dst_field=_osken_field(action.dst),
                                      n_bits=action.src.n_bits, src_ofs=action.src.start,
                                      dst_ofs=action.dst.start)
    if isinstance(action, Load):
        assert action.dst.n_bits is not None
        last_bit = action.dst.start + action.dst.n_bits - 1
        return parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(action.dst.start, last_bit),
                                      dst=_osken_field(action.dst), value=action.value)
    if isinstance(action, Learn):
        return parser.NXActionLearn(table_id=action.table, priority=action.priority,
                                    idle_timeout=action.idle_timeout, hard_timeout=action.hard_timeout,
                                    cookie=action.cookie,
                                    specs=[_learn_spec(dp, spec) for spec in action.specs])
    raise Unconvertible(f"cannot encode action {action.render()}")


def to_instructions(dp: Datapath, flow: Flow) -> list[Any]:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    instructions = []
    if flow.actions:
        instructions.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [to_action(dp, action) for action in flow.actions]))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return instructions


def flow_mod(dp: Datapath, flow: Flow, command: str = "add") -> Any:
    """add, modify (strict: instructions only) or delete (strict, only if the cookie is ours)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    commands = {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT,
                "delete": ofp.OFPFC_DELETE_STRICT}
    deleting = command == "delete"
    return parser.OFPFlowMod(
        dp,
        cookie=flow.cookie,
        # A strict delete or modify that also checks the cookie cannot touch
        # a foreign flow that happens to share the match.
        cookie_mask=0xFFFFFFFFFFFFFFFF if command != "add" else 0,
        table_id=flow.table,
        command=commands[command],
        idle_timeout=flow.idle_timeout,
        hard_timeout=flow.hard_timeout,
        priority=flow.priority,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=to_match(dp, flow.match),
        instructions=[] if deleting else to_instructions(dp, flow),
    )


# ----- os-ken -> Flow ------------------------------------------------------

def from_match(match: Any) -> Match:
    items = []
    raw = []
    present = dict(match.items())
    for name, value in present.items():
        if name in ("vlan_vid", "vlan_vid_nxm"):
            vid, mask = value if isinstance(value, tuple) else (value, 0x1FFF)
            items.append(MatchField("vlan_tci", vid, mask))
            continue
        if name in ("icmpv4_type", "icmpv6_type", "icmpv4_code", "icmpv6_code") or \
                name.removesuffix("_nxm") in ("icmpv4_type", "icmpv6_type", "icmpv4_code", "icmpv6_code"):
            target = "icmp_" + name.removesuffix("_nxm").split("_")[1]
            items.append(MatchField(target, *_split(value)))
            continue
        spec = BY_OSKEN.get(name)
        if spec is None or spec is fields.VLAN_VID:
            raw.append(f"{name}={value}")
            continue
        number, mask = _split(value)
        if spec.notation is Notation.MAC:
            number, mask = _mac_pair(value)
        elif spec.notation is Notation.IPV4:
            number, mask = _ipv4_pair(value)
        items.append(MatchField(spec.name, number, mask))
    return Match(tuple(items), tuple(raw))


def _split(value: Any) -> tuple[int, int | None]:
    return (value[0], value[1]) if isinstance(value, tuple) else (value, None)


def _mac_pair(value: Any) -> tuple[int, int | None]:
    text, mask = value if isinstance(value, tuple) else (value, None)
    return fields.mac_value(text), None if mask is None else fields.mac_value(mask)


def _ipv4_pair(value: Any) -> tuple[int, int | None]:
    text, mask = value if isinstance(value, tuple) else (value, None)
    return fields.ipv4_value(text), None if mask is None else fields.ipv4_value(mask)


def _subfield(name: str, start: int, n_bits: int) -> Subfield:
    spec = BY_OSKEN.get(name)
    if spec is None or spec.subfield_name is None:
        raise Unconvertible(f"field {name} is not known to brtun")
    return Subfield(spec.subfield_name, start, n_bits)


def _from_learn_spec(spec: Any) -> LearnSpec:
    dst = None
    if spec.dst:
        dst = _subfield(spec.dst[0], spec.dst[1], spec.n_bits)
    source: Subfield | int = spec.src if isinstance(spec.src, int) else \
        _subfield(spec.src[0], spec.src[1], spec.n_bits)
    kind = type(spec).__name__
    if kind == "NXFlowSpecOutput":
        assert isinstance(source, Subfield)
        return LearnOutput(source)
    assert dst is not None
    return LearnMatch(dst, source) if kind == "NXFlowSpecMatch" else LearnLoad(dst, source)


def from_action(action: Any) -> Action:
    kind = type(action).__name__
    if kind == "OFPActionOutput":
        return Output(action.port, action.max_len if action.port == fields.OFPP_CONTROLLER else 0)
    if kind == "OFPActionPushVlan":
        return PushVlan(action.ethertype)
    if kind == "OFPActionPopVlan":
        return PopVlan()
    if kind == "OFPActionSetField":
        spec = BY_OSKEN.get(action.key)
        if spec is None or spec.set_name is None:
            return RawAction(f"set_field:{action.value}->{action.key}")
        number = action.value
        if spec.notation is Notation.MAC:
            number = fields.mac_value(number)
        elif spec.notation is Notation.IPV4:
            number = fields.ipv4_value(number)
        return SetField(spec.set_name, number)
    if kind == "NXActionRegMove":
        return Move(_subfield(action.src_field, action.src_ofs, action.n_bits),
                    _subfield(action.dst_field, action.dst_ofs, action.n_bits))
    if kind == "NXActionRegLoad":
        start, n_bits = action.ofs_nbits >> 6, (action.ofs_nbits & 0x3F) + 1
        return Load(_subfield(action.dst, start, n_bits), action.value)
    if kind == "NXActionLearn":
        return Learn(table=action.table_id, priority=action.priority, idle_timeout=action.idle_timeout,
                     hard_timeout=action.hard_timeout, cookie=action.cookie,
                     specs=tuple(_from_learn_spec(spec) for spec in action.specs))
    return RawAction(repr(action))


def from_flow_stats(stats: Any) -> Flow:
    """An os-ken OFPFlowStats entry (or a parsed OFPFlowMod) -> Flow."""
    actions: list[Action] = []
    goto = None
    for instruction in stats.instructions:
        kind = type(instruction).__name__
        if kind == "OFPInstructionGotoTable":
            goto = instruction.table_id
        elif kind == "OFPInstructionActions" and instruction.type == 4:  # OFPIT_APPLY_ACTIONS
            for action in instruction.actions:
                try:
                    actions.append(from_action(action))
                except (Unconvertible, KeyError, ValueError):
                    actions.append(RawAction(repr(action)))
        else:
            actions.append(RawAction(repr(instruction)))
    return Flow(
        table=stats.table_id,
        priority=stats.priority,
        match=from_match(stats.match),
        actions=tuple(actions),
        goto=goto,
        cookie=stats.cookie,
        idle_timeout=stats.idle_timeout,
        hard_timeout=stats.hard_timeout,
    )


def change_message(dp: Datapath, change: Change) -> Any:
    """The flow-mod that carries out one diff change (`Change.command` says which)."""
    return flow_mod(dp, change.flow, change.command)
