"""br-int: the minimum Neutron installs so the bridge can run `fail_mode=secure`.

Neutron's native `br_int.setup_default_table` (no OpenFlow firewall, no
DHCP offload): every packet ends in NORMAL switching by VLAN tag, the dead
VLAN 4095 is dropped first thing, and the canary table 23 holds one flow
whose disappearance tells the agent that Open vSwitch restarted and lost
its flows.  Table numbers are neutron-lib's `ovs_constants`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flows.actions import Output
from flows.fields import OFPP_NORMAL
from flows.flow import Flow, Match
from flows.naming import DEAD_VLAN

LOCAL_SWITCHING = 0
CANARY_TABLE = 23
ARP_SPOOF_TABLE = 24
LOCAL_EGRESS_TABLE = 30
LOCAL_IP_TABLE = 31
PACKET_RATE_LIMIT = 59
TRANSIENT_TABLE = 60
TRANSIENT_EGRESS_TABLE = 62

OPENFLOW_MAX_PRIORITY = 65535


@dataclass(frozen=True)
class IntTable:
    number: int
    name: str
    role: str


TABLES: dict[int, IntTable] = {t.number: t for t in (
    IntTable(LOCAL_SWITCHING, "LOCAL_SWITCHING", "drop the dead VLAN; everything else -> 59"),
    IntTable(CANARY_TABLE, "CANARY_TABLE", "one drop flow; gone means Open vSwitch restarted"),
    IntTable(ARP_SPOOF_TABLE, "ARP_SPOOF_TABLE", "default drop"),
    IntTable(LOCAL_EGRESS_TABLE, "LOCAL_EGRESS_TABLE", "-> 59"),
    IntTable(LOCAL_IP_TABLE, "LOCAL_IP_TABLE", "-> 59"),
    IntTable(PACKET_RATE_LIMIT, "PACKET_RATE_LIMIT", "-> 60"),
    IntTable(TRANSIENT_TABLE, "TRANSIENT_TABLE", "NORMAL switching"),
    IntTable(TRANSIENT_EGRESS_TABLE, "TRANSIENT_EGRESS_TABLE", "NORMAL switching"),
)}


@functools.lru_cache(maxsize=4)
def build(cookie: int) -> tuple[Flow, ...]:
    """Every flow br-int should hold.  They depend on the cookie alone, so they are built once per
    cookie (flows are immutable values) and a config change compares br-int by identity."""
    normal = (Output(OFPP_NORMAL),)
    return (
        Flow(LOCAL_SWITCHING, OPENFLOW_MAX_PRIORITY, Match.of(dl_vlan=DEAD_VLAN), cookie=cookie),
        Flow(LOCAL_SWITCHING, 0, goto=PACKET_RATE_LIMIT, cookie=cookie),
        Flow(CANARY_TABLE, 0, cookie=cookie),
        Flow(ARP_SPOOF_TABLE, 0, cookie=cookie),
        Flow(LOCAL_EGRESS_TABLE, 0, goto=PACKET_RATE_LIMIT, cookie=cookie),
        Flow(LOCAL_IP_TABLE, 0, goto=PACKET_RATE_LIMIT, cookie=cookie),
        Flow(PACKET_RATE_LIMIT, 0, goto=TRANSIENT_TABLE, cookie=cookie),
        Flow(TRANSIENT_TABLE, 3, actions=normal, cookie=cookie),
        Flow(TRANSIENT_EGRESS_TABLE, 3, actions=normal, cookie=cookie),
    )
