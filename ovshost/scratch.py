"""A scratch br-tun on a real, private Open vSwitch, for replaying packets with ofproto/trace.

The daemon runs with `--enable-dummy`, which gives it a dummy datapath
(no kernel devices) and the `time/stop` and `time/warp` commands, so a
case's clock advances are real hard timeouts on the real switch.  Tunnel
ports are real GRE/VXLAN/Geneve ports with the case's ofports; patch-int
is a dummy port.  `ofproto/trace -generate` executes learn actions, so the
switch's table 20 evolves packet by packet as it would with traffic.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import TracebackType

from flows.diff import Change, Kind
from flows.flow import Flow, render_flows
from flows.naming import PATCH_INT, parse_tunnel_port_name
from flows.simulator import Verdict
from flows.textparse import parse_dump
from flows.tracetext import parse_trace, trace_flow_text
from ovshost.privateovs import PrivateOvs

RUN_ROOT = Path("/run/brtun-replay")
BRIDGE = "br-tun"


class ScratchSwitch:
    def __init__(self) -> None:
        name = f"brtun-replay-{uuid.uuid4().hex[:6]}"
        self.ovs = PrivateOvs(name, RUN_ROOT / name)
        self._ports: dict[str, int] = {}
        self._flows_file = self.ovs.rundir / "flows"

    def __enter__(self) -> ScratchSwitch:
        self.ovs.start(vswitchd_args=("--enable-dummy",))
        self.ovs.add_bridge(BRIDGE, "fail_mode=secure", "protocols=OpenFlow13", datapath="dummy")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.ovs.stop()

    def load(self, ports: dict[str, int], flows: tuple[Flow, ...] | list[Flow]) -> None:
        """Make the bridge have exactly these ports and flows (learned ones gone), clock stopped."""
        self.set_ports(ports)
        self._flows_file.write_text(render_flows(flows))
        self.ovs.ofctl("--bundle", "replace-flows", BRIDGE, str(self._flows_file))
        self.ovs.run("ovs-appctl", "time/stop")

    def apply(self, changes: tuple[Change, ...]) -> None:
        """A flows.diff result, in one bundle, as the agent would send it."""
        if not changes:
            return
        lines = []
        for change in changes:
            if change.kind is Kind.DELETE:
                flow = change.flow
                match = ",".join(flow.match.render())
                lines.append(f"delete_strict cookie={flow.cookie:#x}/-1,table={flow.table},priority={flow.priority}"
                             + (f",{match}" if match else ""))
            else:
                verb = "add" if change.kind is Kind.ADD else "modify_strict"
                lines.append(f"{verb} {change.flow.render().strip()}")
        self._flows_file.write_text("\n".join(lines) + "\n")
        self.ovs.ofctl("--bundle", "add-flows", BRIDGE, str(self._flows_file))

    def set_ports(self, ports: dict[str, int]) -> None:
        for name in set(self._ports) - set(ports):
            self.ovs.vsctl("del-port", BRIDGE, name)
        for name, ofport in ports.items():
            if self._ports.get(name) == ofport:
                continue
            if name in self._ports:
                self.ovs.vsctl("del-port", BRIDGE, name)
            settings = ["type=dummy"]
            parsed = parse_tunnel_port_name(name)
            if name != PATCH_INT and parsed is not None:
                settings = [f"type={parsed[0]}", f"options:remote_ip={parsed[1]}", "options:key=flow"]
            self.ovs.vsctl("add-port", BRIDGE, name, "--", "set", "Interface", name, *settings,
                           f"ofport_request={ofport}")
        self._ports = dict(ports)

    def advance(self, seconds: float) -> None:
        if seconds:
            self.ovs.run("ovs-appctl", "time/warp", str(int(seconds * 1000)))

    def trace(self, packet: dict[str, int]) -> Verdict:
        result = self.ovs.run("ovs-appctl", "ofproto/trace", BRIDGE, trace_flow_text(packet), "-generate")
        return parse_trace(result.stdout, packet.get("in_port", 0))

    def flows(self) -> list[Flow]:
        return parse_dump(self.ovs.ofctl("--no-stats", "dump-flows", BRIDGE))
