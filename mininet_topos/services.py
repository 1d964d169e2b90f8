"""What Neutron's other agents put around br-int, reproduced as the seed shows it.

- the L2 agent's iptables hybrid firewall on the qbr bridge of each VM;
- the DHCP agent's dnsmasq in qdhcp-<network>;
- the L3 agent's qrouter-<router>: qr-/qg- addresses, default route, and
  the nat table exactly as the seed's `iptables -t nat -S` lists it.

The rule texts are built here as plain data; the topology applies them.
"""

from __future__ import annotations

from pathlib import Path

from mininet_topos.spec import Router, ServicePort, Subnet, Vm

SG_CHAIN = "neutron-openvswi"
SG_FALLBACK = f"{SG_CHAIN}-sg-fallback"
METADATA_PORT = 9697


def _port_chain(vm: Vm, direction: str) -> str:
    return f"{SG_CHAIN}-{direction}{vm.suffix[:10]}"  # chain names stay under 29 characters


def security_group_rules(vms: list[Vm], allowed: tuple[str, ...]) -> str:
    """An iptables-restore filter table: Neutron's hybrid firewall for the VMs of one host.

    Ingress to a VM: established and related traffic, then the allowed
    protocols (icmp, ssh = tcp/22, dhcp = udp 67->68), then drop.  Egress
    from a VM: its DHCP requests, anything from its own MAC; spoofed MACs
    are dropped.  The physdev match sees bridged traffic on qbr because
    bridge-nf-call-iptables is on in the host's namespace."""
    lines = ["*filter", f":{SG_CHAIN}-FORWARD - [0:0]", f":{SG_FALLBACK} - [0:0]"]
    for vm in vms:
        lines += [f":{_port_chain(vm, 'i')} - [0:0]", f":{_port_chain(vm, 'o')} - [0:0]"]
    lines.append(f"-A FORWARD -j {SG_CHAIN}-FORWARD")
    for vm in vms:
        tap = vm.device("tap")
        lines += [
            f"-A {SG_CHAIN}-FORWARD -m physdev --physdev-out {tap} --physdev-is-bridged "
            f"-m comment --comment \"Direct traffic from the VM interface to the security group chain.\" "
            f"-j {_port_chain(vm, 'i')}",
            f"-A {SG_CHAIN}-FORWARD -m physdev --physdev-in {tap} --physdev-is-bridged "
            f"-m comment --comment \"Direct traffic from the VM interface to the security group chain.\" "
            f"-j {_port_chain(vm, 'o')}",
        ]
        ingress = _port_chain(vm, "i")
        lines.append(f"-A {ingress} -m state --state RELATED,ESTABLISHED -j RETURN")
        if "dhcp" in allowed:
            lines.append(f"-A {ingress} -p udp -m udp --sport 67 --dport 68 -j RETURN")
        if "icmp" in allowed:
            lines.append(f"-A {ingress} -p icmp -j RETURN")
        if "ssh" in allowed:
            lines.append(f"-A {ingress} -p tcp -m tcp --dport 22 -j RETURN")
        lines += [f"-A {ingress} -m state --state INVALID -j DROP", f"-A {ingress} -j {SG_FALLBACK}"]
        egress = _port_chain(vm, "o")
        lines += [
            f"-A {egress} -p udp -m udp --sport 68 --dport 67 -j RETURN",
            f"-A {egress} -m mac ! --mac-source {vm.mac} -j DROP",
            f"-A {egress} -m state --state RELATED,ESTABLISHED -j RETURN",
            f"-A {egress} -j RETURN",
        ]
    lines += [f"-A {SG_FALLBACK} -m comment --comment \"Default drop rule for unmatched traffic.\" -j DROP",
              "COMMIT", ""]
    return "\n".join(lines)


def router_nat_rules(router: Router) -> str:
    """The L3 agent's nat table, rule for rule as the seed's `iptables -t nat -S`."""
    qg = router.gateway_name
    snat = f"SNAT --to-source {router.gateway_ip}"
    return "\n".join([
        "*nat",
        ":neutron-l3-agent-OUTPUT - [0:0]",
        ":neutron-l3-agent-POSTROUTING - [0:0]",
        ":neutron-l3-agent-PREROUTING - [0:0]",
        ":neutron-l3-agent-float-snat - [0:0]",
        ":neutron-l3-agent-snat - [0:0]",
        ":neutron-postrouting-bottom - [0:0]",
        "-A PREROUTING -j neutron-l3-agent-PREROUTING",
        "-A OUTPUT -j neutron-l3-agent-OUTPUT",
        "-A POSTROUTING -j neutron-l3-agent-POSTROUTING",
        "-A POSTROUTING -j neutron-postrouting-bottom",
        f"-A neutron-l3-agent-POSTROUTING ! -i {qg} ! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT",
        "-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 "
        f"-j REDIRECT --to-ports {METADATA_PORT}",
        "-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat",
        f"-A neutron-l3-agent-snat -o {qg} -j {snat}",
        f"-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j {snat}",
        "-A neutron-postrouting-bottom -m comment --comment \"Perform source NAT on outgoing traffic.\" "
        "-j neutron-l3-agent-snat",
        "COMMIT",
        "",
    ])


def dnsmasq_files(directory: Path, subnet: Subnet, dhcp_port: ServicePort, vms: list[Vm],
                  services: list[ServicePort], mtu: int) -> None:
    """The DHCP agent's files: fixed addresses by MAC (Neutron never hands out dynamic ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o777)  # dnsmasq drops to nobody before it writes its leases
    hosts = [(vm.mac, vm.ip) for vm in vms if vm.network == subnet.network and vm.ip]
    hosts += [(s.mac, s.ip) for s in services if s.network == subnet.network]
    (directory / "host").write_text("".join(
        f"{mac},host-{ip.replace('.', '-')}.openstacklocal,{ip}\n" for mac, ip in hosts))
    (directory / "addn_hosts").write_text("".join(
        f"{ip}\thost-{ip.replace('.', '-')}.openstacklocal host-{ip.replace('.', '-')}\n" for _, ip in hosts))
    options = [f"tag:tag0,option:mtu,{mtu}"]
    if subnet.gateway is not None:
        options.insert(0, f"tag:tag0,option:router,{subnet.gateway}")
    (directory / "opts").write_text("\n".join(options) + "\n")
    (directory / "leases").touch()
    (directory / "leases").chmod(0o666)


def dnsmasq_command(directory: Path, subnet: Subnet, dhcp_port: ServicePort) -> list[str]:
    """The command line of the seed's `ps -fe | grep <network id>`."""
    return [
        "dnsmasq", "--no-hosts", "--no-resolv", "--strict-order", "--except-interface=lo",
        f"--pid-file={directory}/pid", f"--dhcp-hostsfile={directory}/host",
        f"--addn-hosts={directory}/addn_hosts", f"--dhcp-optsfile={directory}/opts",
        f"--dhcp-leasefile={directory}/leases", "--dhcp-match=set:ipxe,175", "--bind-interfaces",
        f"--interface={dhcp_port.name}", f"--dhcp-range=set:tag0,{subnet.cidr.network_address},static,86400s",
        "--dhcp-lease-max=256", "--conf-file=", "--domain=openstacklocal",
    ]
