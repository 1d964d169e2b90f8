"""Say what each installed br-tun flow is, in the config's words.

Pure: from the bridge model (networks, local VLANs, keys, tunnel ports and
the hosts behind them) and the flows read off a switch, an annotation per
flow: static (ours, from the pipeline), learned (ours, written by table
10's learn action) or foreign (another cookie), and what it does for which
network, VLAN, key and remote host.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows import fields, tables
from flows.actions import Learn, Load, Output, SetField
from flows.diff import is_learned
from flows.flow import Flow
from flows.model import BridgeModel
from flows.naming import PATCH_INT


@dataclass(frozen=True)
class Annotation:
    kind: str  # static | learned | foreign
    text: str


@dataclass(frozen=True)
class Context:
    """What the annotations refer to, from the model of one host's br-tun."""

    cookie: int
    vlan_network: dict[int, str]
    key_network: dict[tuple[int, int], str]  # (tunnel table, key) -> network
    network_vlan: dict[str, int]
    network_key: dict[str, int]
    port_label: dict[int, str]  # ofport -> "gre-c0a8640d (compute2)"
    mac_owner: dict[int, str]  # remote MAC -> "compute2's port on net2"
    ip_owner: dict[int, str]


def context(model: BridgeModel) -> Context:
    port_label = {model.patch_int_ofport: f"{PATCH_INT} (br-int)"}
    for port in model.tunnel_ports:
        port_label[port.ofport] = f"{port.name} ({port.remote_host})"
    mac_owner = {p.mac: f"{p.host}'s port on {p.network}" for p in model.remote_ports}
    ip_owner = {p.ip: f"{fields.mac_text(p.mac)}" for p in model.remote_ports}
    return Context(
        model.cookie,
        {n.local_vlan: n.name for n in model.networks},
        {(tables.TUN_TABLE[n.type], n.segmentation_id): n.name for n in model.networks},
        {n.name: n.local_vlan for n in model.networks},
        {n.name: n.segmentation_id for n in model.networks},
        port_label, mac_owner, ip_owner)


def _port(ctx: Context, port: int) -> str:
    return ctx.port_label.get(port, f"port {port} (not a port of this config)")


def _vlan(ctx: Context, vlan: int | None) -> str:
    if vlan is None:
        return "no VLAN"
    network = ctx.vlan_network.get(vlan)
    return f"VLAN {vlan} ({network})" if network else f"VLAN {vlan} (no network here)"


def _outputs(ctx: Context, flow: Flow) -> list[str]:
    return [_port(ctx, a.port) if a.port != fields.OFPP_IN_PORT else "back where it came from"
            for a in flow.actions if isinstance(a, Output)]


def _key(flow: Flow) -> int | None:
    for action in flow.actions:
        if isinstance(action, SetField) and action.field == "tun_id":
            return action.value
        if isinstance(action, Load) and action.dst.field == "NXM_NX_TUN_ID":
            return action.value
    return None


def annotate(ctx: Context, flow: Flow) -> Annotation:
    if flow.cookie != ctx.cookie:
        return Annotation("foreign", f"cookie {flow.cookie:#x} is not brtun's ({ctx.cookie:#x}): never touched")
    if is_learned(flow, ctx.cookie):
        return Annotation("learned", _learned(ctx, flow))
    return Annotation("static", _static(ctx, flow))


def _learned(ctx: Context, flow: Flow) -> str:
    tci = flow.match.get("vlan_tci")
    vlan = tci.value & fields.VLAN_VID_MASK if tci else None
    mac = flow.match.value("dl_dst")
    key = _key(flow)
    where = ", ".join(_outputs(ctx, flow)) or "nowhere"
    network = ctx.vlan_network.get(vlan) if vlan is not None else None
    stale = "" if network and ctx.network_key.get(network) == key else "  STALE: VLAN no longer carries this key"
    return (f"learned {fields.mac_text(mac) if mac is not None else '?'} on {_vlan(ctx, vlan)}: "
            f"key {key:#x} to {where}{stale}" if key is not None else "learned flow of an unknown shape")


def _static(ctx: Context, flow: Flow) -> str:
    table = flow.table
    goto = f"table {flow.goto} ({tables.table_name(flow.goto)})" if flow.goto is not None else None
    if not flow.actions and flow.goto is None:
        return "anything else: drop" if flow.priority == 0 else "drop"
    if table == tables.LOCAL_SWITCHING:
        port = flow.match.value("in_port")
        return f"from {_port(ctx, port) if port is not None else 'any port'} -> {goto}"
    if table == tables.PATCH_LV_TO_TUN:
        dst = flow.match.get("dl_dst")
        if flow.match.value("dl_type") == fields.ETH_TYPE_ARP:
            return f"ARP broadcast from br-int -> {goto}"
        if dst is not None and dst.value & 0x010000000000:
            return f"broadcast and multicast from br-int -> {goto}"
        return f"unicast from br-int -> {goto}"
    if table in tables.TUN_TABLE.values():
        key = flow.match.value("tun_id")
        network = ctx.key_network.get((table, key)) if key is not None else None
        vlans = [a.value & fields.VLAN_VID_MASK for a in flow.actions if isinstance(a, SetField)]
        return (f"{network or 'unknown network'}: key {key:#x} -> local VLAN {vlans[0] if vlans else '?'}, "
                f"then {goto}")
    if table == tables.LEARN_FROM_TUN:
        learns = [a for a in flow.actions if isinstance(a, Learn)]
        what = {134: "router advertisements", 136: "neighbour advertisements"}.get(
            flow.match.value("icmp_type") or 0, "gratuitous ARP" if flow.match.get("arp_tha") else "everything")
        timeout = learns[0].hard_timeout if learns else 0
        return f"learn from {what} (source MAC -> tunnel port, {timeout} s), then to {', '.join(_outputs(ctx, flow))}"
    if table == tables.UCAST_TO_TUN:
        if goto:
            return f"unknown unicast -> {goto}"
        mac = flow.match.value("dl_dst")
        owner = ctx.mac_owner.get(mac or -1, "a MAC not in the config")
        return (f"l2population: {fields.mac_text(mac or 0)} ({owner}) on {_vlan(ctx, flow.match.dl_vlan)}: "
                f"key {_key(flow) or 0:#x} to {', '.join(_outputs(ctx, flow))}")
    if table == tables.ARP_RESPONDER:
        if goto:
            return f"ARP for an address not known here -> {goto}"
        ip = flow.match.value("arp_tpa")
        return (f"answer ARP for {fields.ipv4_text(ip or 0)} on {_vlan(ctx, flow.match.dl_vlan)} "
                f"with {ctx.ip_owner.get(ip or -1, 'a MAC not in the config')}")
    if table == tables.FLOOD_TO_TUN:
        return (f"flood {_vlan(ctx, flow.match.dl_vlan)} with key {_key(flow) or 0:#x} to "
                f"{', '.join(_outputs(ctx, flow)) or 'no tunnel'}")
    return "a flow brtun does not make in this table"
