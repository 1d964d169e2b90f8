"""Random brtun configs for the compatibility suite: valid by construction, small enough to run fast.

2-8 hosts, 1-4 networks of GRE, VXLAN and Geneve, l2population and the ARP
responder on or off, hosts that speak only some tunnel types, ports with and
without an address, and explicit local VLANs and ofports next to the
defaults.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml
from hypothesis import strategies as st

from flows.config import Config, parse_config
from flows.naming import tunnel_port_name

TYPES = ("gre", "vxlan", "geneve")


@st.composite
def configs(draw: st.DrawFn) -> Config:
    network_types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=4))
    keys = draw(st.lists(st.integers(1, 2**24 - 1), min_size=len(network_types), max_size=len(network_types),
                         unique=True))
    networks = {f"n{i}": {"type": kind, "segmentation_id": key}
                for i, (kind, key) in enumerate(zip(network_types, keys, strict=True))}
    l2_population = draw(st.booleans())
    options: dict[str, Any] = {"l2_population": l2_population,
                               "arp_responder": l2_population and draw(st.booleans())}
    count = draw(st.integers(2, 8))
    ipv6 = draw(st.booleans())  # every endpoint of one family: Neutron makes no tunnel across families
    hosts: dict[str, Any] = {}
    mac = 0
    for index in range(count):
        speaks = draw(st.sets(st.sampled_from(sorted(set(network_types))), min_size=1))
        address = str(ipaddress.ip_address(f"fd00:{index:x}::{10 + index:x}" if ipv6 else
                                           f"10.{index // 200}.{index % 200}.{10 + index}"))
        entry: dict[str, Any] = {"datapath_id": 0x100 + index, "local_ip": address,
                                 "tunnel_types": sorted(speaks, key=TYPES.index)}
        ports = []
        for name, network in networks.items():
            if network["type"] not in speaks:
                continue
            for _ in range(draw(st.integers(0, 2))):
                mac += 1
                port: dict[str, Any] = {"network": name, "mac": f"fa:16:3e:00:{mac >> 8:02x}:{mac & 0xFF:02x}"}
                if draw(st.booleans()):
                    port["ip"] = f"172.16.{mac >> 8}.{mac & 0xFF}"
                ports.append(port)
        entry["ports"] = ports
        carried = sorted({port["network"] for port in ports})
        if carried and draw(st.booleans()):  # explicit VLANs for some networks, the rest by default
            chosen = draw(st.lists(st.integers(1, 4094), min_size=len(carried), max_size=len(carried), unique=True))
            entry["local_vlans"] = {name: vlan for name, vlan in zip(carried, chosen, strict=True)
                                    if draw(st.booleans())}
        hosts[f"h{index}"] = entry
    for index, entry in enumerate(hosts.values()):  # explicit ofports next to the rule's
        ofports: dict[str, int] = {}
        if draw(st.booleans()):
            ofports["patch-int"] = draw(st.integers(2, 9))
        for other in hosts.values():
            shared = [t for t in entry["tunnel_types"] if t in other["tunnel_types"]]
            if other is not entry and shared and draw(st.integers(0, 3)) == 0:
                kind = draw(st.sampled_from(shared))
                ofports[tunnel_port_name(kind, other["local_ip"])] = 10 + len(ofports) + 20 * index
        if ofports:
            entry["ofports"] = ofports
    text = yaml.safe_dump({"options": options, "networks": networks, "hosts": hosts}, sort_keys=False)
    return parse_config(text)
