"""Names and numbers of br-tun's ports: the one place that knows them.

Tunnel ports are named as Neutron names them (its agent's
`get_tunnel_name`): `<type>-<remote IPv4 as 8 hex digits>` (`gre-c0a8640d`),
and for an IPv6 endpoint `<type>-<the first 15-len(type)-1 characters of
the base32 BLAKE2b-160 digest of the address>`, at most 15 characters.  An
IPv6 name cannot be read back into its address: the config's hosts say
which port goes where (flows.model.TunnelPort).

OpenFlow port numbers: Open vSwitch assigns the lowest free number unless
`ofport_request` asks for one.  brtun asks, so a port keeps its number for
life and adding or removing another never renumbers it:

    patch-int            -> 1
    a tunnel port        -> its preferred number, 0x1000 * T + (remote address & 0xfff)
                            (T = 1 GRE, 2 VXLAN, 3 Geneve), when that number is free;
                            else the lowest free number from 0x4000 up

so in an underlay up to a /20 a port's number says its type and endpoint
(gre-c0a8640d is 0x140d = 5133), and in any larger one the ports whose
preferred numbers collide get numbers of their own.  Which port gets a
number is decided once, when the port is made (flows.model.allocate_ofports):
the switch's database keeps it (`ofport_request`), and ports that exist
keep theirs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re

PATCH_INT = "patch-int"  # br-tun's end of the patch to br-int
PATCH_TUN = "patch-tun"  # br-int's end
PATCH_INT_OFPORT = 1
MAX_OFPORT = 0xFEFF  # the highest ofport_request Open vSwitch accepts
FIRST_SPARE_OFPORT = 0x4000  # above every preferred number: where colliding ports go
DEAD_VLAN = 4095  # Neutron tags unbound ports with it; br-int drops it
IFNAME_MAX = 15

TUNNEL_TYPES = ("gre", "vxlan", "geneve")  # here, not in flows.tables: validating a config loads no action
TYPE_DIGIT = {"gre": 1, "vxlan": 2, "geneve": 3}


def endpoint_number(ip: str) -> int:
    """A tunnel endpoint as a number that fits a datapath ID with room for a prefix: an IPv4 address
    itself (32 bits), or 48 bits of a hash of an IPv6 one (whose low bits alone repeat across prefixes)."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return int(address)
    return int.from_bytes(hashlib.blake2b(address.packed, digest_size=6).digest(), "big")


@functools.lru_cache(maxsize=16384)  # pure, and asked for every port of every host on each change
def tunnel_port_name(tunnel_type: str, remote_ip: str) -> str:
    """Neutron's name for the tunnel port toward `remote_ip` (agent get_tunnel_name)."""
    address = ipaddress.ip_address(remote_ip)
    if address.version == 4:
        return f"{tunnel_type}-{int(address):08x}"
    digest = hashlib.blake2b(remote_ip.encode(), digest_size=20).digest()
    return f"{tunnel_type}-{base64.b32encode(digest)[:IFNAME_MAX - len(tunnel_type) - 1].decode().lower()}"


_TUNNEL_NAME = re.compile(r"(gre|vxlan|geneve)-[0-9a-z]{1,14}")


def tunnel_type_of(name: str) -> str | None:
    """The tunnel type a Neutron tunnel port name starts with, or None for any other name."""
    found = _TUNNEL_NAME.fullmatch(name)
    return found.group(1) if found and len(name) <= IFNAME_MAX else None


def preferred_ofport(tunnel_type: str, remote_ip: str) -> int:
    """The number a tunnel port asks for when it is free (see the module docstring)."""
    return 0x1000 * TYPE_DIGIT[tunnel_type] + (int(ipaddress.ip_address(remote_ip)) & 0xFFF)


def ovs_port_type(tunnel_type: str, remote_ip: str) -> str:
    """The Interface type Open vSwitch wants: GRE over IPv6 is `ip6gre` (Neutron's
    ovs_lib.get_gre_tunnel_port_type), the others keep their name for both families."""
    if tunnel_type == "gre" and ipaddress.ip_address(remote_ip).version == 6:
        return "ip6gre"
    return tunnel_type
