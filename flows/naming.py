"""Names and numbers of br-tun's ports: the one place that knows them.

Tunnel ports are named as Neutron names them: `<type>-<remote IPv4 as 8
hex digits>` (neutron `get_tunnel_name_full`), at most 15 characters, so
the name alone says which endpoint and which encapsulation a port is.

OpenFlow port numbers: Open vSwitch assigns the lowest free number unless
`ofport_request` asks for one.  brtun asks, with a rule that depends only on
the port itself, so adding a host or letting l2population add or remove a
tunnel port never renumbers another port:

    patch-int            -> 1
    <type>-<remote IPv4> -> 0x1000 * T + (remote IPv4 & 0xfff)
                            T = 1 GRE, 2 VXLAN, 3 Geneve

so in hex an ofport is the type digit followed by the last three hex digits
of the port's name: gre-c0a8640d is 0x140d (5133).  Endpoints whose
addresses agree in their low 12 bits (only possible in an underlay larger
than a /20) collide; validation reports that and asks for explicit ofports.
"""

from __future__ import annotations

import functools
import ipaddress

PATCH_INT = "patch-int"  # br-tun's end of the patch to br-int
PATCH_TUN = "patch-tun"  # br-int's end
PATCH_INT_OFPORT = 1
MAX_OFPORT = 0xFEFF  # the highest ofport_request Open vSwitch accepts
DEAD_VLAN = 4095  # Neutron tags unbound ports with it; br-int drops it
IFNAME_MAX = 15

TYPE_DIGIT = {"gre": 1, "vxlan": 2, "geneve": 3}


@functools.lru_cache(maxsize=16384)  # pure, and asked for every port of every host on each change
def tunnel_port_name(tunnel_type: str, remote_ip: str) -> str:
    return f"{tunnel_type}-{int(ipaddress.IPv4Address(remote_ip)):08x}"


@functools.lru_cache(maxsize=16384)
def parse_tunnel_port_name(name: str) -> tuple[str, str] | None:
    """(type, remote IPv4) of a Neutron tunnel port name, or None."""
    tunnel_type, dash, hex_ip = name.rpartition("-")
    if not dash or tunnel_type not in TYPE_DIGIT or len(hex_ip) != 8:
        return None
    try:
        return tunnel_type, str(ipaddress.IPv4Address(int(hex_ip, 16)))
    except ValueError:
        return None


@functools.lru_cache(maxsize=16384)  # as pure, asked as often
def default_ofport(port_name: str) -> int:
    """The ofport brtun requests for a port it creates (see the module docstring)."""
    if port_name == PATCH_INT:
        return PATCH_INT_OFPORT
    parsed = parse_tunnel_port_name(port_name)
    if parsed is None:
        raise ValueError(f"{port_name!r} is not a br-tun port name")
    tunnel_type, remote_ip = parsed
    return 0x1000 * TYPE_DIGIT[tunnel_type] + (int(ipaddress.IPv4Address(remote_ip)) & 0xFFF)
