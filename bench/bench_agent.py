"""P1, P2, memory, check and render: what a user waits for, from 1k to 100k flows.

    .venv/bin/python bench/bench_agent.py [--sizes 100,1000,10000,50000,100000] [--repeat 3]

For each size, bench/bigconfig.py makes a config whose host h0 has about
that many br-tun flows.  Every size gets a fresh private Open vSwitch
(userspace datapath, its own namespace), and every agent run is a new
`brtun run` process (cold: nothing is cached across processes).  Every
figure is timed *from process start*, as a user waits for it, and every
agent figure has a baseline measured next to it in the same run (run,
baseline, run, baseline: the ratio is taken per run, then its median and
min-max are reported):

- P1, cold install: br-tun's flows deleted, the agent started; from the
  process start (just before it is spawned) to its "barrier confirmed" log
  line.  Baseline: the whole `ovs-ofctl -O OpenFlow13 --bundle add-flows`
  process of the identical flows (`brtun render`'s text) onto the emptied
  bridge.  At 100 flows this is the fixed cost (interpreter, imports,
  config, connection).
- P2, restart: the agent restarted over the programmed switch with `ovs-ofctl
  monitor br-tun watch:!initial` counting flow-mods (must be 0); from the
  process start to "in sync, nothing sent".  Baseline: the whole
  `ovs-ofctl -O OpenFlow13 dump-flows br-tun` process.  The switch's
  reconnect wait is inside the figure.
- memory: the agent's peak resident set (VmHWM) against its peak with the
  100-flow config on the same switch, per 10k flows; next to ovs-vswitchd's
  resident set growth from holding the 100-flow config to holding these flows.
- check and render: the whole `brtun check CONFIG` and `brtun render CONFIG
  --host h0` processes (goal: 1 s each), next to a bare `python -c pass`.

After every install the switch's flows must equal the rendered ones.
Writes bench/results/NAME.{md,json}.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bigconfig, procstat, report, spread  # noqa: E402
from flows.config import Config  # noqa: E402
from flows.flow import render_flows  # noqa: E402
from flows.model import build_bridge  # noqa: E402
from flows.pipeline import build  # noqa: E402
from ovshost.agentproc import BRTUN, AgentProcess  # noqa: E402
from ovshost.privateovs import PrivateOvs  # noqa: E402
from tests.integration.helpers import FlowMonitor  # noqa: E402

RUN_ROOT = Path("/run/brtun-bench")
GOALS = {"p1_ratio": 1.5, "p2_ratio": 2.0, "fixed_s": 0.5, "cli_s": 1.0}
START_TIMEOUT = 240.0  # a 100k-flow config takes a while to load
BASE_FLOWS = 100  # the small config each size's memory is measured against; also the fixed cost


@dataclass
class Size:
    """Every measurement of one size, run by run."""

    flows: int
    p1: list[float] = field(default_factory=list)
    p1_base: list[float] = field(default_factory=list)
    p2: list[float] = field(default_factory=list)
    p2_base: list[float] = field(default_factory=list)
    p2_flow_mods: list[int] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)  # the agent's VmHWM, P1 and P2 runs
    base_flows: int = 0  # the 100-flow config's count
    base_peak_mib: float = 0.0  # the agent's VmHWM with the 100-flow config
    switch_mib: float = 0.0  # ovs-vswitchd's VmRSS growth, 100-flow config -> these flows
    check: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)
    python: list[float] = field(default_factory=list)
    identical: bool = True

    def summary(self) -> dict[str, Any]:
        growth = max(self.peak_mib) - self.base_peak_mib
        grows = self.flows > self.base_flows
        per_10k = 10_000 / max(self.flows - self.base_flows, 1)
        return {
            "flows": self.flows,
            "p1_agent": spread.spread(self.p1), "p1_ofctl": spread.spread(self.p1_base),
            "p1_ratio": spread.ratios(self.p1, self.p1_base),
            "p2_agent": spread.spread(self.p2), "p2_ofctl": spread.spread(self.p2_base),
            "p2_ratio": spread.ratios(self.p2, self.p2_base), "p2_flow_mods": max(self.p2_flow_mods),
            "agent_peak_mib": spread.spread(self.peak_mib, 1), "agent_base_peak_mib": round(self.base_peak_mib, 1),
            "agent_growth_mib_per_10k": round(growth * per_10k, 1) if grows else None,
            "switch_growth_mib": round(self.switch_mib, 1),
            "switch_growth_mib_per_10k": round(self.switch_mib * per_10k, 1) if grows else None,
            "check": spread.spread(self.check), "render": spread.spread(self.render),
            "python_start": spread.spread(self.python),
            "identical_flows": self.identical,
            # the figures the CI smoke test and older readers know
            "p1_agent_s": round(min(self.p1), 4), "p1_ofctl_s": round(min(self.p1_base), 4),
            "p2_agent_s": round(min(self.p2), 4), "p2_ofctl_s": round(min(self.p2_base), 4),
            "rss_mib": round(max(self.peak_mib), 1),
        }


def log_time(line: str) -> float:
    """Seconds since the epoch of a log line (`2026-01-02 10:11:12,345 INFO ...`, local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def done_at(log: str, done: str) -> float:
    """When br-tun's first reconcile logged `done` (epoch seconds)."""
    return log_time(next(line for line in log.splitlines() if "br-tun: read" in line and done in line))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole process, as a user typing it waits for it."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


class Bench:
    """One fresh private switch for one size; the agent is started anew for every figure."""

    def __init__(self, workdir: Path) -> None:
        name = f"brtun-b-{uuid.uuid4().hex[:6]}"
        self.ovs = PrivateOvs(name, RUN_ROOT / name)
        self.workdir = workdir
        self.agent: AgentProcess | None = None

    def __enter__(self) -> Bench:
        self.ovs.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.agent is not None:
            self.agent.stop()
        self.ovs.stop()

    def ofctl_seconds(self, *argv: str) -> float:
        return timed(["ovs-ofctl", "-O", "OpenFlow13", *argv], self.ovs.env)

    def dump(self) -> list[str]:
        return sorted(self.ovs.ofctl("--no-stats", "dump-flows", "br-tun").splitlines())

    def ofports(self) -> dict[str, int]:
        table = json.loads(self.ovs.vsctl("--format=json", "--columns=name,ofport", "list", "Interface"))
        return {name: ofport for name, ofport in table["data"] if isinstance(ofport, int) and ofport > 0}

    def switch_mib(self) -> float:
        pid = self.ovs.pid("ovs-vswitchd")
        assert pid is not None
        return procstat.resident_mib(pid)

    def run_agent(self, config: Path, done: str) -> tuple[float, float]:
        """Start a new agent process; (seconds from its start to `done`, its peak MiB); it stays running."""
        assert self.agent is not None
        self.agent.stop()
        started = time.time()
        self.agent.start(config)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            log = self.agent.wait_for_log(done, timeout=START_TIMEOUT)
            if any("br-tun: read" in line and done in line for line in log.splitlines()):
                pid = int(self.agent.pidfile.read_text())
                return done_at(log, done) - started, procstat.peak_mib(pid)
            time.sleep(0.02)
        raise RuntimeError(f"no br-tun reconcile with {done!r}:\n{self.agent.log()[-3000:]}")

    def expected(self, config: Config) -> str:
        """The flows h0's br-tun must hold with this switch's ofports, as ovs-ofctl prints them."""
        return render_flows(build(build_bridge(config, bigconfig.HOST, observed_ofports=self.ofports())))

    def measure(self, flows: int, repeat: int) -> Size:
        base_path = self.workdir / f"big{BASE_FLOWS}.yaml"
        path = self.workdir / f"big{flows}.yaml"
        base_flows = bigconfig.flow_count(bigconfig.write(BASE_FLOWS, base_path))
        config = bigconfig.write(flows, path)
        self.agent = AgentProcess(self.ovs, base_path, bigconfig.HOST)
        # The first start makes the bridges and tunnel ports; then the small config's figures.
        self.run_agent(base_path, "barrier confirmed")
        _, base_peak = self.run_agent(base_path, "in sync, nothing sent")
        switch_before = self.switch_mib()
        self.agent.stop()
        expected_text = self.expected(config)
        expected = sorted(expected_text.splitlines())
        size = Size(len(expected), base_flows=base_flows, base_peak_mib=base_peak)
        rendered = self.workdir / f"big{flows}.flows"
        rendered.write_text(expected_text)
        python = [sys.executable, "-c", "pass"]
        cli = [*BRTUN, "check", str(path)], [*BRTUN, "render", str(path), "--host", bigconfig.HOST]
        for run in range(repeat):
            # P1: the agent over an emptied br-tun, then the baseline on the same emptied bridge.
            self.ovs.ofctl("del-flows", "br-tun")
            seconds, peak = self.run_agent(path, "barrier confirmed")
            self.agent.stop()
            size.p1.append(seconds)
            size.peak_mib.append(peak)
            size.identical &= self.dump() == expected
            if run == 0:
                size.switch_mib = self.switch_mib() - switch_before
            self.ovs.ofctl("del-flows", "br-tun")
            size.p1_base.append(self.ofctl_seconds("--bundle", "add-flows", "br-tun", str(rendered)))
            size.identical &= self.dump() == expected
            # P2: the agent restarted over the programmed switch, watched; then the baseline.
            with FlowMonitor(self.ovs, "br-tun") as monitor:
                seconds, peak = self.run_agent(path, "in sync, nothing sent")
            self.agent.stop()
            size.p2.append(seconds)
            size.peak_mib.append(peak)
            size.p2_flow_mods.append(len(monitor.events))
            size.p2_base.append(self.ofctl_seconds("dump-flows", "br-tun"))
            # check and render, each whole process, next to a bare interpreter.
            size.python.append(timed(python))
            size.check.append(timed(cli[0]))
            size.render.append(timed(cli[1]))
            print(f"{size.flows:>7,} flows, run {run + 1}: P1 {size.p1[-1]:.3f} s vs {size.p1_base[-1]:.3f} s, "
                  f"P2 {size.p2[-1]:.3f} s vs {size.p2_base[-1]:.3f} s, {size.p2_flow_mods[-1]} flow-mods, "
                  f"peak {peak:.0f} MiB, check {size.check[-1]:.3f} s, render {size.render[-1]:.3f} s",
                  flush=True)
        return size


def goals_met(result: dict[str, Any]) -> dict[str, bool]:
    """Each goal of issue 16, judged on the medians."""
    sizes = result["sizes"]
    big = [s for s in sizes if s["flows"] >= 50_000] or sizes
    fixed = [s for s in sizes if s["flows"] <= BASE_FLOWS * 2]
    per_10k = [s for s in sizes if s["agent_growth_mib_per_10k"] is not None and s["flows"] >= 10_000]
    return {
        "p1_ratio_le_1.5x_at_50k_100k": all(s["p1_ratio"]["median"] <= GOALS["p1_ratio"] for s in big),
        "p1_fixed_cost_le_0.5s": all(s["p1_agent"]["median"] <= GOALS["fixed_s"] for s in fixed) if fixed else False,
        "p2_ratio_le_2x": all(s["p2_ratio"]["median"] <= GOALS["p2_ratio"] for s in sizes),
        "p2_zero_flow_mods": all(s["p2_flow_mods"] == 0 for s in sizes),
        "memory_agent_le_switch": all(s["agent_growth_mib_per_10k"] <= s["switch_growth_mib_per_10k"]
                                      for s in per_10k) if per_10k else False,
        "check_le_1s": all(s["check"]["median"] <= GOALS["cli_s"] for s in sizes),
        "render_le_1s": all(s["render"]["median"] <= GOALS["cli_s"] for s in sizes),
        "identical_flows": all(s["identical_flows"] for s in sizes),
    }


def markdown(result: dict[str, Any]) -> str:
    t = spread.text
    rows = ["| flows | P1 agent | P1 ovs-ofctl add | P1 ratio | P2 agent | P2 ovs-ofctl dump | P2 ratio "
            "| P2 flow-mods |", "|---|---|---|---|---|---|---|---|"]
    memory = ["| flows | agent peak | agent growth per 10k flows | ovs-vswitchd growth | per 10k flows |",
              "|---|---|---|---|---|"]
    cli = ["| flows | brtun check | brtun render --host | python -c pass |", "|---|---|---|---|"]
    for s in result["sizes"]:
        rows.append(f"| {s['flows']:,} | {t(s['p1_agent'])} | {t(s['p1_ofctl'])} | {t(s['p1_ratio'], 'x', 2)} "
                    f"| {t(s['p2_agent'])} | {t(s['p2_ofctl'])} | {t(s['p2_ratio'], 'x', 2)} "
                    f"| {s['p2_flow_mods']} |")
        memory.append(f"| {s['flows']:,} | {t(s['agent_peak_mib'], ' MiB', 1)} | "
                      f"{_mib(s['agent_growth_mib_per_10k'])} | {_mib(s['switch_growth_mib'])} | "
                      f"{_mib(s['switch_growth_mib_per_10k'])} |")
        cli.append(f"| {s['flows']:,} | {t(s['check'])} | {t(s['render'])} | {t(s['python_start'])} |")
    goals = "\n".join(f"- {name}: {'met' if met else 'NOT met'}" for name, met in result["goals"].items())
    return (f"P1 (cold install, process start to barrier; goal <= {GOALS['p1_ratio']}x at 50k and 100k, "
            f"fixed cost at {BASE_FLOWS} flows <= {GOALS['fixed_s']} s) and P2 (restart, process start to in "
            f"sync; goal <= {GOALS['p2_ratio']}x, 0 flow-mods): median (min-max) of {result['runs']} runs, "
            "ratios taken per run against the baseline run next to it.\n\n" + "\n".join(rows) + "\n\n"
            "Memory: the agent's peak (VmHWM) growth over its peak with the 100-flow config, against "
            "ovs-vswitchd's resident growth holding the same flows (same switch, same run).\n\n"
            + "\n".join(memory) + f"\n\nagent peak slope: {result['agent_mib_per_10k']} MiB per 10k flows; "
            f"ovs-vswitchd: {result['switch_mib_per_10k']} MiB per 10k flows\n\n"
            f"check and render, whole processes (goal <= {GOALS['cli_s']} s):\n\n" + "\n".join(cli) + "\n\n"
            f"{goals}\n\ncommit {result['commit']}, {result['date']}, {result['machine']} ({result['cpus']} CPUs)\n")


def _mib(value: float | None) -> str:
    """A table cell: the base size has no growth to show."""
    return "" if value is None else f"{value} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000,50000,100000", help="flow counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default="agent", help="results name: bench/results/NAME.{md,json}")
    args = parser.parse_args()
    sizes = [int(text) for text in args.sizes.split(",")]
    workdir = RUN_ROOT / f"configs-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    measured = []
    try:
        for flows in sizes:
            with Bench(workdir) as bench:
                measured.append(bench.measure(flows, args.repeat).summary())
    finally:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    grown = [s for s in measured if s["agent_growth_mib_per_10k"] is not None]
    xs = [s["flows"] / 10_000 for s in grown]
    agent_slope = spread.slope(xs, [s["agent_peak_mib"]["median"] for s in grown])
    switch_slope = spread.slope(xs, [s["switch_growth_mib"] for s in grown])
    result = {
        "id": "P1,P2,memory,check,render", "what": "what a user waits for, from process start",
        "goals_set": GOALS, "sizes": measured, "runs": args.repeat,
        "agent_mib_per_10k": round(agent_slope, 1) if agent_slope is not None else None,
        "switch_mib_per_10k": round(switch_slope, 1) if switch_slope is not None else None,
        **report.provenance(),
    }
    result["goals"] = goals_met(result)
    report.write(args.output, result, markdown(result))
    print(markdown(result))
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
