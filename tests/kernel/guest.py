"""The kernel lane's scenarios, run inside the guest in one Python process (`tests/kernel/lane.py` boots it).

Each scenario runs on datapath_type=system with the kernel's tunnel vports,
proves it with `ovs-dpctl show` (the kernel's own list, no daemon asked),
prints one line per check, and cleans up what it made, even on failure:

1. the agent on an empty switch: br-tun equals `brtun render`; a restart
   changes no flow (`ovs-ofctl monitor ... watch:!initial`), a learned flow stays;
2. every tests/replay case live on a kernel-datapath scratch switch, and on
   the simulator: both meet each case's expectations, outcome for outcome;
3. the seed's testbed with the demo's checks (DHCP over the tunnel, ping
   across kernel GRE, the learned flow, the key on the underlay, a foreign
   VLAN going nowhere, TCP, SNAT, the security group, an intruder's GRE);
4. a 2-host mesh whose second network is VXLAN (kernel VXLAN vport): ping
   across, VXLAN with the network's VNI on the underlay.

Start-up costs are paid once: under software emulation importing os-ken
takes ~20 s, so this process imports everything once and each agent (a
process of its own, as on a real host) pays it once per start.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controller import cli as brtun_cli
from controller.replay import run_live
from flows.config import load_config
from flows.replay import load_case, run_offline
from mininet_topos import checks
from mininet_topos.cli import GUEST_AGENT_TIMEOUT, SEED
from mininet_topos.mesh import mesh_config
from mininet_topos.spec import testbed_spec
from mininet_topos.topology import BuildOptions, Testbed
from ovshost import kernelvm
from ovshost.agentproc import AgentProcess
from ovshost.datapath import kernel_datapaths, summary
from ovshost.privateovs import PrivateOvs
from ovshost.scratch import ScratchSwitch
from tests.conftest import CONFIGS, PROJECT
from tests.integration.helpers import FlowMonitor, dump

EXAMPLE = CONFIGS / "example.yaml"
REPLAY = PROJECT / "tests" / "replay"
RUN_ROOT = Path("/run/brtun-kernel-lane")  # the guest's own tmpfs: unix sockets cannot live on 9p


class ScenarioFailed(AssertionError):
    pass


@dataclass
class Scenario:
    title: str
    failures: list[str] = field(default_factory=list)

    def expect(self, ok: bool, what: str, figure: str = "") -> None:
        print(f"   {'PASS' if ok else 'FAIL'}  {what:<58} {figure}".rstrip(), flush=True)
        if not ok:
            self.failures.append(what)

    def check(self, result: checks.Check) -> None:
        self.expect(result.ok, result.name, result.figure)

    def datapath(self, namespace: str, *, wants: tuple[str, ...] = ()) -> None:
        """The kernel's own word: a system@ datapath in this namespace, with these vports."""
        shown = kernel_datapaths(namespace)
        print(f"   datapath of {namespace}: ip netns exec {namespace} ovs-dpctl show", flush=True)
        for line in shown.splitlines():
            if not line.strip().startswith(("lookups", "flows", "masks", "caches", "masks-cache")):
                print(f"   | {line}")
        missing = [port for port in wants if f": {port} (" not in shown]
        self.expect(shown.startswith("system@ovs-system:") and not missing,
                    f"{namespace} runs on the kernel datapath", summary(shown)
                    + (f"; MISSING {', '.join(missing)}" if missing else ""))


def say(message: str) -> None:
    print(f"   ... {message}", flush=True)


def brtun(*argv: str) -> str:
    """A brtun command in this process (no second interpreter to start), its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = brtun_cli.main(list(argv))
    if status != 0:
        raise ScenarioFailed(f"brtun {' '.join(argv)} exited {status}")
    return out.getvalue()


def agent_scenario(s: Scenario) -> None:
    ovs = PrivateOvs("brtun-k-agent", RUN_ROOT / "agent")
    agent = AgentProcess(ovs, EXAMPLE, "compute1", datapath_type="system")
    try:
        ovs.start()
        agent.start()
        log = agent.wait_in_sync(timeout=GUEST_AGENT_TIMEOUT)
        s.datapath(ovs.name, wants=("br-tun", "br-int", "gre_sys", "vxlan_sys_4789"))
        for bridge in ("br-tun", "br-int"):
            kind = ovs.vsctl("get", "Bridge", bridge, "datapath_type").strip()
            s.expect(kind == "system", f"{bridge} datapath_type", kind)
        installed = dump(ovs, "br-tun")
        rendered = sorted(brtun("render", str(EXAMPLE), "--host", "compute1").splitlines())
        s.expect(installed == rendered, "br-tun on an empty switch equals `brtun render`",
                 f"{len(installed)} installed, {len(rendered)} rendered")
        s.expect("br-tun: read 0 flows" in log, "the agent found br-tun empty")
        trace = ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
                        "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
        before = dump(ovs, "br-tun")
        learned = [line for line in before if "table=20, hard_timeout=" in line]
        s.expect("learn" in trace.stdout and len(learned) == 1, "table 10 learned a MAC (ofproto/trace -generate)",
                 learned[0].strip()[:70] if learned else "nothing learned")
        s.expect(agent.stop() == 0, "the agent stops on SIGTERM")
        with FlowMonitor(ovs, "br-tun") as watch_tun, FlowMonitor(ovs, "br-int") as watch_int:
            agent.start()
            log = agent.wait_in_sync(timeout=GUEST_AGENT_TIMEOUT)
        s.expect(watch_tun.events == [] and watch_int.events == [], "restart: flow-mods seen by the monitor",
                 f"br-tun {len(watch_tun.events)}, br-int {len(watch_int.events)}")
        s.expect("br-tun: read 26 flows (1 learned, 0 foreign): in sync, nothing sent" in log,
                 "restart: the agent read 26 flows (1 learned), sent nothing")
        s.expect(dump(ovs, "br-tun") == before, "restart: br-tun unchanged, the learned flow kept")
    finally:
        agent.stop()
        ovs.stop()


def replay_scenario(s: Scenario) -> None:
    paths = sorted(REPLAY.glob("*.yaml"))
    cases = [load_case(path) for path in paths]
    live = []
    vports: set[str] = set()
    with ScratchSwitch("system") as switch:
        for case in cases:  # one switch, reset for each case, as `brtun replay --live` runs them
            live += run_live([case], switch=switch)
            shown = kernel_datapaths(switch.ovs.name)
            vports |= {name for name in ("gre_sys", "vxlan_sys_4789", "genev_sys_6081") if f": {name} (" in shown}
        s.datapath(switch.ovs.name, wants=("br-tun", "patch-int"))
    s.expect(vports == {"gre_sys", "vxlan_sys_4789", "genev_sys_6081"}, "the cases used kernel tunnel vports",
             ", ".join(sorted(vports)))
    for path, case, results in zip(paths, cases, live, strict=True):
        offline = run_offline(case)
        agree = [a.outcome for a in results] == [b.outcome for b in offline]
        bad = [f"{r.step.describe()}: {'; '.join(r.problems)}" for r in results if not r.ok]
        s.expect(not bad and all(r.ok for r in offline) and agree, f"replay {path.name}",
                 f"{len(results)} packets, kernel datapath = simulator" if not bad and agree else
                 (bad[0][:100] if bad else "the simulator disagrees"))
        for problem in bad[1:]:
            print(f"         {problem}")


def _testbed(config_path: Path, kind: str) -> Testbed:
    config = load_config(str(config_path))
    spec = testbed_spec(config, kind)
    options = BuildOptions(datapath_type="system", progress=say, agent_timeout=GUEST_AGENT_TIMEOUT)
    return Testbed(config_path, config, spec, options, kind=kind)


def seed_scenario(s: Scenario) -> None:
    built = _testbed(SEED, "seed").up()
    try:
        say(f"up in {built.timings['addresses']:.0f} s")
        for host in sorted(built.hosts):
            s.datapath(host, wants=("br-tun", "br-int", "gre_sys"))
        bed = checks.Bed(built.state, built.spec, built.config)
        for result in checks.seed_checks(bed, built.timings["addresses"] - built.timings["plumbed"]):
            s.check(result)
        walked = brtun("trace", "vm1", "vm2")  # the kernel's datapath actions: set(tunnel(...)) and gre_sys
        s.expect("verdict: delivered to vm2" in walked and "GRE key 0x1 to 192.168.100.12" in walked,
                 "brtun trace vm1 vm2 follows the packet across kernel GRE",
                 next((line.strip() for line in walked.splitlines() if line.startswith("verdict")), "no verdict"))
    finally:
        built.close()


def vxlan_mesh_scenario(s: Scenario) -> None:
    directory = Path(tempfile.mkdtemp(prefix="brtun-kernel-mesh-"))
    path = directory / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh_config(2, types=("gre", "vxlan")), sort_keys=False))
    built = _testbed(path, "mesh").up()
    try:
        say(f"up in {built.timings['addresses']:.0f} s; networks: "
            + ", ".join(f"{n.name} {n.type} {n.segmentation_id}" for n in built.config.networks)
            + "; VM MTUs " + ", ".join(f"{name} {mtu}" for name, mtu in sorted(built.spec.mtus.items())))
        for host in sorted(built.hosts):
            s.datapath(host, wants=("br-tun", "gre_sys", "vxlan_sys_4789"))
        bed = checks.Bed(built.state, built.spec, built.config)
        vxlan = next(n.name for n in built.config.networks if n.type == "vxlan")
        s.check(checks.ping_across_hosts(bed, vxlan))
        s.check(checks.gre_on_underlay(bed, vxlan))
        first, second = bed.pair_across_hosts(vxlan)
        mtu = built.spec.mtu(vxlan)
        big = checks.probes.netns(first.name, "ping", "-c", "2", "-M", "do", "-s", str(mtu - 28),
                                  "-W", "2", str(second.ip), timeout=30).stdout
        s.expect(" 2 received" in big, f"a full-size packet ({mtu} bytes) crosses VXLAN",
                 big.strip().splitlines()[-2] if big.strip() else "no output")
    finally:
        built.close()


SCENARIOS: list[tuple[str, Callable[[Scenario], None]]] = [
    ("agent on an empty kernel-datapath switch, then restarted (example.yaml, compute1)", agent_scenario),
    ("every tests/replay case live on a kernel-datapath scratch switch, and on the simulator", replay_scenario),
    ("the seed's testbed (3 hosts, kernel GRE), the demo's checks", seed_scenario),
    ("a 2-host mesh with a VXLAN network (kernel VXLAN vport)", vxlan_mesh_scenario),
]


def main(selected: list[str]) -> int:
    if not kernelvm.in_guest():
        print("tests/kernel/guest.py runs inside the kernel lane's guest: ./run test-kernel", file=sys.stderr)
        return 2
    started = time.monotonic()
    timings = []
    passed = failed = 0
    chosen = [(t, f) for t, f in SCENARIOS if not selected or any(word in f.__name__ for word in selected)]
    for number, (title, function) in enumerate(chosen, start=1):
        scenario = Scenario(title)
        print(f"\n== [{number}/{len(chosen)}] {title}", flush=True)
        begun = time.monotonic()
        try:
            function(scenario)
        except Exception as error:  # a scenario that breaks is a failure, reported, and the lane goes on
            scenario.failures.append(f"{type(error).__name__}: {error}")
            print(f"   FAIL  the scenario raised {type(error).__name__}: {error}")
            print("".join("   ! " + line for line in traceback.format_exc().splitlines(keepends=True)))
        seconds = time.monotonic() - begun
        timings.append((function.__name__.removesuffix("_scenario"), seconds))
        verdict = "passed" if not scenario.failures else f"FAILED ({len(scenario.failures)})"
        print(f"   scenario {verdict} in {seconds:.1f} s on the kernel datapath", flush=True)
        passed += not scenario.failures
        failed += bool(scenario.failures)
    print("\nkernel lane scenarios: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings)
          + f"; in the guest {time.monotonic() - started:.0f} s")
    print(f"kernel-lane: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
