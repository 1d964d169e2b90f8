"""The testbed checks: each sends real packets and returns pass/fail with its figure.

They work from a testbed's state alone (namespaces by name, `ip netns
exec`), so the demo, the tests and a later `brtun` command can all run
them against a testbed that is up.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from flows.config import Config
from flows.fields import mac_value
from flows.model import local_vlans
from flows.mtu import family_of
from flows.naming import tunnel_port_name
from flows.textparse import parse_dump
from mininet_topos import probes
from mininet_topos.spec import TestbedSpec, Vm
from mininet_topos.topology import phy_mac
from ovshost.privateovs import PrivateOvs
from ovshost.state import TestbedState

ICMP_REQUEST = re.compile(r"(\d+\.\d+\.\d+\.\d+) > \d+\.\d+\.\d+\.\d+: ICMP echo request")
SSH = 22  # the security group lets TCP in on this port only
INTRUDER = "intruder"
# What leaves a host's br-tun on the underlay, whatever the encapsulation and the address family.
ANY_TUNNEL = "ip proto 47 or ip6 proto 47 or udp port 4789 or udp port 6081"


def intruder_ip(bed: Bed) -> str:
    """An underlay address no host has: the intruder's."""
    return str(bed.spec.underlay.network_address + 250)


def _tunnel_expression(bed: Bed, tunnel_type: str) -> str:
    """The tcpdump expression for one network's encapsulated packets on the underlay."""
    ip = "ip6" if family_of(bed.config, tunnel_type) == 6 else "ip"
    if tunnel_type == "gre":
        return f"{ip} proto 47"
    port = bed.config.options.vxlan_udp_port if tunnel_type == "vxlan" else 6081
    return f"{ip} and udp port {port}"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    figure: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<44} {self.figure}"


@dataclass
class Bed:
    """Everything the checks need to find their way around a running testbed."""

    state: TestbedState
    spec: TestbedSpec
    config: Config

    def ovs(self, host: str) -> PrivateOvs:
        return PrivateOvs(host, Path(self.state.hosts[host].rundir))

    def vm(self, name: str) -> Vm:
        return next(vm for vm in self.spec.vms if vm.name == name)

    def pair_across_hosts(self, network: str | None = None) -> tuple[Vm, Vm]:
        """Two VMs of one network (of `network`, if given) on different hosts."""
        for first in self.spec.vms:
            for second in self.spec.vms:
                if first.network == second.network and first.host != second.host and first.ip and second.ip \
                        and network in (None, first.network):
                    return first, second
        raise LookupError(f"no network{' ' + network if network else ''} has VMs on two hosts")

    def underlay_port(self, host: str) -> str:
        return f"ulp{self.config.host_names.index(host) + 1}"

    def tunnel_port(self, remote: str, network: str) -> str:
        return tunnel_port_name(self.config.network(network).type, self.config.host(remote).local_ip)

    def local_vlans(self, host: str) -> dict[str, int]:
        """Each network's local VLAN on the host: the config's, or, driven by Neutron (whose agents choose
        them as ports come), the tag its VIFs carry on br-int."""
        if not self.state.neutron:
            return local_vlans(self.config.host(host), self.config)
        tags = {}
        for vm in self.spec.vms:
            if vm.host == host:
                tags[vm.network] = int(self.ovs(host).vsctl("get", "Port", vm.device("qvo"), "tag"))
        for port in self.spec.services:
            if port.host == host:
                tags[port.network] = int(self.ovs(host).vsctl("get", "Port", port.name, "tag"))
        return tags


def dhcp(bed: Bed, seconds: float) -> Check:
    dhcp_vms = [vm for vm in bed.spec.vms if bed.spec.subnets.get(vm.network) and bed.spec.subnets[vm.network].dhcp]
    right = 0
    for vm in dhcp_vms:
        out = probes.netns(vm.name, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        right += f" {vm.ip}/" in out
    ok = bool(dhcp_vms) and right == len(dhcp_vms)
    return Check("every VM got its address from dnsmasq", ok, f"{right}/{len(dhcp_vms)} leased in {seconds:.1f} s")


def ping_across_hosts(bed: Bed, network: str | None = None) -> Check:
    first, second = bed.pair_across_hosts(network)
    assert second.ip is not None
    replies, rtt = probes.ping(first.name, second.ip, count=10, interval=0.1)
    figure = f"{replies}/10 replies, avg RTT {rtt:.2f} ms" if rtt is not None else f"{replies}/10 replies"
    return Check(f"ping {first.name}@{first.host} -> {second.name}@{second.host}", replies == 10, figure)


def tcp_across_hosts(bed: Bed) -> Check:
    """iperf3 on the one TCP port the security group admits."""
    first, second = bed.pair_across_hosts()
    assert second.ip is not None
    probes.iperf3_server(bed.state, second.name, SSH)
    gbits, error = probes.iperf3_gbits(first.name, second.ip, SSH)
    ok = gbits is not None and gbits > 0
    return Check(f"TCP (iperf3) {first.name} -> {second.name} over GRE", ok,
                 f"{gbits:.2f} Gbit/s" if gbits is not None else f"failed: {error.strip()[:80]}")


def snat(bed: Bed) -> Check:
    router = bed.spec.router
    if router is None:
        return Check("SNAT to the external host", False, "no router in this testbed")
    vm = bed.spec.vms[0]
    with probes.Capture("external", "eth0", f"icmp and dst host {router.external_host}") as seen:
        replies, _ = probes.ping(vm.name, str(router.external_host), count=3)
    sources = {m.group(1) for m in (ICMP_REQUEST.search(line) for line in seen.lines) if m}
    ok = replies == 3 and sources == {str(router.gateway_ip)}
    return Check(f"{vm.name} pings {router.external_host} through SNAT", ok,
                 f"{replies}/3 replies, external host sees source {', '.join(sorted(sources)) or 'nothing'}")


def security_group(bed: Bed) -> Check:
    first, second = bed.pair_across_hosts()
    assert second.ip is not None
    for port in (SSH, 8080):
        probes.iperf3_server(bed.state, second.name, port)
    ssh = probes.tcp_connects(first.name, second.ip, SSH)
    other = probes.tcp_connects(first.name, second.ip, 8080)
    icmp = probes.ping(first.name, second.ip, count=2)[0] == 2
    ok = ssh and not other and icmp
    return Check("security group on qbr: ssh, icmp in; tcp/8080 dropped", ok,
                 f"tcp/22 {'open' if ssh else 'CLOSED'}, tcp/8080 {'OPEN' if other else 'dropped'}, "
                 f"icmp {'passes' if icmp else 'BLOCKED'}")


def learned_flows(bed: Bed) -> Check:
    first, second = bed.pair_across_hosts()
    probes.ping(first.name, str(second.ip), count=2)
    flows = parse_dump(bed.ovs(first.host).ofctl("--no-stats", "dump-flows", "br-tun", "table=20"))
    learned = [f for f in flows if f.priority == 1 and f.hard_timeout]
    network = bed.config.network(first.network)
    vlan = bed.local_vlans(first.host)[first.network]
    ofport = int(bed.ovs(first.host).vsctl("get", "Interface", bed.tunnel_port(second.host, first.network),
                                          "ofport"))
    wanted = [f for f in learned if f.match.value("dl_dst") == mac_value(second.mac)]
    ok = bool(wanted) and wanted[0].render().endswith(
        f"vlan_tci={vlan:#06x}/0x0fff,dl_dst={second.mac} actions=load:0->NXM_OF_VLAN_TCI[],"
        f"load:{network.segmentation_id:#x}->NXM_NX_TUN_ID[],output:{ofport}")
    return Check(f"{first.host} br-tun table 20 learned {second.name}", ok,
                 f"{len(learned)} learned; VLAN {vlan}, key {network.segmentation_id:#x}, port {ofport}")


def gre_on_underlay(bed: Bed, network: str | None = None) -> Check:
    """A ping's packets on the sender's underlay port, each encapsulated with its network's key:
    GRE (`GREv0, key=K`) or VXLAN (`VXLAN ... vni K`, the inner frame on tcpdump's next line)."""
    first, second = bed.pair_across_hosts(network)
    tunnel = bed.config.network(first.network)
    key = tunnel.segmentation_id
    expression = _tunnel_expression(bed, tunnel.type)
    if tunnel.type == "gre":
        header, label = f"GREv0, key={key:#x}", f"GREv0 key={key:#x}"
    else:
        header, label = f"VXLAN, flags [I] (0x08), vni {key}", f"VXLAN vni {key}"
    with probes.Capture("underlay", bed.underlay_port(first.host), expression) as seen:
        probes.ping(first.name, str(second.ip), count=2)
    packets = []  # (outer line, inner line): VXLAN's inner frame is printed on a line of its own
    for index, line in enumerate(seen.lines):
        inner = line if tunnel.type == "gre" else (seen.lines[index + 1] if index + 1 < len(seen.lines) else "")
        if "ICMP echo" in inner and (tunnel.type == "gre" or "VXLAN" in line):
            packets.append((line, inner))
    ok = bool(packets) and all(header in outer for outer, _ in packets)
    name = tunnel.type.upper()
    return Check(f"the underlay carries {name} with the network's key", ok,
                 f"{len(packets)} ICMP packets as {label}" if packets else f"no {name} seen")


def largest_packet(bed: Bed, network: str | None = None) -> Check:
    """The VM's MTU is what its network's tunnel carries (flows.mtu, given by DHCP option 26 or set
    on the VM): the largest packet with DF set crosses, and one byte more is refused by the VM's own
    stack instead of vanishing in the tunnel."""
    first, second = bed.pair_across_hosts(network)
    mtu = bed.spec.mtu(first.network)
    link = probes.netns(first.name, "ip", "-o", "link", "show", "eth0").stdout
    fits = probes.netns(first.name, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", str(mtu - 28),
                        str(second.ip), timeout=30)
    over = probes.netns(first.name, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(mtu - 27), str(second.ip),
                        timeout=30)
    crossed = " 2 received" in fits.stdout
    refused = "message too long" in (over.stdout + over.stderr).lower()
    ok = f" mtu {mtu} " in link and crossed and refused
    kind = bed.config.network(first.network).type
    return Check(f"VM MTU {mtu} ({kind}): the largest packet crosses, one byte more is refused", ok,
                 f"{mtu} bytes with DF: {'2/2 across' if crossed else 'LOST'}; {mtu + 1}: "
                 + ("refused (message too long)" if refused else "NOT refused"))


def inject_unknown_vlan(bed: Bed) -> Check:
    """Frames from patch-int with another host's VLAN, or one nobody uses, go nowhere."""
    vlans_of = {h.name: set(bed.local_vlans(h.name).values()) for h in bed.config.hosts}
    every = set().union(*vlans_of.values())
    hosts_with_vms = [vm.host for vm in bed.spec.vms]
    host = max(hosts_with_vms, key=lambda h: (len(every - vlans_of[h]), -hosts_with_vms.index(h)))
    vlans = [*sorted(every - vlans_of[host])[:1], 99]
    with probes.Capture("underlay", bed.underlay_port(host), ANY_TUNNEL) as seen:
        for vlan in vlans:
            frame = probes.arp_request("fa:16:3e:ee:ee:ee", "10.9.9.9", "10.9.9.10", vlan=vlan)
            bed.ovs(host).ofctl("packet-out", "br-tun", f"in_port=1 packet={frame.hex()} actions=table")
    leaked = [line for line in seen.lines if "fa:16:3e:ee:ee:ee" in line or "10.9.9.9" in line]
    return Check("frames from patch-int with a foreign VLAN go nowhere", not leaked,
                 f"VLAN {', '.join(map(str, vlans))} injected on {host}: {len(leaked)} left br-tun")


def intruder_gre(bed: Bed) -> Check:
    """GRE from an underlay host that is no configured endpoint reaches no VM."""
    vm = bed.spec.vms[0]
    key = bed.config.network(vm.network).segmentation_id
    target = bed.config.host(vm.host).local_ip
    _add_intruder(bed)
    try:
        captures = [probes.Capture(other.name, "eth0", "ether src fa:16:3e:66:66:66") for other in bed.spec.vms]
        # The packets must reach the endpoint's host, or the check would prove nothing.
        arriving = probes.Capture(vm.host, "eth0", f"{_tunnel_expression(bed, 'gre')} and src host {intruder_ip(bed)}")
        with ExitStack() as watching:
            for capture in (*captures, arriving):
                watching.enter_context(capture)
            frame = probes.arp_request("fa:16:3e:66:66:66", "10.0.0.66", vm.ip or "10.0.0.3")
            for _ in range(3):
                probes.send_gre(INTRUDER, target, key, frame)
    finally:
        _remove_intruder(bed)
    delivered = sum(len(c.lines) for c in captures)
    arrived = len(arriving.lines)
    return Check("GRE from a non-endpoint with a valid key reaches nothing", delivered == 0 and arrived == 3,
                 f"3 packets key={key:#x} from {intruder_ip(bed)} to {target}: {arrived} arrived, "
                 f"{delivered} frames delivered")


def _add_intruder(bed: Bed) -> None:
    subprocess.run(["ip", "netns", "add", INTRUDER], check=True)
    bed.state.add_namespace(INTRUDER)
    subprocess.run(["ip", "link", "add", "ulpx", "netns", "underlay", "type", "veth", "peer", "name", "eth0",
                    "netns", INTRUDER], check=True)
    probes.netns("underlay", "ip", "link", "set", "ulpx", "master", "underlay", "up", check=True)
    probes.netns(INTRUDER, "ip", "addr", "add", f"{intruder_ip(bed)}/{bed.spec.underlay.prefixlen}", "dev", "eth0",
                 *(["nodad"] if bed.spec.underlay.version == 6 else []), check=True)
    probes.netns(INTRUDER, "ip", "link", "set", "eth0", "up", check=True)
    for host in bed.config.hosts:  # it knows where the endpoints are: no ARP in the way
        probes.netns(INTRUDER, "ip", "neigh", "replace", host.local_ip, "lladdr", phy_mac(host.local_ip),
                     "dev", "eth0", check=True)


def _remove_intruder(bed: Bed) -> None:
    subprocess.run(["ip", "netns", "del", INTRUDER], check=False)
    if INTRUDER in bed.state.namespaces:
        bed.state.namespaces.remove(INTRUDER)
        bed.state.save()


def overlapping_subnets(bed: Bed) -> Check:
    """The same address in two networks: each VM reaches its own network's, the other never sees it."""
    by_network: dict[str, list[Vm]] = {}
    for vm in bed.spec.vms:
        by_network.setdefault(vm.network, []).append(vm)
    networks = sorted(by_network)
    if len(networks) < 2:
        return Check("overlapping subnets stay apart", False, "needs two networks")
    first, second = bed.pair_across_hosts()
    others = [vm for vm in bed.spec.vms if vm.network != first.network]
    captures = [probes.Capture(vm.name, "eth0", f"host {first.ip}") for vm in others]
    with ExitStack() as watching:
        for capture in captures:
            watching.enter_context(capture)
        replies, _ = probes.ping(first.name, str(second.ip), count=3)
    neighbour = probes.netns(first.name, "ip", "neigh", "show", str(second.ip)).stdout
    seen = sum(len(c.lines) for c in captures)
    ok = replies == 3 and second.mac in neighbour and seen == 0
    return Check(f"{second.ip} in {first.network} is {second.name}, not the {len(others)} others", ok,
                 f"{replies}/3 replies from {second.mac}; other networks' VMs saw {seen} packets")


def broadcast_copies(bed: Bed) -> Check:
    """One broadcast: exactly one copy per remote VM on the network, none elsewhere, no loop."""
    sender = bed.spec.vms[0]
    target = "10.1.0.222" if sender.ip and sender.ip.startswith("10.1.") else "10.0.0.222"
    captures = {vm.name: probes.Capture(vm.name, "eth0", f"arp and host {target}")
                for vm in bed.spec.vms if vm.name != sender.name}
    underlay = probes.Capture("underlay", bed.underlay_port(sender.host), ANY_TUNNEL)
    with ExitStack() as watching:
        for capture in (*captures.values(), underlay):
            watching.enter_context(capture)
        probes.send_frame(sender.name, "eth0", probes.arp_request(sender.mac, sender.ip or "10.1.0.1", target))
    wrong = []
    for vm in bed.spec.vms:
        if vm.name == sender.name:
            continue
        copies = len(captures[vm.name].lines)
        expected = 1 if vm.network == sender.network and vm.host != sender.host else 0
        if copies != expected:
            wrong.append(f"{vm.name}@{vm.host}/{vm.network}: {copies}")
    same = sum(1 for vm in bed.spec.vms if vm.network == sender.network and vm.host != sender.host)
    sent = len([line for line in underlay.lines if target in line])
    loops = sent > len(bed.config.hosts) - 1
    return Check("one broadcast: one copy per remote VM of its network", not wrong and not loops,
                 f"{same} remote VMs got 1 copy, others 0; {sent} GRE copies left {sender.host}"
                 + (f"; WRONG: {', '.join(wrong)}" if wrong else "") + ("; LOOP" if loops else ""))


def seed_checks(bed: Bed, dhcp_seconds: float) -> list[Check]:
    return [dhcp(bed, dhcp_seconds), ping_across_hosts(bed), tcp_across_hosts(bed), snat(bed),
            security_group(bed), learned_flows(bed), gre_on_underlay(bed), largest_packet(bed),
            inject_unknown_vlan(bed), intruder_gre(bed)]


def mesh_checks(bed: Bed) -> list[Check]:
    return [ping_across_hosts(bed), tcp_across_hosts(bed), overlapping_subnets(bed), broadcast_copies(bed),
            learned_flows(bed), gre_on_underlay(bed), largest_packet(bed), inject_unknown_vlan(bed),
            intruder_gre(bed)]


# ----- --neutron: ports made and deleted through Neutron's API on the running testbed -----------------

NEW_VM = "vm-neutron"  # the namespace of the VM the API check plugs in
NEW_MAC = "fa:16:3e:00:be:ef"


def _br_tun_mentions(bed: Bed, mac: str) -> dict[str, dict[str, int]]:
    """Per host: br-tun's flows that name the MAC, l2population's (priority 2) and learned ones."""
    found = {}
    for host in bed.config.host_names:
        lines = [line for line in bed.ovs(host).ofctl("--no-stats", "dump-flows", "br-tun").splitlines()
                 if mac in line]
        found[host] = {"learned": sum("hard_timeout=" in line for line in lines),
                       "l2pop": sum("hard_timeout=" not in line for line in lines)}
    return found


def neutron_port_lifecycle(bed: Bed, timeout: float = 30, meanwhile: Callable[[], object] | None = None,
                           before_delete: Callable[[], object] | None = None) -> list[Check]:
    """A port created through the API and plugged on one host is reachable from a VM on another host (timed
    from the API call); deleted through the API, it leaves every br-tun, learned flows included (timed).
    `meanwhile` runs once the VM is plugged (a fault test restarts a server there); `before_delete` once
    it is reachable (that test waits there for the resyncs the restart caused)."""
    from ovshost.neutronapi import NeutronApi

    api = NeutronApi(Path(bed.state.neutron["api_socket"]))
    source, target = bed.pair_across_hosts()
    subnet = bed.spec.subnets[source.network]
    ip = str(subnet.cidr.network_address + 200)
    started = time.monotonic()
    port = api.create_port(bed.state.neutron["networks"][source.network], NEW_MAC, ip, None, "compute:nova", NEW_VM)
    api.bind_port(port["id"], target.host)
    tap = f"tap{port['id'][:11]}"
    _plug_new_vm(bed, target.host, tap, port["id"], ip, subnet.cidr.prefixlen, bed.spec.mtu(source.network))
    try:
        if meanwhile is not None:
            meanwhile()
        active = api.wait_status(port["id"], "ACTIVE", timeout) + 0.0
        active_at = time.monotonic() - started
        reached_at = None
        while time.monotonic() - started < timeout:
            if probes.ping(source.name, ip, count=1, interval=0.2)[0] == 1:
                reached_at = time.monotonic() - started
                break
        replies, _ = probes.ping(source.name, ip, count=5, interval=0.1)
        made = Check(f"a port made through the API is reachable from {source.name}@{source.host}",
                     reached_at is not None and replies == 5,
                     f"{ip} on {target.host}: ACTIVE {active_at:.2f} s after the API call, first reply at "
                     f"{reached_at:.2f} s, then {replies}/5" if reached_at is not None else
                     f"{ip} on {target.host}: ACTIVE {active_at:.2f} s ({active:.2f} s waited), no reply in "
                     f"{timeout:.0f} s")
        if before_delete is not None:
            before_delete()
        before = _br_tun_mentions(bed, NEW_MAC)
        deleted = time.monotonic()
        api.delete_port(port["id"])
        after = before
        while time.monotonic() - deleted < timeout:
            after = _br_tun_mentions(bed, NEW_MAC)
            if not any(sum(counts.values()) for counts in after.values()):
                break
            time.sleep(0.05)
        gone_in = time.monotonic() - deleted
        held = ", ".join(f"{h} {c['l2pop']}+{c['learned']}" for h, c in sorted(before.items()))
        left = sum(sum(counts.values()) for counts in after.values())
        where = ", ".join(f"{h} {c['l2pop']}+{c['learned']}" for h, c in sorted(after.items()) if sum(c.values()))
        had = {h for h, c in before.items() if c["l2pop"]}
        removed = Check("a port deleted through the API leaves every br-tun", left == 0 and bool(had),
                        f"before: {held} (l2pop+learned flows naming {NEW_MAC}); after: {left} flows"
                        + (f" ({where})" if where else "") + f", {gone_in:.2f} s after the API call")
    finally:
        _unplug_new_vm(bed, target.host, tap)
    return [made, removed]


def _plug_new_vm(bed: Bed, host: str, tap: str, port_id: str, ip: str, prefix: int, vm_mtu: int) -> None:
    """A VM plugged straight into br-int as os-vif plugs one (no qbr): a namespace, a veth, the port's IDs."""
    subprocess.run(["ip", "netns", "add", NEW_VM], check=True)
    bed.state.add_namespace(NEW_VM)
    subprocess.run(["ip", "link", "add", tap, "netns", host, "type", "veth", "peer", "name", "eth0", "netns", NEW_VM],
                   check=True)
    mtu = str(vm_mtu)
    for quiet in (NEW_VM, host):  # as the seed's VMs and os-vif's plumbing: no IPv6 chatter to re-learn it by
        device = "eth0" if quiet == NEW_VM else tap
        probes.netns(quiet, "sysctl", "-qw", f"net.ipv6.conf.{device}.disable_ipv6=1", check=True)
    for argv in (["ip", "link", "set", "eth0", "address", NEW_MAC, "mtu", mtu, "up"],
                 ["ip", "addr", "add", f"{ip}/{prefix}", "dev", "eth0"], ["ip", "link", "set", "lo", "up"],
                 ["ethtool", "-K", "eth0", "tx", "off"]):
        probes.netns(NEW_VM, *argv, check=True)
    probes.netns(host, "ip", "link", "set", tap, "mtu", mtu, "up", check=True)
    probes.netns(host, "ethtool", "-K", tap, "tx", "off", check=True)
    bed.ovs(host).vsctl("add-port", "br-int", tap, "--", "set", "Interface", tap,
                        f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={NEW_MAC}",
                        "external_ids:iface-status=active")


def _unplug_new_vm(bed: Bed, host: str, tap: str) -> None:
    bed.ovs(host).run("ovs-vsctl", "--if-exists", "del-port", "br-int", tap, check=False)
    subprocess.run(["ip", "netns", "del", NEW_VM], check=False)
    if NEW_VM in bed.state.namespaces:
        bed.state.namespaces.remove(NEW_VM)
        bed.state.save()
