"""The complete desired br-tun flow set of one host, one function per Neutron concept.

Function names follow Neutron's native OpenFlow `br_tun.py`
(setup_default_table, setup_tunnel_port, provision_local_vlan,
install_flood_to_tun, install_unicast_to_tun, install_arp_responder), so
an operator who reads a flow can find what made it.  Every flow is checked
against its table's declaration (flows.tables) as it is built.
"""

from __future__ import annotations

from collections import Counter

from flows import fields, tables
from flows.actions import (
    Action,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Move,
    Output,
    PopVlan,
    PushVlan,
    SetField,
)
from flows.fields import BY_NAME, Subfield
from flows.flow import Flow, Match
from flows.model import BridgeModel, LocalNetwork, RemotePort, TunnelPort
from flows.tables import (
    ARP_RESPONDER,
    FLOOD_TO_TUN,
    LEARN_FROM_TUN,
    LOCAL_SWITCHING,
    PATCH_LV_TO_TUN,
    PRIORITY_DEFAULT,
    PRIORITY_ENTRY,
    PRIORITY_L2POP_UNICAST,
    PRIORITY_LEARN_ANNOUNCE,
    TUN_TABLE,
    UCAST_TO_TUN,
)
from flows.template import Shape, ShapedFlow, Value

# Actions every flow of a kind shares: one object each, not one per flow (at
# 50,000 flows the copies cost megabytes).
POP_VLAN = PopVlan()
PUSH_VLAN = PushVlan()
ARP_REPLY_OP = SetField("arp_op", fields.ARP_REPLY)
ARP_SHA_TO_THA = Move(Subfield.of(BY_NAME["arp_sha"]), Subfield.of(BY_NAME["arp_tha"]))
ARP_SPA_TO_TPA = Move(Subfield.of(BY_NAME["arp_spa"]), Subfield.of(BY_NAME["arp_tpa"]))
ETH_SRC_TO_DST = Move(Subfield.of(BY_NAME["dl_src"]), Subfield.of(BY_NAME["dl_dst"]))
BACK_IN = Output(fields.OFPP_IN_PORT)

# The values tables 20 and 21 differ in, per (network, remote port): builders' arguments 0 and 1.
# The first sample is what flows.template searches for in a sample flow: values that no other
# part of these flows holds.
LOCAL_VLAN = Value(0, "local_vlan", BY_NAME["vlan_vid"], (4001, 2903, 7), present=fields.OFPVID_PRESENT, text=str)
SEGMENTATION_ID = Value(0, "segmentation_id", BY_NAME["tun_id"], (0xABCDE1, 0x5A5A5A, 0x77))
REMOTE_MAC = Value(1, "mac", BY_NAME["dl_dst"], (0xFA163E5A69C3, 0xFA163E0B1C2D, 0x02AABBCCDDEE))
REMOTE_IP = Value(1, "ip", BY_NAME["arp_tpa"], (0xC63364C9, 0xCB007107, 0x0AFA0063))
TUNNEL_OFPORT = Value(1, "ofport", BY_NAME["in_port"], (60013, 4242, 51))
PER_REMOTE_PORT = (LOCAL_VLAN, SEGMENTATION_ID, REMOTE_MAC, REMOTE_IP, TUNNEL_OFPORT)
SHAPE_FROM = 16  # remote ports from which tables 20 and 21 are made by shape

UNICAST = ("00:00:00:00:00:00", "01:00:00:00:00:00")
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")
BROADCAST = "ff:ff:ff:ff:ff:ff"


def _flow(model: BridgeModel, table: int, priority: int, match: Match | None = None,
          actions: tuple[Action, ...] = (), goto: int | None = None) -> Flow:
    return tables.check(Flow(table, priority, match or Match(), actions, goto, cookie=model.cookie))


def learn_action(model: BridgeModel) -> Learn:
    """Table 10's learn: remember that this source MAC, on this local VLAN, is
    behind the tunnel port the packet came in on, with the packet's key."""
    vlan_tci = Subfield.of(BY_NAME["vlan_tci"])
    tun_id = Subfield.of(BY_NAME["tun_id"])
    return Learn(
        table=UCAST_TO_TUN,
        priority=PRIORITY_ENTRY,
        hard_timeout=model.options.learn_hard_timeout,
        cookie=model.cookie,
        specs=(
            LearnMatch(Subfield.of(BY_NAME["vlan_tci"], 0, 12), Subfield.of(BY_NAME["vlan_tci"], 0, 12)),
            LearnMatch(Subfield.of(BY_NAME["dl_dst"]), Subfield.of(BY_NAME["dl_src"])),
            LearnLoad(vlan_tci, 0),
            LearnLoad(tun_id, tun_id),
            LearnOutput(Subfield.of(BY_NAME["in_port"])),
        ),
    )


def setup_default_table(model: BridgeModel) -> list[Flow]:
    """The flows br-tun has before any tunnel port or network exists."""
    learn_then_patch = (learn_action(model), Output(model.patch_int_ofport))
    flows = [
        _flow(model, LOCAL_SWITCHING, PRIORITY_ENTRY, Match.of(in_port=model.patch_int_ofport),
              goto=PATCH_LV_TO_TUN),
        _flow(model, LOCAL_SWITCHING, PRIORITY_DEFAULT),
        _flow(model, PATCH_LV_TO_TUN, PRIORITY_DEFAULT, Match.of(dl_dst=UNICAST), goto=UCAST_TO_TUN),
        _flow(model, PATCH_LV_TO_TUN, PRIORITY_DEFAULT, Match.of(dl_dst=MULTICAST), goto=FLOOD_TO_TUN),
        *(_flow(model, table, PRIORITY_DEFAULT) for table in TUN_TABLE.values()),
        # Neutron (2025): learn from gratuitous ARP, router and neighbour
        # advertisements first, so a moved address is relearned at once.
        _flow(model, LEARN_FROM_TUN, PRIORITY_LEARN_ANNOUNCE,
              Match.of(dl_type=fields.ETH_TYPE_ARP, arp_tha=BROADCAST), learn_then_patch),
        *(_flow(model, LEARN_FROM_TUN, PRIORITY_LEARN_ANNOUNCE,
                Match.of(dl_type=fields.ETH_TYPE_IPV6, nw_proto=fields.IPPROTO_ICMPV6, icmp_type=kind),
                learn_then_patch)
          for kind in (fields.ICMPV6_ROUTER_ADVERT, fields.ICMPV6_NEIGHBOR_ADVERT)),
        _flow(model, LEARN_FROM_TUN, PRIORITY_ENTRY, actions=learn_then_patch),
        _flow(model, UCAST_TO_TUN, PRIORITY_DEFAULT, goto=FLOOD_TO_TUN),
        _flow(model, FLOOD_TO_TUN, PRIORITY_DEFAULT),
    ]
    if model.options.arp_responder:
        flows += [
            _flow(model, PATCH_LV_TO_TUN, PRIORITY_ENTRY,
                  Match.of(dl_type=fields.ETH_TYPE_ARP, dl_dst=BROADCAST), goto=ARP_RESPONDER),
            _flow(model, ARP_RESPONDER, PRIORITY_DEFAULT, goto=FLOOD_TO_TUN),
        ]
    return flows


def setup_tunnel_port(model: BridgeModel, port: TunnelPort) -> Flow:
    """Table 0: packets from this tunnel go to their tunnel type's table."""
    return _flow(model, LOCAL_SWITCHING, PRIORITY_ENTRY, Match.of(in_port=port.ofport),
                 goto=TUN_TABLE[port.type])


def provision_local_vlan(model: BridgeModel, network: LocalNetwork) -> Flow:
    """Table 3/4/6: the network's key becomes this host's local VLAN."""
    set_vlan = SetField("vlan_vid", fields.OFPVID_PRESENT | network.local_vlan)
    return _flow(model, TUN_TABLE[network.type], PRIORITY_ENTRY,
                 Match.of(tun_id=network.segmentation_id), (PUSH_VLAN, set_vlan), LEARN_FROM_TUN)


def install_flood_to_tun(model: BridgeModel, network: LocalNetwork) -> Flow | None:
    """Table 22: broadcast and unknown unicast go to every tunnel in the flood list.

    Like Neutron, no entry while the list is empty (the default drops)."""
    if not network.flood_ofports:
        return None
    actions = (POP_VLAN, SetField("tun_id", network.segmentation_id),
               *(Output(ofport) for ofport in network.flood_ofports))
    return _flow(model, FLOOD_TO_TUN, PRIORITY_ENTRY, Match.of(dl_vlan=network.local_vlan), actions)


def install_unicast_to_tun(model: BridgeModel, network: LocalNetwork, port: RemotePort) -> Flow:
    """Table 20, l2population: a known remote MAC goes straight to its host's tunnel."""
    match = Match.of(dl_vlan=network.local_vlan, dl_dst=port.mac)
    actions = (POP_VLAN, SetField("tun_id", network.segmentation_id), Output(port.ofport))
    return _flow(model, UCAST_TO_TUN, PRIORITY_L2POP_UNICAST, match, actions)


def install_arp_responder(model: BridgeModel, network: LocalNetwork, port: RemotePort) -> Flow:
    """Table 21: turn an ARP request for a known remote IPv4 into the reply, sent back in."""
    match = Match.of(dl_type=fields.ETH_TYPE_ARP, dl_vlan=network.local_vlan, arp_tpa=port.ip)
    actions = (
        ARP_REPLY_OP,
        ARP_SHA_TO_THA,
        ARP_SPA_TO_TPA,
        SetField("arp_sha", port.mac),
        SetField("arp_spa", port.ip),
        ETH_SRC_TO_DST,
        SetField("eth_src", port.mac),
        BACK_IN,
    )
    return _flow(model, ARP_RESPONDER, PRIORITY_ENTRY, match, actions)


def build(model: BridgeModel) -> tuple[Flow, ...]:
    """Every flow this host's br-tun should hold (learned flows excepted)."""
    flows = setup_default_table(model)
    flows += [setup_tunnel_port(model, port) for port in model.tunnel_ports]
    networks = {network.name: network for network in model.networks}
    for network in model.networks:
        flows.append(provision_local_vlan(model, network))
        flood = install_flood_to_tun(model, network)
        if flood is not None:
            flows.append(flood)
    # Most of a large br-tun: made by shape (flows.template), equal to what the builders make; a
    # few are made directly (a shape costs about as much to make as SHAPE_FROM flows).
    shaped = len(model.remote_ports) >= SHAPE_FROM
    unicast = Shape(install_unicast_to_tun, model, PER_REMOTE_PORT) if shaped else None
    arp = Shape(install_arp_responder, model, PER_REMOTE_PORT) if shaped else None
    for port in model.remote_ports:
        network = networks[port.network]
        flows.append(unicast.flow(network, port) if unicast else install_unicast_to_tun(model, network, port))
        if model.options.arp_responder:
            flows.append(arp.flow(network, port) if arp else install_arp_responder(model, network, port))
    _check_unique(flows)
    return tuple(flows)


def _check_unique(flows: list[Flow]) -> None:
    """No two flows with one (table, priority, match).  A shaped flow is told apart from its
    shape's others by its match values alone (Shape.identity), unless its place (table, priority)
    also holds flows of another shape or unshaped ones: those are all compared by key."""
    keyed: list[Flow] = []
    by_shape: dict[Shape, list[ShapedFlow]] = {}
    for flow in flows:
        if type(flow) is ShapedFlow:
            by_shape.setdefault(flow.shape, []).append(flow)
        else:
            keyed.append(flow)
    places = Counter((flow.table, flow.priority) for flow in keyed)
    places.update(shape.place for shape in by_shape)
    for shape, members in by_shape.items():
        if places[shape.place] > 1:
            keyed += members
            continue
        identities = [flow.identity for flow in members]
        if len(set(identities)) != len(identities):
            _check_keys(members)
    _check_keys(keyed)


def _check_keys(flows: list[Flow]) -> None:
    seen: dict[object, Flow] = {}
    for flow in flows:
        if flow.key in seen:
            raise tables.TableViolation(
                f"two flows with one identity:\n{seen[flow.key].render()}\n{flow.render()}")
        seen[flow.key] = flow
