"""How one host moves from one config to the next without a packet leaving with the wrong key.

A reconcile alone is enough for most changes, but not when a local VLAN
changes hands.  br-int tags ports (the database) and br-tun maps VLANs to
keys (OpenFlow): two switches' worth of state that cannot change in one
atomic step.  So a change is carried out in phases (`steps`):

1. bridge: add the new flows that cannot mislead anyone (make before
   break), keep every old one;
2. retag the VM ports; a port whose new VLAN still belongs to another
   network in br-tun waits on the dead VLAN (its packets drop, never leak);
3. the new pipeline exactly (old flows go, stale learned flows with them);
4. the waiting ports take their VLAN.

Local VLANs are host-local and mean nothing outside the host, so they are
kept stable as Neutron keeps them (`pin_local_vlans`): a network keeps the
VLAN it has while it stays, whatever else comes and goes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flows import fields
from flows.actions import SetField
from flows.config import Config
from flows.flow import Flow
from flows.model import BridgeModel, local_vlans


def pin_local_vlans(config: Config, host_name: str, current: Mapping[str, int]) -> Config:
    """The config with this host's networks kept on the VLANs they use now.

    Explicit VLANs in the config win; a network the config leaves to
    assignment keeps its current VLAN if no explicit one takes it; new
    networks get the lowest free VLAN as before.
    """
    host = config.host(host_name)
    explicit = dict(host.local_vlans)
    taken = set(explicit.values())
    pinned = dict(explicit)
    for network in config.networks:
        name = network.name
        vlan = current.get(name)
        if name in host.carried_networks and name not in pinned and vlan is not None and vlan not in taken:
            pinned[name] = vlan
            taken.add(vlan)
    if pinned == explicit:
        return config
    hosts = tuple(dataclasses.replace(h, local_vlans=tuple(sorted(pinned.items())))
                  if h.name == host_name else h for h in config.hosts)
    return dataclasses.replace(config, hosts=hosts)


def vlan_owners(model: BridgeModel) -> dict[int, tuple[str, int]]:
    """Local VLAN -> (tunnel type, key) it carries on this host."""
    return {n.local_vlan: (n.type, n.segmentation_id) for n in model.networks}


def changing_hands(old: BridgeModel, new: BridgeModel) -> frozenset[int]:
    """VLANs that carry one network's key before and another's after."""
    before, after = vlan_owners(old), vlan_owners(new)
    return frozenset(v for v in before.keys() & after.keys() if before[v] != after[v])


def flow_vlans(flow: Flow) -> set[int]:
    """Every local VLAN a flow matches on or tags with."""
    vlans = set()
    for name in ("dl_vlan", "vlan_vid", "vlan_tci"):
        item = flow.match.get(name)
        if item is not None:
            vlans.add(item.value & fields.VLAN_VID_MASK)
    for action in flow.actions:
        if isinstance(action, SetField) and action.field == "vlan_vid":
            vlans.add(action.value & fields.VLAN_VID_MASK)
    return vlans


def bridging_flows(old: Iterable[Flow], new: Iterable[Flow], held: frozenset[int]) -> tuple[Flow, ...]:
    """Step 1: every old flow, plus each new flow that takes no old flow's place and
    touches no VLAN that is changing hands."""
    result = {flow.key: flow for flow in old}
    for flow in new:
        if flow.key not in result and not flow_vlans(flow) & held:
            result[flow.key] = flow
    return tuple(result.values())


def parked_config(config: Config, host_name: str, held: frozenset[int]) -> Config:
    """Step 2's config for the database: ports of networks whose new VLAN is still held
    by another network are not in it, so they wait on the dead VLAN."""
    host = config.host(host_name)
    if not held:
        return config
    vlans = local_vlans(host, config)
    parked_networks = {name for name, vlan in vlans.items() if vlan in held}
    kept_ports = tuple(p for p in host.ports if p.network not in parked_networks)
    kept_carries = tuple(n for n in host.carries if n not in parked_networks)
    # Keep the VLAN numbering of the remaining networks exactly as in the final config.
    pinned = tuple(sorted((n, v) for n, v in vlans.items() if n not in parked_networks))
    parked = dataclasses.replace(host, ports=kept_ports, local_vlans=pinned, carries=kept_carries)
    return dataclasses.replace(config, hosts=tuple(parked if h.name == host_name else h for h in config.hosts))


def forgotten_macs(old: Config, new: Config, host_name: str) -> frozenset[tuple[int, int]]:
    """(local VLAN, MAC) of every port that left another host between two configs (deleted, or moved
    to another host): a flow table 20 learned for it sends its network's unicast to where the MAC no
    longer is, so it goes with the change (docs/PIPELINE.md, "Stale learned flows")."""
    if host_name not in old.host_names:
        return frozenset()
    vlans = local_vlans(old.host(host_name), old)
    # where a port is: its host's tunnel endpoint (a host renamed in the config has not moved)
    where_new = {(port.network, port.mac): host.local_ip for host in new.hosts for port in host.ports}
    forgotten = set()
    for host in old.hosts:
        if host.name == host_name:
            continue
        for port in host.ports:
            if port.network in vlans and where_new.get((port.network, port.mac)) != host.local_ip:
                forgotten.add((vlans[port.network], fields.mac_value(port.mac)))
    return frozenset(forgotten)


@dataclass(frozen=True)
class Steps:
    """What a host does, in order; `held` empty means steps 2 and 4 coincide."""

    bridge_flows: tuple[Flow, ...]  # step 1 (br-tun)
    database_config: Config  # step 2 (VIF tags)
    final_config: Config  # steps 3 and 4
    held: frozenset[int]

    def describe(self) -> str:
        if not self.held:
            return "make before break"
        return ("make before break; VLAN " + ", ".join(str(v) for v in sorted(self.held))
                + " changes network: its new ports wait on the dead VLAN until br-tun is remapped")


def steps(old_model: BridgeModel, old_flows: Iterable[Flow], new_model: BridgeModel, new_flows: Iterable[Flow],
          new_config: Config) -> Steps:
    held = changing_hands(old_model, new_model)
    return Steps(bridging_flows(old_flows, new_flows, held), parked_config(new_config, new_model.host, held),
                 new_config, held)
