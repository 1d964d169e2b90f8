"""Read `ovs-appctl ofproto/trace ... -generate` output into a simulator Verdict.

What Open vSwitch decided (the ports it output to, what it learned, the
headers at the end) comes from its own text, so a replay on the real switch and on flows.simulator can be
compared verdict for verdict.
"""

from __future__ import annotations

from flows import fields
from flows.flow import Flow
from flows.simulator import Emitted, Verdict
from flows.textparse import parse_flow


class TraceParseError(ValueError):
    pass


def _final_headers(line: str) -> tuple[int | None, int]:
    """(VLAN, tun_id) from the `Final flow:` line."""
    vlan: int | None = None
    tun_id = 0
    for token in line.split(":", 1)[1].strip().split(","):
        key, _, value = token.partition("=")
        if key == "dl_vlan":
            vlan = int(value)
        elif key == "tun_id":
            tun_id = int(value, 0)
    return vlan, tun_id


def _learned(line: str) -> Flow:
    """` -> table=20 MATCH priority=1 cookie=0x.. hard=300 actions=...` as a Flow."""
    head, _, actions = line.strip().removeprefix("->").strip().partition(" actions=")
    info: dict[str, str] = {}
    match = ""
    for word in head.split():
        key, _, value = word.partition("=")
        if key in ("table", "priority", "cookie", "hard", "idle"):
            info[key] = value
        else:
            match = word
    text = f" cookie={info.get('cookie', '0x0')}, table={info['table']}, "
    if "idle" in info:
        text += f"idle_timeout={info['idle']}, "
    if "hard" in info:
        text += f"hard_timeout={info['hard']}, "
    text += f"priority={info.get('priority', '32768')}" + (f",{match}" if match else "") + f" actions={actions}"
    return parse_flow(text)


def parse_trace(text: str, in_port: int) -> Verdict:
    lines = text.splitlines()
    outputs: list[int] = []
    learned: list[Flow] = []
    final: tuple[int | None, int] | None = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("-> table="):
            learned.append(_learned(stripped))
        elif stripped.startswith("output:") or stripped == "IN_PORT":
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if "skipping output to input port" in following:
                continue
            outputs.append(in_port if stripped == "IN_PORT" else int(stripped.split(":", 1)[1]))
        elif stripped.startswith("Final flow:"):
            final = _final_headers(stripped)
    if final is None:
        raise TraceParseError("no `Final flow:` line in the trace")
    vlan, tun_id = final
    emitted = tuple(Emitted(port, vlan, tun_id) for port in outputs)
    return Verdict(emitted, tuple(learned), ())


def trace_flow_text(packet: dict[str, int]) -> str:
    """A simulator packet as the flow argument of ofproto/trace."""
    parts = []
    ipv6 = packet.get("dl_type") == fields.ETH_TYPE_IPV6
    for name in ("in_port", "tun_id", "dl_src", "dl_dst", "dl_type", "nw_src", "nw_dst", "nw_proto", "arp_op",
                 "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "icmp_type", "icmp_code"):
        if name in packet:
            spec = fields.BY_NAME[name]
            # In flow syntax icmp_type is ICMPv4's; ICMPv6 has its own name.
            written = name.replace("icmp_", "icmpv6_") if ipv6 and name.startswith("icmp_") else name
            parts.append(f"{written}={fields.format_value(spec, packet[name])}")
    tci = packet.get("vlan_tci", 0)
    if tci & fields.VLAN_CFI:
        parts.insert(2, f"dl_vlan={tci & fields.VLAN_VID_MASK}")
    return ",".join(parts)
