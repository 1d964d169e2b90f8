"""Packets for property and agreement tests: every identity a br-tun can be shown, right or wrong."""

from __future__ import annotations

import random
from dataclasses import dataclass

from flows import fields
from flows.config import Config
from flows.model import local_vlans
from flows.naming import PATCH_INT, tunnel_type_of
from flows.replay import bridge_ports

BROADCAST = 0xFFFFFFFFFFFF
UNKNOWN_PORT = 99
UNKNOWN_VLAN = 7
UNKNOWN_KEY = 0xABCDE


@dataclass(frozen=True)
class Universe:
    """What one host's br-tun knows: its ports, VLANs, keys, and the MACs and IPs around it."""

    ports: dict[str, int]
    vlans: dict[int, str]  # local VLAN -> network
    keys: dict[tuple[str, int], str]  # (tunnel type, key) -> network this host carries
    network_vlan: dict[str, int]
    network_key: dict[str, int]
    network_type: dict[str, str]
    macs: tuple[int, ...]
    ips: tuple[int, ...]

    def port_type(self, ofport: int) -> str | None:
        for name, number in self.ports.items():
            if number == ofport and name != PATCH_INT:
                return tunnel_type_of(name)
        return None


def universe(config: Config, host: str) -> Universe:
    vlans = local_vlans(config.host(host), config)
    keys = {(config.network(n).type, config.network(n).segmentation_id): n for n in vlans}
    macs = tuple(fields.mac_value(p.mac) for h in config.hosts for p in h.ports)
    ips = tuple(fields.ipv4_value(p.ip) for h in config.hosts for p in h.ports if p.ip)
    return Universe(bridge_ports(config, host), {v: n for n, v in vlans.items()}, keys, vlans,
                    {n.name: n.segmentation_id for n in config.networks}, {n.name: n.type for n in config.networks},
                    macs, ips)


def random_packet(world: Universe, rng: random.Random, learned_macs: list[int]) -> dict[str, int]:
    """One packet: any in-port, VLAN, key, MAC, ARP or IPv6 fields, right or wrong for this host."""
    in_port = UNKNOWN_PORT if rng.random() < 0.05 else rng.choice(list(world.ports.values()))
    packet: dict[str, int] = {"in_port": in_port}
    every_key = [*world.network_key.values(), UNKNOWN_KEY]
    if in_port == world.ports[PATCH_INT]:
        wrong = rng.random() < 0.15
        choice = rng.choice([UNKNOWN_VLAN, None]) if wrong or not world.network_vlan else \
            rng.choice(list(world.network_vlan.values()))
        if choice is not None:
            packet["vlan_tci"] = fields.VLAN_CFI | choice
        if rng.random() < 0.2:
            packet["tun_id"] = rng.choice(every_key)  # metadata left over must not matter
    else:
        packet["tun_id"] = rng.choice(every_key)
        if rng.random() < 0.1:
            packet["vlan_tci"] = fields.VLAN_CFI | rng.choice([*world.network_vlan.values(), UNKNOWN_VLAN])
    sources = [*world.macs, 0xFA163E000000 | rng.randrange(1, 32)]
    packet["dl_src"] = rng.choice(sources)
    packet["dl_dst"] = BROADCAST if rng.random() < 0.3 else rng.choice(
        [*world.macs, *learned_macs, 0x333300000001, 0x01005E000001, 0xFA163E000000 | rng.randrange(1, 32)])
    kind = rng.random()
    if kind < 0.35:
        packet["dl_type"] = fields.ETH_TYPE_ARP
        packet["arp_op"] = rng.choice([1, 2])
        packet["arp_spa"] = rng.choice([*world.ips, 0x0A000063])
        packet["arp_tpa"] = rng.choice([*world.ips, 0x0A000064])
        packet["arp_sha"] = packet["dl_src"]
        packet["arp_tha"] = rng.choice([0, BROADCAST])
    elif kind < 0.5:
        packet["dl_type"] = fields.ETH_TYPE_IPV6
        packet["nw_proto"] = fields.IPPROTO_ICMPV6
        packet["icmp_type"] = rng.choice([133, 134, 135, 136])
    return packet
