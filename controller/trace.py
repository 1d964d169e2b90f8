"""`brtun trace VM DEST`: follow one packet across every bridge and host of a running testbed.

Each switch is asked with `ovs-appctl ofproto/trace` *without* -generate,
so nothing is learned on the live bridges.  The source host's trace starts
at the VM's qvo port on br-int and follows the patch ports into br-tun;
every encapsulated copy (remote endpoint, key) is carried to the host
behind that endpoint and traced from its tunnel port through its br-tun
and br-int to the ports it is delivered to.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import textwrap
from pathlib import Path

from controller.tracesvg import draw
from controller.walk import Walk, reached, verdict
from flows import br_int, tables
from flows.config import Config, load_config
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from flows.naming import tunnel_port_name, tunnel_type_of
from flows.tracetext import TableHop, TraceRun, parse_dpif_show, parse_run
from mininet_topos.spec import TestbedSpec, Vm, testbed_spec
from ovshost import state as states
from ovshost.privateovs import PrivateOvs


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = commands.add_parser(
        "trace", help="follow one packet from a VM across every bridge and host of a running testbed",
        description="Follow one packet from VM to DEST (a VM name or an IP address) through br-int, br-tun, the "
                    "tunnel and the remote br-tun and br-int, with `ovs-appctl ofproto/trace` on each host (never "
                    "-generate: no flow is learned on the live bridges). Prints each hop, lettered as in the "
                    "seed, with the table and flow that decided it, and the verdict.")
    trace.add_argument("vm", metavar="VM", help="the VM the packet leaves from (vm1, ...)")
    trace.add_argument("destination", metavar="DEST", help="a VM name or an IP address")
    trace.add_argument("--proto", choices=("icmp", "tcp", "udp", "arp"), default="icmp",
                       help="the packet (default icmp echo; arp: a who-has broadcast)")
    trace.add_argument("--dport", type=int, default=22, help="with tcp/udp: destination port")
    trace.add_argument("--testbed", help="which running testbed (default: the one with this VM)")
    trace.add_argument("--svg", type=Path, metavar="FILE", help="also draw the hops on the topology as SVG")
    trace.set_defaults(func=cmd_trace)


class TraceError(RuntimeError):
    pass


def _locate(args: argparse.Namespace) -> tuple[states.TestbedState, Config, TestbedSpec]:
    names = [args.testbed] if args.testbed else states.names()
    for name in names:
        state = states.load(name)
        if args.vm in state.vms:
            config = load_config(state.config)
            return state, config, testbed_spec(config, state.kind)
    raise TraceError(f"no running testbed has a VM named {args.vm} (testbeds: {', '.join(names) or 'none'})")


def _destination(spec: TestbedSpec, source: Vm, text: str) -> tuple[str, str, str]:
    """(MAC, IP, label) of DEST, from the source VM's point of view."""
    for vm in spec.vms:
        if text == vm.name:
            return vm.mac, vm.ip or "0.0.0.0", f"{vm.name} ({vm.ip}, {vm.network} on {vm.host})"
    for vm in spec.vms:  # an address in the source's own network first: subnets overlap
        if vm.ip == text and vm.network == source.network:
            return vm.mac, text, f"{vm.name} ({text}, {vm.network} on {vm.host})"
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise TraceError(f"DEST {text!r} is neither a VM of the testbed nor an IPv4 address") from None
    for port in spec.services:
        if port.ip == text and port.network == source.network:
            return port.mac, text, f"{port.name} ({text}, {port.kind} port of {port.network})"
    subnet = spec.subnets.get(source.network)
    if subnet and address not in subnet.cidr and subnet.gateway is not None:
        gateway = next((p for p in spec.services if p.kind == "router" and p.network == source.network), None)
        if gateway is not None:
            return gateway.mac, text, f"{text} via the router ({gateway.name})"
    return "ff:ff:ff:ff:ff:ff", text, f"{text} (no port of {source.network} has it: broadcast)"


def _packet(args: argparse.Namespace, vm: Vm, mac: str, ip: str) -> str:
    base = f"dl_src={vm.mac},dl_dst={mac}"
    if args.proto == "arp":
        return (f"dl_src={vm.mac},dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0806,arp_op=1,arp_spa={vm.ip},"
                f"arp_tpa={ip},arp_sha={vm.mac}")
    number = {"icmp": 1, "tcp": 6, "udp": 17}[args.proto]
    tail = "icmp_type=8" if args.proto == "icmp" else f"tp_dst={args.dport}"
    return f"{base},dl_type=0x0800,nw_src={vm.ip},nw_dst={ip},nw_proto={number},{tail}"


def _table_name(bridge: str, number: int) -> str:
    if bridge == "br-int":
        spec = br_int.TABLES.get(number)
        return spec.name if spec else f"table {number}"
    return tables.table_name(number) if bridge == "br-tun" else f"table {number}"


def _run_trace(state: states.TestbedState, host: str, bridge: str, flow: str) -> tuple[TraceRun, dict[int, str]]:
    ovs = PrivateOvs(host, Path(state.hosts[host].rundir))
    text = ovs.run("ovs-appctl", "ofproto/trace", bridge, flow).stdout
    names = parse_dpif_show(ovs.run("ovs-appctl", "dpif/show").stdout)
    tunnel_ports = frozenset(port for port, name in names.items() if tunnel_type_of(name) is not None)
    return parse_run(text, tunnel_ports), names


def _bridge_hops(walk: Walk, host: str, run: TraceRun, first_bridge: str) -> None:
    by_bridge: dict[str, list[TableHop]] = {}
    for hop in run.hops:
        by_bridge.setdefault(hop.bridge, []).append(hop)
    order = ["br-int", "br-tun"] if first_bridge == "br-int" else ["br-tun", "br-int"]
    for bridge in order:
        hops = tuple(by_bridge.get(bridge, ()))
        if not hops:
            continue
        last = hops[-1]
        path = " > ".join(str(h.table) for h in hops)
        walk.add(host, bridge, f"tables {path}: {_table_name(bridge, last.table)}", hops)
        if last.dropped:
            walk.drops.append(f"dropped on {host} in {bridge} table {last.table} "
                              f"({_table_name(bridge, last.table)}): {last.flow}")
            return


def _deliveries(walk: Walk, host: str, run: TraceRun, names: dict[int, str], spec: TestbedSpec) -> None:
    for port in run.local_ports:
        name = names.get(port, f"datapath port {port}")
        vm = next((v for v in spec.vms if v.host == host and v.device("qvo") == name), None)
        if vm is not None:
            walk.add(host, f"{name} > {vm.device('qbr')}", "iptables security group: ingress")
            walk.add(host, f"{vm.name} eth0", f"delivered ({vm.ip}, {vm.network})")
            walk.delivered.append(vm.name)
        elif name.startswith(("tap", "qr-")):
            walk.add(host, name, "delivered to a Neutron service port")
            walk.delivered.append(name)


def walk_packet(args: argparse.Namespace) -> Walk:
    state, config, spec = _locate(args)
    vm = next(v for v in spec.vms if v.name == args.vm)
    mac, ip, label = _destination(spec, vm, args.destination)
    flow = _packet(args, vm, mac, ip)
    walk = Walk(f"{vm.name} ({vm.ip}, {vm.network} on {vm.host})", label)
    target = next((v for v in spec.vms if v.mac == mac), None)
    walk.target = target.name if target else next((p.name for p in spec.services if p.mac == mac), "")
    walk.add(vm.host, f"{vm.name} eth0", f"{vm.mac} -> {mac} {args.proto}")
    walk.add(vm.host, vm.device("tap"), "the VM's tap device")
    walk.add(vm.host, vm.device("qbr"), "iptables security group: egress")
    run, names = _run_trace(state, vm.host, "br-int", f"in_port={vm.device('qvo')},{flow}")
    _bridge_hops(walk, vm.host, run, "br-int")
    _deliveries(walk, vm.host, run, names, spec)
    endpoints = {h.local_ip: h.name for h in config.hosts}
    kind = config.network(vm.network).type
    sender = max(i for i, h in enumerate(walk.hops) if h.host == vm.host)  # the source's last bridge
    for remote_ip, key in run.tunnels:
        remote = endpoints.get(remote_ip, remote_ip)
        walk.add(vm.host, tunnel_port_name(kind, remote_ip), f"{kind.upper()} key {key:#x} to {remote_ip} ({remote})",
                 parent=sender)
        if remote not in state.hosts:
            walk.drops.append(f"{remote_ip} is no host of the testbed")
            continue
        port = tunnel_port_name(kind, config.host(vm.host).local_ip)
        walk.add(remote, port, f"arrives from {config.host(vm.host).local_ip} with key {key:#x}")
        remote_run, remote_names = _run_trace(state, remote, "br-tun", f"in_port={port},tun_id={key:#x},{flow}")
        _bridge_hops(walk, remote, remote_run, "br-tun")
        _deliveries(walk, remote, remote_run, remote_names, spec)
        if remote_run.dropped and not any(remote in d for d in walk.drops):
            walk.drops.append(f"nothing delivered on {remote}")
    if not run.tunnels and not run.local_ports and not walk.drops:
        walk.drops.append(f"nothing left {vm.host}")
    return walk


def summary(hop: TableHop) -> str:
    """What a table did, short: its flow's match and the actions that matter."""
    match = hop.flow.split(", priority")[0] if ", priority" in hop.flow else ""
    actions = []
    normal = "NORMAL" in hop.actions
    for action in hop.actions:
        if action.startswith("learn("):
            actions.append("learn(...)")
        elif action.startswith("->"):
            if normal:  # what NORMAL decided; tunnel routing details are in F/G
                actions.append(action[3:])
        elif not action.startswith(">>"):
            actions.append(action)
    priority = hop.flow.split("priority ")[1].split(",")[0] if "priority " in hop.flow else "?"
    return f"pri {priority}{' ' + match if match else ''} -> {', '.join(actions)}"


def print_walk(walk: Walk) -> None:
    print(f"trace {walk.source} -> {walk.destination}")
    for hop in walk.hops:
        print(f" {hop.letter}  {hop.host:<9} {hop.element}" + (f": {hop.detail}" if hop.detail and not hop.tables
                                                               else ""))
        for table in hop.tables:
            match, _, actions = summary(table).partition(" -> ")
            line = f"      {table.table:>2} {_table_name(table.bridge, table.table):<17} {match}"
            if len(line) + len(actions) + 4 <= 80:
                print(f"{line} -> {actions}")
                continue
            print(line[:80])
            for part in textwrap.wrap("-> " + actions, 56, break_on_hyphens=False):
                print(f"{'':<24}{part}")
    print(f"verdict: {verdict(walk)}")


def cmd_trace(args: argparse.Namespace) -> int:
    try:
        walk = walk_packet(args)
    except (TraceError, LookupError) as error:
        print(f"brtun trace: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print_walk(walk)
    if args.svg:
        args.svg.write_text(draw(walk))
        print(f"picture: {args.svg}")
    return EXIT_OK if reached(walk) else EXIT_FAILED

