"""What the switch database of one host should hold, and the operations that get it there.

Pure: it compares the desired bridges and ports (from the config, Neutron's
names and options) with an observed snapshot and returns operations as
values; `controller.ovsdb` carries them out in one transaction.  Rules:
- br-tun and br-int exist with fail_mode=secure, OpenFlow 1.3, in-band
  control off, our controller and the configured datapath IDs;
- patch-int (br-tun) and patch-tun (br-int) peer each other;
- the tunnel ports the config implies exist with Neutron's options; an
  existing port with the right name is adopted, and fixed in place if its
  options are wrong, never recreated (its ofport stays);
- tunnel ports brtun created (external_ids:brtun) that the config no longer
  implies are deleted; other unknown tunnel ports are reported and left alone
  (they get no flows);
- each VM port on br-int is tagged with its network's local VLAN; a VIF port
  (one with Nova's attached-mac or iface-id) that matches no config port gets
  Neutron's dead VLAN 4095.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.targets import spellings
from flows import naming
from flows.config import VXLAN_UDP_PORT, Config, Host, Port
from flows.model import allocate_ofports, local_vlans, tunnel_ports

BR_TUN = "br-tun"
BR_INT = "br-int"
OWNER_KEY = "brtun"  # external_ids key marking ports brtun manages (value: host name)
PROTOCOLS = ("OpenFlow13",)


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    datapath_id: int
    datapath_type: str
    controller: str

    @property
    def other_config(self) -> dict[str, str]:
        return {"datapath-id": f"{self.datapath_id:016x}", "disable-in-band": "true"}


@dataclass(frozen=True)
class PortSpec:
    bridge: str
    name: str
    type: str
    options: tuple[tuple[str, str], ...]
    ofport_request: int | None = None


@dataclass(frozen=True)
class ObservedPort:
    name: str
    bridge: str
    type: str
    options: dict[str, str] = field(default_factory=dict)
    ofport: int | None = None
    tag: int | None = None
    external_ids: dict[str, str] = field(default_factory=dict)  # the Port's and Interface's, merged


@dataclass(frozen=True)
class ObservedBridge:
    name: str
    datapath_type: str
    fail_mode: str | None
    protocols: tuple[str, ...]
    other_config: dict[str, str]
    controllers: tuple[str, ...]


@dataclass(frozen=True)
class Observed:
    bridges: dict[str, ObservedBridge]
    ports: dict[str, ObservedPort]  # by port name (unique across bridges in Open vSwitch)

    def ofports(self, bridge: str) -> dict[str, int]:
        return {p.name: p.ofport for p in self.ports.values()
                if p.bridge == bridge and p.ofport is not None and p.ofport > 0}


# ----- operations ----------------------------------------------------------

@dataclass(frozen=True)
class EnsureBridge:
    spec: BridgeSpec
    create: bool
    set_controller: bool = True  # False keeps the controller row, so the connection stays up

    def describe(self) -> str:
        verb = "create" if self.create else "fix settings of"
        return f"{verb} {self.spec.name} (datapath ID {self.spec.datapath_id:#x}, {self.spec.datapath_type})"


@dataclass(frozen=True)
class AddPort:
    spec: PortSpec
    owner: str

    def describe(self) -> str:
        return f"add {self.spec.name} to {self.spec.bridge} ({self.spec.type})"


@dataclass(frozen=True)
class FixPort:
    """Set type/options in place (the port keeps its ofport) and mark it as ours."""

    spec: PortSpec
    owner: str
    reason: str

    def describe(self) -> str:
        return f"fix {self.spec.name} on {self.spec.bridge}: {self.reason}"


@dataclass(frozen=True)
class DeletePort:
    bridge: str
    name: str
    reason: str

    def describe(self) -> str:
        return f"delete {self.name} from {self.bridge}: {self.reason}"


@dataclass(frozen=True)
class SetTag:
    name: str
    tag: int
    reason: str

    def describe(self) -> str:
        return f"tag {self.name} with VLAN {self.tag}: {self.reason}"


Operation = EnsureBridge | AddPort | FixPort | DeletePort | SetTag


@dataclass(frozen=True)
class Plan:
    operations: tuple[Operation, ...]
    notes: tuple[str, ...]  # things reported and left alone


# ----- desired state -------------------------------------------------------

def bridge_specs(host: Host, controller: str, datapath_type: str) -> tuple[BridgeSpec, BridgeSpec]:
    return (BridgeSpec(BR_TUN, host.datapath_id, datapath_type, controller),
            BridgeSpec(BR_INT, host.br_int_datapath_id, datapath_type, controller))


def tunnel_options(config: Config, host: Host, tunnel_type: str, remote_ip: str) -> tuple[tuple[str, str], ...]:
    """The options Neutron's `ovs_lib.add_tunnel_port` gives a tunnel port, from the same options.

    egress_pkt_mark=0 clears the packet mark on the encapsulated packet (Neutron sets it unless
    the switch offloads to hardware, which brtun does not use)."""
    options = config.options
    result = {"remote_ip": remote_ip, "local_ip": host.local_ip, "in_key": "flow", "out_key": "flow",
              "df_default": "true" if options.dont_fragment else "false", "egress_pkt_mark": "0"}
    if tunnel_type == "vxlan" and options.vxlan_udp_port != VXLAN_UDP_PORT:
        result["dst_port"] = str(options.vxlan_udp_port)
    if options.tunnel_csum:
        result["csum"] = "true"
    if options.dscp_inherit:
        result["tos"] = "inherit"
    elif options.dscp:
        result["tos"] = str(options.dscp << 2)
    if naming.ovs_port_type(tunnel_type, remote_ip) == "ip6gre":
        result["packet_type"] = "legacy_l2"  # Open vSwitch's L3 GRE over IPv6 does not carry Ethernet
    return tuple(sorted(result.items()))


def port_specs(config: Config, host: Host, existing: dict[str, int] | None = None) -> list[PortSpec]:
    """br-tun's and br-int's ports; `existing`: the ofports br-tun's ports have now (new ports
    never ask for a number in use)."""
    requested = allocate_ofports(host, config, existing)
    specs = [
        PortSpec(BR_TUN, naming.PATCH_INT, "patch", (("peer", naming.PATCH_TUN),),
                 requested[naming.PATCH_INT]),
        PortSpec(BR_INT, naming.PATCH_TUN, "patch", (("peer", naming.PATCH_INT),)),
    ]
    for name, tunnel_type, remote in tunnel_ports(host, config):
        specs.append(PortSpec(BR_TUN, name, naming.ovs_port_type(tunnel_type, remote.local_ip),
                              tunnel_options(config, host, tunnel_type, remote.local_ip), requested[name]))
    return specs


def config_port(host: Host, port: ObservedPort) -> Port | None:
    """The config's port for a br-int port: by name, else by the VM's MAC (attached-mac)."""
    by_name = {p.name: p for p in host.ports if p.name}
    match = by_name.get(port.name)
    if match is None:
        mac = port.external_ids.get("attached-mac", "").lower()
        match = next((p for p in host.ports if p.mac == mac and not p.name), None) if mac else None
    return match


def tagged_vlans(config: Config, host_name: str, observed: Observed) -> dict[str, int]:
    """The local VLAN each network uses now, read off br-int's port tags, as Neutron's
    agent recovers its VLAN map on restart; a network whose ports disagree is left out."""
    host = config.host(host_name)
    seen: dict[str, set[int]] = {}
    for port in observed.ports.values():
        match = config_port(host, port) if port.bridge == BR_INT else None
        if match is not None and port.tag is not None and 0 < port.tag < naming.DEAD_VLAN:
            seen.setdefault(match.network, set()).add(port.tag)
    return {network: tags.pop() for network, tags in seen.items() if len(tags) == 1}


def vifs(observed: Observed) -> dict[str, str]:
    """The VIFs Nova plugged into br-int: Neutron port ID (external_ids:iface-id) -> port name; a port
    the switch has not numbered yet (no ofport) is not there yet, as Neutron's agent sees it."""
    found: dict[str, str] = {}
    for port in sorted(observed.ports.values(), key=lambda p: p.name):
        iface = port.external_ids.get("iface-id")
        if port.bridge == BR_INT and iface and port.ofport is not None and port.ofport > 0:
            found.setdefault(iface, port.name)
    return found


def vif_tag(config: Config, host: Host, port: ObservedPort) -> tuple[int, Port | None] | None:
    """The VLAN a br-int port should carry, or None for a port that is not a VIF."""
    vlans = local_vlans(host, config)
    match = config_port(host, port)
    if match is not None:
        return vlans[match.network], match
    if "attached-mac" in port.external_ids or "iface-id" in port.external_ids:
        return naming.DEAD_VLAN, None
    return None


# ----- the plan ------------------------------------------------------------

def plan(config: Config, host_name: str, observed: Observed, controller: str, datapath_type: str) -> Plan:
    host = config.host(host_name)
    operations: list[Operation] = []
    notes: list[str] = []
    for spec in bridge_specs(host, controller, datapath_type):
        _plan_bridge(spec, observed.bridges.get(spec.name), operations, notes)
    wanted = port_specs(config, host, observed.ofports(BR_TUN))
    wanted_names = {spec.name for spec in wanted}
    for spec in wanted:
        _plan_port(spec, observed.ports.get(spec.name), host.name, operations, notes)
    for port in sorted(observed.ports.values(), key=lambda p: p.name):
        if port.bridge == BR_TUN and port.name not in wanted_names and port.name != BR_TUN:
            if port.external_ids.get(OWNER_KEY):
                operations.append(DeletePort(BR_TUN, port.name, "the config no longer implies it"))
            elif port.type in (*naming.TYPE_DIGIT, "ip6gre") or naming.tunnel_type_of(port.name):
                notes.append(f"{port.name} on {BR_TUN} is not a tunnel port of this config: "
                             "left alone, its packets are dropped (no table 0 flow)")
        if port.bridge == BR_INT and port.name not in (BR_INT, naming.PATCH_TUN):
            _plan_tag(config, host, port, operations)
    return Plan(tuple(operations), tuple(notes))


def _plan_bridge(spec: BridgeSpec, seen: ObservedBridge | None, operations: list[Operation],
                 notes: list[str]) -> None:
    if seen is None:
        operations.append(EnsureBridge(spec, create=True))
        return
    if seen.datapath_type != spec.datapath_type:
        notes.append(f"{spec.name} runs on the {seen.datapath_type or 'system'} datapath, not "
                     f"{spec.datapath_type}: left as it is (changing it would renumber its ports)")
    # Either spelling of our target is ours: the agent swaps between them to be connected at once.
    controller_right = len(seen.controllers) == 1 and seen.controllers[0] in spellings(spec.controller)
    # Open vSwitch drops every flow of a bridge whose datapath ID changes, or that gets its first
    # controller: say so, since a switch programmed by someone else (a takeover) loses its flows
    # until the agent has installed its own.
    if seen.other_config.get("datapath-id", spec.other_config["datapath-id"]) != spec.other_config["datapath-id"]:
        notes.append(f"{spec.name}'s datapath ID changes from {seen.other_config['datapath-id']} to "
                     f"{spec.other_config['datapath-id']}: Open vSwitch drops its flows; brtun installs its own")
    if not seen.controllers:
        notes.append(f"{spec.name} gets its first controller: Open vSwitch drops its flows; brtun installs its own")
    right = (seen.fail_mode == "secure" and seen.protocols == PROTOCOLS and controller_right
             and all(seen.other_config.get(k) == v for k, v in spec.other_config.items()))
    if not right:
        operations.append(EnsureBridge(spec, create=False, set_controller=not controller_right))


def _plan_port(spec: PortSpec, seen: ObservedPort | None, owner: str, operations: list[Operation],
               notes: list[str]) -> None:
    if seen is None:
        operations.append(AddPort(spec, owner))
        return
    if seen.bridge != spec.bridge:
        notes.append(f"{spec.name} is on {seen.bridge}, not {spec.bridge}: left alone")
        return
    reasons = []
    if seen.type != spec.type:
        reasons.append(f"type {seen.type or 'system'} -> {spec.type}")
    wanted = dict(spec.options)
    if seen.options != wanted:
        changed = sorted(k for k in wanted if seen.options.get(k) != wanted[k])
        removed = sorted(k for k in seen.options if k not in wanted)
        if changed:
            reasons.append("options " + ", ".join(f"{k}={wanted[k]}" for k in changed))
        if removed:  # said, never done silently: the config does not ask for them
            reasons.append("removes options the config does not give: "
                           + ", ".join(f"{k}={seen.options[k]}" for k in removed))
    if seen.external_ids.get(OWNER_KEY) != owner:
        reasons.append("adopted")
    if reasons:
        operations.append(FixPort(spec, owner, "; ".join(reasons)))


def _plan_tag(config: Config, host: Host, port: ObservedPort, operations: list[Operation]) -> None:
    decided = vif_tag(config, host, port)
    if decided is None:
        return
    tag, match = decided
    if port.tag == tag:
        return
    reason = f"port of {match.network} ({match.mac})" if match else "no config port has its MAC (dead VLAN)"
    operations.append(SetTag(port.name, tag, reason))
