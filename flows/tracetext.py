"""Read `ovs-appctl ofproto/trace ... -generate` output into a simulator Verdict.

What Open vSwitch decided (the ports it output to, what it learned, the
headers at the end) comes from its own text, so a replay on the real switch and on flows.simulator can be
compared verdict for verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

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
            parts.append(f"{written}={spec.format(packet[name])}")
    tci = packet.get("vlan_tci", 0)
    if tci & fields.VLAN_CFI:
        parts.insert(2, f"dl_vlan={tci & fields.VLAN_VID_MASK}")
    return ",".join(parts)


@dataclass(frozen=True)
class TableHop:
    """One table a traced packet went through, on one bridge."""

    bridge: str
    table: int
    flow: str  # the matched flow as the trace prints it (`tun_id=0x1, priority 1, cookie 0x...`)
    actions: tuple[str, ...]

    @property
    def dropped(self) -> bool:
        return "drop" in self.actions


@dataclass(frozen=True)
class TraceRun:
    """One `ofproto/trace` (without -generate) on one switch."""

    hops: tuple[TableHop, ...]
    tunnels: tuple[tuple[str, int], ...]  # (remote endpoint IP, key) of each encapsulated copy
    local_ports: tuple[int, ...]  # datapath port numbers it was delivered to on this switch

    @property
    def dropped(self) -> bool:
        return not self.tunnels and not self.local_ports


def split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside parentheses (datapath actions nest them)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    if current:
        parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _tunnel(action: str) -> tuple[str, int] | None:
    """`tnl_push(...ipv4(src=..,dst=IP,...),gre((...),key=0x1)),...)` -> (IP, key); over IPv6 the
    header is `ipv6(src=..,dst=IP,...)`."""
    if not action.startswith("tnl_push("):
        return None
    header = "ipv6(" if "ipv6(" in action else "ipv4("
    destination = action.split(header, 1)[1].split("dst=", 1)[1].split(",", 1)[0]
    key_text = action.split("key=", 1)[1] if "key=" in action else "0"
    key = int(key_text.split(")", 1)[0].split(",", 1)[0], 0)
    return destination, key


def _set_tunnel(action: str) -> tuple[str, int] | None:
    """The kernel datapath's `set(tunnel(tun_id=0x1,src=..,dst=IP,ttl=64,...))` -> (IP, key)."""
    if not action.startswith("set(tunnel("):
        return None
    fields = dict(part.partition("=")[::2] for part in split_top_level(action[len("set(tunnel("):-2]))
    return fields.get("dst") or fields.get("ipv6_dst", ""), int(fields.get("tun_id", "0"), 0)


def _datapath_outputs(actions: list[str], tunnels: list[tuple[str, int]], ports: list[int],
                      tunnel_ports: frozenset[int], current: list[tuple[str, int] | None]) -> None:
    for action in actions:
        if action.startswith("clone(") and action.endswith(")"):
            _datapath_outputs(split_top_level(action[len("clone("):-1]), tunnels, ports, tunnel_ports, current)
            continue
        tunnel = _tunnel(action)
        if tunnel is not None:
            tunnels.append(tunnel)
        elif (header := _set_tunnel(action)) is not None:
            current[0] = header  # the kernel datapath: the vport output that follows encapsulates
        elif action.isdigit():
            port = int(action)
            if port in tunnel_ports and current[0] is not None:
                tunnels.append(current[0])
            else:
                ports.append(port)


@dataclass
class _Section:
    """A bridge's part of the trace; patch ports and tunnels nest sections, indented."""

    bridge: str
    table_indent: int
    hop: tuple[int, str] | None = None
    actions: list[str] | None = None


def parse_run(text: str, tunnel_ports: frozenset[int] = frozenset()) -> TraceRun:
    """The hops (bridge, table, flow, actions) and where the packet went (tunnels, local ports).

    On the userspace datapath a tunnelled copy is a `tnl_push(...)` action; on the kernel's it is
    `set(tunnel(...))` and an output to a tunnel vport (`gre_sys`, ...), whose datapath port
    numbers are `tunnel_ports` (from `ovs-appctl dpif/show`).

    ofproto/trace nests the sections of bridges reached through patch
    ports or tunnels inside the actions of the flow that sent there,
    indented; the parent's remaining actions follow at the parent's
    indentation, so sections are kept on a stack by indentation."""
    hops: list[TableHop] = []
    tunnels: list[tuple[str, int]] = []
    ports: list[int] = []
    stack: list[_Section] = []

    def close(section: _Section) -> None:
        if section.hop is not None:
            hops.append(TableHop(section.bridge, section.hop[0], section.hop[1], tuple(section.actions or ())))
            section.hop = None

    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped or stripped.startswith("---"):
            continue
        if stripped.startswith(("Final flow:", "Megaflow:", "Datapath actions:", "Flow:")):
            while stack:
                close(stack.pop())
            if stripped.startswith("Datapath actions:"):
                _datapath_outputs(split_top_level(stripped.split(":", 1)[1]), tunnels, ports, tunnel_ports, [None])
            continue
        while len(stack) > 1 and indent < stack[-1].table_indent:
            close(stack.pop())
        if stripped.startswith('bridge("'):
            if indent == 0:
                while stack:
                    close(stack.pop())
            stack.append(_Section(stripped.split('"')[1], indent if indent == 0 else indent + 4))
            continue
        if not stack:
            continue
        section = stack[-1]
        number, dot, rest = stripped.partition(". ")
        if dot and number.isdigit() and indent <= section.table_indent + 1:
            close(section)
            section.hop, section.actions = (int(number), rest), []
        elif section.hop is not None and section.actions is not None:
            section.actions.append(stripped)
    return TraceRun(tuple(hops), tuple(tunnels), tuple(ports))


def parse_dpif_show(text: str) -> dict[int, str]:
    """`ovs-appctl dpif/show`: datapath port number -> port name (`qvo... 2/6: (system)`)."""
    ports = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and "/" in words[1] and words[1].endswith(":"):
            datapath_port = words[1][:-1].split("/")[1]
            if datapath_port.isdigit():
                ports[int(datapath_port)] = words[0]
    return ports
