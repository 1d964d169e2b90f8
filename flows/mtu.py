"""The MTU a network leaves its VMs: the underlay's, less what the tunnel wraps around each frame.

Neutron's numbers (neutron-lib's constants, ml2's type drivers' get_mtu):
the encapsulation costs GRE 22 bytes (8 of GRE with a key, 14 of the inner
Ethernet header), VXLAN 30 (8 UDP, 8 VXLAN, 14) and Geneve its
`max_header_size` (default 30: the same with no options), plus the outer IP
header, 20 bytes for IPv4 and 40 for IPv6.  A network's MTU is the
underlay's (`underlay_mtu`, Neutron's global_physnet_mtu) less both: 1458
for GRE over IPv4 on 1500, 1450 for VXLAN and Geneve, 1438 and 1430 over
IPv6.  A bigger frame does not fit the underlay: with df_default it is
dropped, not fragmented.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flows.config import Config

ENCAPSULATION = {"gre": 22, "vxlan": 30}  # GRE_ENCAP_OVERHEAD, VXLAN_ENCAP_OVERHEAD; Geneve: max_header_size
IP_HEADER = {4: 20, 6: 40}  # IP_HEADER_LENGTH


@dataclass(frozen=True)
class NetworkMtu:
    network: str
    mtu: int
    overhead: int
    family: int

    def explain(self, underlay_mtu: int, tunnel_type: str) -> str:
        return (f"{self.mtu} = {underlay_mtu} - {self.overhead} ({tunnel_type} over IPv{self.family}: "
                f"{self.overhead - IP_HEADER[self.family]} + {IP_HEADER[self.family]})")


def overhead(tunnel_type: str, family: int, geneve_max_header_size: int = 30) -> int:
    encapsulation = geneve_max_header_size if tunnel_type == "geneve" else ENCAPSULATION[tunnel_type]
    return encapsulation + IP_HEADER[family]


def family_of(config: Config, tunnel_type: str) -> int:
    """The address family of the endpoints of a tunnel type (validation makes them share one)."""
    for host in config.hosts:
        if tunnel_type in host.tunnel_types:
            return ipaddress.ip_address(host.local_ip).version
    return 4


def network_mtu(config: Config, network: str) -> NetworkMtu:
    """The largest MTU a VM on `network` may have."""
    tunnel_type = config.network(network).type
    family = family_of(config, tunnel_type)
    cost = overhead(tunnel_type, family, config.options.geneve_max_header_size)
    return NetworkMtu(network, config.options.underlay_mtu - cost, cost, family)
