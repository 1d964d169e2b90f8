"""Replay cases: packets through one host's br-tun, each with the outcome it must have.

A case file (YAML) names a config (a path relative to the file, or inline)
and a host, then lists packets in order; they share the table state, so
what one packet teaches table 20 the next one uses.  Each packet says its
in_port by name, its header fields, an optional clock advance before it,
and what must come out: the ports (by name; none is a drop), the VLAN and
tunnel key they leave with, and the flows it learned.

    config: ../data/configs/example.yaml
    host: compute1
    packets:
      - in_port: vxlan-c0a8640c
        packet: {tun_id: 0x1388, dl_src: "fa:16:3e:aa:bb:cc", dl_dst: "ff:ff:ff:ff:ff:ff"}
        expect:
          output: [patch-int]
          vlan: 2
          learned: [{vlan: 2, mac: "fa:16:3e:aa:bb:cc", key: 0x1388, port: vxlan-c0a8640c}]
      - advance: 301
        in_port: patch-int
        packet: {dl_vlan: 2, dl_src: "fa:16:3e:00:00:02", dl_dst: "fa:16:3e:aa:bb:cc"}
        expect: {output: [vxlan-c0a8640c], key: 0x1388}

This module is pure: flows.simulator runs a case here; the live run on a
real switch lives with the other I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows import fields, yamlsource
from flows.actions import Load, Output
from flows.config import Config, InvalidConfig, load_config, validate
from flows.diff import diff
from flows.flow import SHORTHANDS, Flow
from flows.model import build_bridge
from flows.naming import PATCH_INT
from flows.pipeline import build
from flows.simulator import FlowTableSimulator, Verdict
from flows.yamlsource import Source

UNCHECKED: Any = object()  # an expectation the case does not state
_PACKET_FIELDS = ("tun_id", "dl_vlan", "vlan_tci", "dl_src", "dl_dst", "dl_type", "proto", "nw_src", "nw_dst",
                  "nw_proto", "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "icmp_type", "icmp_code")


class CaseError(ValueError):
    pass


@dataclass(frozen=True)
class LearnedEntry:
    """A table-20 flow learned from a tunnel, in the words an operator uses."""

    vlan: int
    mac: str
    key: int
    port: str

    def describe(self) -> str:
        return f"VLAN {self.vlan} {self.mac} key {self.key:#x} via {self.port}"


@dataclass(frozen=True)
class Outcome:
    outputs: tuple[str, ...]  # port names, sorted
    vlan: int | None
    key: int | None  # the tunnel key, when a tunnel port is among the outputs
    learned: tuple[LearnedEntry | str, ...]

    def describe(self) -> str:
        if not self.outputs:
            text = "drop"
        else:
            text = "-> " + ", ".join(self.outputs)
            text += f" vlan {self.vlan}" if self.vlan is not None else " untagged"
            if self.key is not None:
                text += f" key {self.key:#x}"
        for entry in self.learned:
            text += "; learned " + (entry.describe() if isinstance(entry, LearnedEntry) else entry)
        return text


@dataclass(frozen=True)
class Expected:
    outputs: tuple[str, ...]
    vlan: Any = UNCHECKED
    key: Any = UNCHECKED
    learned: Any = UNCHECKED  # tuple of LearnedEntry, or UNCHECKED


@dataclass(frozen=True)
class Step:
    number: int
    in_port: str
    packet: dict[str, int]
    advance: float
    expect: Expected

    def describe(self) -> str:
        shown = ",".join(_show(k, v) for k, v in self.packet.items() if k != "in_port")
        return f"#{self.number} {self.in_port} {shown}"


@dataclass(frozen=True)
class Reconfigure:
    """The agent applies another config mid-case (flows.diff, stale learned flows included)."""

    number: int
    config: Config
    path: str

    def describe(self) -> str:
        return f"#{self.number} reconfigure: {self.path}"


def bridge_ports(config: Config, host: str) -> dict[str, int]:
    """br-tun port name -> ofport, as the agent would request them."""
    bridge = build_bridge(config, host)
    return {PATCH_INT: bridge.patch_int_ofport, **{p.name: p.ofport for p in bridge.tunnel_ports}}


def tunnel_endpoints(config: Config, host: str) -> dict[str, tuple[str, str]]:
    """br-tun tunnel port name -> (tunnel type, remote endpoint), to make the ports on a switch."""
    return {p.name: (p.type, p.remote_ip) for p in build_bridge(config, host).tunnel_ports}


def desired_flows(config: Config, host: str) -> tuple[Flow, ...]:
    return build(build_bridge(config, host))


@dataclass(frozen=True)
class Case:
    name: str
    config: Config
    host: str
    steps: tuple[Step | Reconfigure, ...]
    ports: dict[str, int] = field(default_factory=dict)  # br-tun port name -> ofport, every port the case uses

    def flows(self) -> tuple[Flow, ...]:
        return desired_flows(self.config, self.host)

    @property
    def port_names(self) -> dict[int, str]:
        return {number: name for name, number in self.ports.items()}


@dataclass(frozen=True)
class StepResult:
    step: Step
    outcome: Outcome
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _show(name: str, value: int) -> str:
    if name == "vlan_tci":
        return f"dl_vlan={value & fields.VLAN_VID_MASK}" if value & fields.VLAN_CFI else "untagged"
    spec = fields.BY_NAME.get(name)
    return f"{name}={spec.format(value) if spec else value}"


# ----- loading -------------------------------------------------------------

def load_case(path: Path) -> Case:
    try:
        with path.open("rb") as stream:
            data = yamlsource.load(yamlsource.decode(stream.read(yamlsource.MAX_BYTES + 1))).data
    except OSError as error:
        raise CaseError(f"{path}: cannot read the case: {error.strerror}") from None
    except yamlsource.YamlError as error:
        where = f" (line {error.line})" if error.line else ""
        raise CaseError(f"{path}: cannot read the case: {error}{where}") from None
    if not isinstance(data, dict):
        raise CaseError(f"{path}: a case is a mapping with config, host and packets")
    return case_from_data(data, path.parent, default_name=path.stem)


def case_from_data(data: dict[str, Any], base: Path, default_name: str = "case") -> Case:
    unknown = set(data) - {"case", "config", "host", "packets"}
    if unknown:
        raise CaseError(f"{default_name}: unknown keys {sorted(unknown)} (known: case, config, host, packets)")
    raw_config = data.get("config")
    try:
        if isinstance(raw_config, str):
            config = load_config(str((base / raw_config).resolve()))
        elif isinstance(raw_config, dict):
            config = validate(Source(raw_config))
        else:
            raise CaseError(f"{default_name}: config is a path or an inline config")
    except InvalidConfig as error:
        raise CaseError(f"{default_name}: the case's config is invalid:\n{error}") from None
    host = data.get("host")
    if host not in config.host_names:
        raise CaseError(f"{default_name}: host {host!r} is not in the config (hosts: {', '.join(config.host_names)})")
    ports = bridge_ports(config, host)
    packets = data.get("packets")
    if not isinstance(packets, list) or not packets:
        raise CaseError(f"{default_name}: packets is a non-empty list")
    steps: list[Step | Reconfigure] = []
    for index, raw in enumerate(packets):
        if isinstance(raw, dict) and "reconfigure" in raw:
            steps.append(_reconfigure(index + 1, raw["reconfigure"], base, host, default_name))
            ports.update(bridge_ports(steps[-1].config, host))  # type: ignore[union-attr]
        else:
            steps.append(_step(index + 1, raw, ports, default_name))
    return Case(str(data.get("case", default_name)), config, host, tuple(steps), ports)


def _reconfigure(number: int, raw: Any, base: Path, host: str, case: str) -> Reconfigure:
    if not isinstance(raw, str):
        raise CaseError(f"{case} step #{number}: reconfigure names a config file")
    try:
        config = load_config(str((base / raw).resolve()))
    except InvalidConfig as error:
        raise CaseError(f"{case} step #{number}: the new config is invalid:\n{error}") from None
    if host not in config.host_names:
        raise CaseError(f"{case} step #{number}: host {host} is not in {raw}")
    return Reconfigure(number, config, raw)


def _step(number: int, raw: Any, ports: dict[str, int], case: str) -> Step:
    where = f"{case} packet #{number}"
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: a packet is a mapping with in_port, packet and expect")
    unknown = set(raw) - {"in_port", "packet", "expect", "advance"}
    if unknown:
        raise CaseError(f"{where}: unknown keys {sorted(unknown)}")
    in_port = raw.get("in_port")
    if isinstance(in_port, int) and not isinstance(in_port, bool) and in_port not in ports.values():
        ofport = in_port  # a port br-tun does not have: table 0 must drop it
    elif in_port in ports:
        ofport = ports[in_port]
    else:
        raise CaseError(f"{where}: in_port {in_port!r} is not a port of this br-tun ({', '.join(ports)}) "
                        "nor an unused port number")
    packet = {"in_port": ofport, **parse_packet(raw.get("packet") or {}, where)}
    advance = raw.get("advance", 0)
    if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
        raise CaseError(f"{where}: advance is a number of seconds >= 0")
    return Step(number, str(in_port), packet, float(advance), _expected(raw.get("expect"), ports, where))


def parse_packet(raw: dict[str, Any], where: str = "packet") -> dict[str, int]:
    packet: dict[str, int] = {}
    for name, value in raw.items():
        if name not in _PACKET_FIELDS:
            raise CaseError(f"{where}: unknown packet field {name!r} (known: {', '.join(_PACKET_FIELDS)})")
        if name == "proto":
            if value not in SHORTHANDS:
                raise CaseError(f"{where}: proto {value!r} is not one of {', '.join(SHORTHANDS)}")
            eth_type, proto = SHORTHANDS[value]
            packet["dl_type"] = eth_type
            if proto is not None:
                packet["nw_proto"] = proto
        elif name == "dl_vlan":
            packet["vlan_tci"] = fields.VLAN_CFI | int(value)
        else:
            spec = fields.BY_NAME[name]
            try:
                packet[name] = spec.parse(value) if isinstance(value, str) else int(value)
            except ValueError as error:
                raise CaseError(f"{where}: {name}: {error}") from None
    return packet


def _expected(raw: Any, ports: dict[str, int], where: str) -> Expected:
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: expect is a mapping (output or drop, vlan, key, learned)")
    unknown = set(raw) - {"output", "drop", "vlan", "key", "learned"}
    if unknown:
        raise CaseError(f"{where}: unknown expect keys {sorted(unknown)}")
    if raw.get("drop") is True:
        outputs: tuple[str, ...] = ()
    elif "output" in raw and isinstance(raw["output"], list):
        outputs = tuple(sorted(raw["output"]))
    else:
        raise CaseError(f"{where}: expect says output: [ports] or drop: true")
    for name in outputs:
        if name not in ports:
            raise CaseError(f"{where}: output port {name!r} is not a port of this br-tun")
    learned: Any = UNCHECKED
    if "learned" in raw:
        learned = tuple(LearnedEntry(int(e["vlan"]), str(e["mac"]).lower(), int(e["key"]), str(e["port"]))
                        for e in raw["learned"] or [])
    return Expected(outputs, raw.get("vlan", UNCHECKED), raw.get("key", UNCHECKED), learned)


# ----- outcomes --------------------------------------------------------------

def learned_entry(flow: Flow, port_names: dict[int, str]) -> LearnedEntry | str:
    tci = flow.match.get("vlan_tci")
    mac = flow.match.value("dl_dst")
    keys = [a.value for a in flow.actions if isinstance(a, Load) and a.dst.field == "NXM_NX_TUN_ID"]
    outputs = [a.port for a in flow.actions if isinstance(a, Output)]
    if tci is None or mac is None or not keys or len(outputs) != 1:
        return flow.render().strip()
    return LearnedEntry(tci.value & fields.VLAN_VID_MASK, fields.mac_text(mac), keys[0],
                        port_names.get(outputs[0], str(outputs[0])))


def outcome(verdict: Verdict, port_names: dict[int, str]) -> Outcome:
    names = tuple(sorted(port_names.get(e.port, str(e.port)) for e in verdict.emitted))
    first = verdict.emitted[0] if verdict.emitted else None
    tunnel = any(port_names.get(e.port) not in (PATCH_INT, None) for e in verdict.emitted)
    return Outcome(names, first.vlan if first else None, first.tun_id if first and tunnel else None,
                   tuple(learned_entry(flow, port_names) for flow in verdict.learned))


def problems(expected: Expected, seen: Outcome) -> tuple[str, ...]:
    found = []
    if expected.outputs != seen.outputs:
        want = ", ".join(expected.outputs) or "drop"
        found.append(f"output: expected {want}, got {', '.join(seen.outputs) or 'drop'}")
    if expected.vlan is not UNCHECKED and seen.outputs and expected.vlan != seen.vlan:
        found.append(f"vlan: expected {expected.vlan}, got {seen.vlan}")
    if expected.key is not UNCHECKED and seen.outputs and expected.key != seen.key:
        found.append(f"key: expected {expected.key}, got {seen.key}")
    if expected.learned is not UNCHECKED and tuple(expected.learned) != seen.learned:
        want = "; ".join(e.describe() for e in expected.learned) or "nothing"
        got = "; ".join(e.describe() if isinstance(e, LearnedEntry) else e for e in seen.learned) or "nothing"
        found.append(f"learned: expected {want}, got {got}")
    return tuple(found)


def run_offline(case: Case) -> list[StepResult]:
    """The case on flows.simulator: packets in order, one table state, the case's clock."""
    simulator = FlowTableSimulator.of(case.flows())
    names = case.port_names
    results = []
    for step in case.steps:
        if isinstance(step, Reconfigure):
            changes = diff(desired_flows(step.config, case.host), simulator.flows(), step.config.cookie).changes
            simulator.apply(changes)
            continue
        if step.advance:
            simulator.advance(step.advance)
        seen = outcome(simulator.process(step.packet), names)
        results.append(StepResult(step, seen, problems(step.expect, seen)))
    return results


def expectation_of(seen: Outcome) -> dict[str, Any]:
    """The `expect:` mapping that records an outcome (for `brtun replay --record`)."""
    expect: dict[str, Any] = {"output": list(seen.outputs)} if seen.outputs else {"drop": True}
    if seen.outputs:
        expect["vlan"] = seen.vlan
        if seen.key is not None:
            expect["key"] = seen.key
    expect["learned"] = [{"vlan": e.vlan, "mac": e.mac, "key": e.key, "port": e.port}
                         for e in seen.learned if isinstance(e, LearnedEntry)]
    return expect
