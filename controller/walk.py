"""A packet's walk across a testbed, as `brtun trace` found it: lettered hops and the verdict.

Values only: `controller.trace` fills a Walk from the switches' traces,
`controller.tracesvg` draws one, and both print its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.tracetext import TableHop


@dataclass(frozen=True)
class Hop:
    """A lettered step of the walk, as the seed letters its figure."""

    letter: str
    host: str
    element: str  # what the packet crosses: vm1 eth0, tap..., br-int, gre-c0a8640c, ...
    detail: str
    tables: tuple[TableHop, ...] = ()
    parent: int | None = None  # the hop it comes from (a flood fans out from one br-tun hop)


@dataclass
class Walk:
    source: str
    destination: str
    target: str = ""  # the port name that is the destination (qvo..., tap..., qr-...), if any
    hops: list[Hop] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)  # "vm2 (compute2, qvo...)"
    drops: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def add(self, host: str, element: str, detail: str, hop_tables: tuple[TableHop, ...] = (),
            parent: int | None = None) -> int:
        index = len(self.hops)
        if parent is None and index:
            parent = index - 1
        self.hops.append(Hop(_letter(index), host, element, detail, hop_tables, parent))
        if host not in self.hosts:
            self.hosts.append(host)
        return index


def _letter(index: int) -> str:
    """A..Z, then AA, AB, ... for long walks (a flood to many hosts)."""
    return chr(ord("A") + index) if index < 26 else _letter(index // 26 - 1) + chr(ord("A") + index % 26)


def reached(walk: Walk) -> bool:
    return bool(walk.target) and walk.target in walk.delivered


def verdict(walk: Walk) -> str:
    parts = [f"delivered to {walk.target}" if reached(walk) else
             f"NOT delivered to {walk.target or walk.destination}"]
    others = [name for name in walk.delivered if name != walk.target]
    if others:
        parts.append(f"also flooded to {', '.join(others)}")
    parts += walk.drops
    return "; ".join(parts)
