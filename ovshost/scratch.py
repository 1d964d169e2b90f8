"""A scratch br-tun on a real, private Open vSwitch, for replaying packets with ofproto/trace.

The daemon runs with `--enable-dummy`, which gives it the `time/stop` and
`time/warp` commands, so a case's clock advances are real hard timeouts on
the real switch.  `ofproto/trace -generate` executes learn actions, so the
switch's table 20 evolves packet by packet as it would with traffic.

On either datapath (`datapath_type`):
- `netdev` (the userspace one, as on these machines): the bridge is on the
  dummy datapath (Open vSwitch's userspace datapath with no kernel devices);
  tunnel ports are its native GRE/VXLAN/Geneve ports, patch-int a dummy port.
- `system` (the kernel module loaded): the bridge is on the kernel datapath
  (`system@ovs-system` in the scratch namespace); tunnel ports are kernel
  vports (`gre_sys`, `vxlan_sys_4789`, `genev_sys_6081`), and patch-int is an
  internal port, because the kernel datapath takes no dummy ports.  The
  clock is the daemon's, so `time/warp` expires learned flows as on the
  userspace datapath (seen in the kernel lane).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import TracebackType

from flows.diff import Change, Kind
from flows.flow import Flow, render_flows
from flows.naming import PATCH_INT, ovs_port_type
from flows.simulator import Verdict
from flows.textparse import parse_dump
from flows.tracetext import parse_trace, trace_flow_text
from ovshost.privateovs import Appctl, PrivateOvs

RUN_ROOT = Path("/run/brtun-replay")
BRIDGE = "br-tun"


class ScratchSwitch:
    def __init__(self, datapath_type: str = "netdev") -> None:
        if datapath_type not in ("netdev", "system"):
            raise ValueError(f"a scratch switch runs on netdev or system, not {datapath_type}")
        name = f"brtun-replay-{uuid.uuid4().hex[:6]}"
        self.ovs = PrivateOvs(name, RUN_ROOT / name)
        self.datapath_type = datapath_type
        self._ports: dict[str, int] = {}
        self._flows_file = self.ovs.rundir / "flows"
        self._appctl: Appctl | None = None

    def __enter__(self) -> ScratchSwitch:
        self.ovs.start(vswitchd_args=("--enable-dummy",))
        self.ovs.add_bridge(BRIDGE, "fail_mode=secure", "protocols=OpenFlow13", datapath=self._bridge_datapath)
        return self

    @property
    def _bridge_datapath(self) -> str:
        return "dummy" if self.datapath_type == "netdev" else "system"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._appctl is not None:
            self._appctl.close()
        self.ovs.stop()

    def load(self, ports: dict[str, int], flows: tuple[Flow, ...] | list[Flow],
             endpoints: dict[str, tuple[str, str]]) -> None:
        """Make the bridge have exactly these ports (tunnel ports toward `endpoints`: name ->
        (tunnel type, remote address)) and flows (learned ones gone), clock stopped."""
        self.set_ports(ports, endpoints)
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

    def set_ports(self, ports: dict[str, int], endpoints: dict[str, tuple[str, str]]) -> None:
        for name in set(self._ports) - set(ports):
            self.ovs.vsctl("del-port", BRIDGE, name)
        for name, ofport in ports.items():
            if self._ports.get(name) == ofport:
                continue
            if name in self._ports:
                self.ovs.vsctl("del-port", BRIDGE, name)
            settings = ["type=dummy" if self.datapath_type == "netdev" else "type=internal"]
            if name != PATCH_INT and name in endpoints:
                tunnel_type, remote_ip = endpoints[name]
                kind = ovs_port_type(tunnel_type, remote_ip)
                settings = [f"type={kind}", f"options:remote_ip={remote_ip}", "options:key=flow"]
                if kind == "ip6gre":
                    settings.append("options:packet_type=legacy_l2")
            self.ovs.vsctl("add-port", BRIDGE, name, "--", "set", "Interface", name, *settings,
                           f"ofport_request={ofport}")
        self._ports = dict(ports)

    def advance(self, seconds: float) -> None:
        if seconds:
            # The daemon answers once it has run everything the warp made due: under software
            # emulation on a busy machine that took over 30 s for a 21 s warp.
            self.ovs.run("ovs-appctl", "time/warp", str(int(seconds * 1000)), timeout=180)

    def trace(self, packet: dict[str, int]) -> Verdict:
        """`ovs-appctl ofproto/trace -generate`, over one unixctl connection kept for the switch's life."""
        if self._appctl is None:
            self._appctl = self.ovs.appctl()
        text = self._appctl("ofproto/trace", BRIDGE, trace_flow_text(packet), "-generate")
        return parse_trace(text, packet.get("in_port", 0))

    def flows(self) -> list[Flow]:
        return parse_dump(self.ovs.ofctl("--no-stats", "dump-flows", BRIDGE))
