"""P1 and P2: the agent against the switch's own limit, from 1k to 100k flows, and its memory.

    .venv/bin/python bench/bench_agent.py [--sizes 1000,10000,50000,100000] [--repeat 3]

For each size, bench/bigconfig.py makes a config whose host h0 has about
that many br-tun flows; a real `brtun run` agent programs a private Open
vSwitch (userspace datapath, its own namespace) and is timed from its log:

- P1, full install: br-tun's flows deleted, the agent started; from "br-tun
  connected" to "barrier confirmed".  Baseline, in the same run on the same
  switch: `ovs-ofctl -O OpenFlow13 --bundle add-flows` of the identical flows
  (`brtun render`'s text) onto the emptied bridge.
- P2, restart over the programmed switch: the agent restarted with `ovs-ofctl
  monitor br-tun watch:!initial` watching; from "br-tun connected" to "in sync,
  nothing sent", and the flow-mods the monitor saw (must be 0).  Baseline:
  `ovs-ofctl -O OpenFlow13 dump-flows br-tun` of that switch.
- memory: the agent's resident set once in sync, and its slope per 10k flows.

Each figure is the median of `--repeat` runs, measured interleaved with its
baseline; ratios are agent / baseline.  After every install the switch's
flows must equal the rendered ones.  Writes bench/results/agent.{md,json}.
Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

from bench import bigconfig, report  # noqa: E402
from flows.config import Config  # noqa: E402
from flows.flow import render_flows  # noqa: E402
from flows.model import build_bridge  # noqa: E402
from flows.pipeline import build  # noqa: E402
from ovshost.agentproc import AgentProcess  # noqa: E402
from ovshost.privateovs import PrivateOvs  # noqa: E402
from tests.integration.helpers import FlowMonitor  # noqa: E402

RUN_ROOT = Path("/run/brtun-bench")
GOAL = 2.0  # agent / ovs-ofctl, for P1 and P2
START_TIMEOUT = 240.0  # a 100k-flow config takes a while to load


@dataclass
class Size:
    """Every measurement of one size."""

    flows: int
    p1: list[float] = field(default_factory=list)
    p1_base: list[float] = field(default_factory=list)
    p2: list[float] = field(default_factory=list)
    p2_base: list[float] = field(default_factory=list)
    p2_flow_mods: list[int] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    identical: bool = True

    def summary(self) -> dict[str, Any]:
        p1, p1_base = statistics.median(self.p1), statistics.median(self.p1_base)
        p2, p2_base = statistics.median(self.p2), statistics.median(self.p2_base)
        return {
            "flows": self.flows,
            "p1_agent_s": round(p1, 4), "p1_ofctl_s": round(p1_base, 4), "p1_ratio": round(p1 / p1_base, 2),
            "p2_agent_s": round(p2, 4), "p2_ofctl_s": round(p2_base, 4), "p2_ratio": round(p2 / p2_base, 2),
            "p2_flow_mods": max(self.p2_flow_mods), "rss_mib": round(statistics.median(self.rss_kib) / 1024, 1),
            "identical_flows": self.identical,
            "runs": {"p1": self.p1, "p1_ofctl": self.p1_base, "p2": self.p2, "p2_ofctl": self.p2_base},
        }


def log_time(line: str) -> float:
    """Seconds since the epoch of a log line (`2026-01-02 10:11:12,345 INFO ...`)."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def connect_to(log: str, done: str) -> float:
    """Seconds from the last "br-tun connected" before the `done` line to that line."""
    lines = log.splitlines()
    end = next(i for i, line in enumerate(lines) if "br-tun: read" in line and done in line)
    start = max(i for i, line in enumerate(lines[:end]) if "br-tun connected" in line)
    return log_time(lines[end]) - log_time(lines[start])


def rss_kib(pidfile: Path) -> int:
    pid = int(pidfile.read_text().strip())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Bench:
    """One private switch and one agent; sizes are measured one after another."""

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
        """Wall time of one ovs-ofctl run (as an operator would type it) against this switch."""
        started = time.perf_counter()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *argv], env=self.ovs.env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - started

    def dump(self) -> list[str]:
        return sorted(self.ovs.ofctl("--no-stats", "dump-flows", "br-tun").splitlines())

    def ofports(self) -> dict[str, int]:
        table = json.loads(self.ovs.vsctl("--format=json", "--columns=name,ofport", "list", "Interface"))
        return {name: ofport for name, ofport in table["data"] if isinstance(ofport, int) and ofport > 0}

    def start_agent(self, config: Path, done: str) -> str:
        """Start the agent; return its log once br-tun's reconcile logged `done`."""
        assert self.agent is not None
        self.agent.start(config)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            log = self.agent.wait_for_log(done, timeout=START_TIMEOUT)
            if any("br-tun: read" in line and done in line for line in log.splitlines()):
                return log
            time.sleep(0.02)
        raise RuntimeError(f"no br-tun reconcile with {done!r}:\n{self.agent.log()[-3000:]}")

    def measure(self, flows: int, repeat: int) -> Size:
        path = self.workdir / f"big{flows}.yaml"
        config = bigconfig.write(flows, path)
        self.agent = AgentProcess(self.ovs, path, bigconfig.HOST)
        # Warm-up: the agent makes the bridges and tunnel ports and installs everything.
        self.start_agent(path, "br-tun: read")
        expected_text = self.wait_programmed(config)
        expected = sorted(expected_text.splitlines())
        size = Size(len(expected))
        rendered = self.workdir / f"big{flows}.flows"
        rendered.write_text(expected_text)
        for run in range(repeat):
            # P1: the agent over an emptied br-tun.
            self.agent.stop()
            self.ovs.ofctl("del-flows", "br-tun")
            log = self.start_agent(path, "barrier confirmed")
            size.p1.append(connect_to(log, "barrier confirmed"))
            size.identical &= self.dump() == expected
            # P2: the agent restarted over the programmed switch, watched.
            self.agent.stop()
            with FlowMonitor(self.ovs, "br-tun") as monitor:
                log = self.start_agent(path, "in sync, nothing sent")
            size.p2.append(connect_to(log, "in sync, nothing sent"))
            size.p2_flow_mods.append(len(monitor.events))
            size.rss_kib.append(rss_kib(self.agent.pidfile))
            self.agent.stop()
            # The baselines, on the same switch, in between.
            self.ovs.ofctl("del-flows", "br-tun")
            size.p1_base.append(self.ofctl_seconds("--bundle", "add-flows", "br-tun", str(rendered)))
            size.identical &= self.dump() == expected
            size.p2_base.append(self.ofctl_seconds("dump-flows", "br-tun"))
            print(f"{size.flows:>7,} flows, run {run + 1}: P1 {size.p1[-1]:.3f} s vs {size.p1_base[-1]:.3f} s, "
                  f"P2 {size.p2[-1]:.3f} s vs {size.p2_base[-1]:.3f} s, {size.p2_flow_mods[-1]} flow-mods, "
                  f"{size.rss_kib[-1] / 1024:.0f} MiB", flush=True)
        self.agent.stop()
        self.ovs.vsctl("--if-exists", "del-br", "br-tun", "--", "--if-exists", "del-br", "br-int")
        return size

    def wait_programmed(self, config: Config) -> str:
        """Until br-tun holds exactly the flows the config gives for the switch's ofports; their text."""
        assert self.agent is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = render_flows(build(build_bridge(config, bigconfig.HOST, observed_ofports=self.ofports())))
            if self.dump() == sorted(text.splitlines()):
                return text
            time.sleep(0.5)
        raise RuntimeError(f"the agent did not program br-tun:\n{self.agent.log()[-3000:]}")


def memory_slope(sizes: list[dict[str, Any]]) -> float | None:
    """MiB per 10k flows: the least-squares slope of resident memory over flows."""
    if len(sizes) < 2:
        return None
    xs = [s["flows"] for s in sizes]
    ys = [s["rss_mib"] for s in sizes]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    return round(slope * 10_000, 1)


def markdown(result: dict[str, Any]) -> str:
    rows = ["| flows | P1 agent | P1 ovs-ofctl add | P1 ratio | P2 agent | P2 ovs-ofctl dump | P2 ratio "
            "| P2 flow-mods | agent RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for s in result["sizes"]:
        rows.append(f"| {s['flows']:,} | {s['p1_agent_s']:.3f} s | {s['p1_ofctl_s']:.3f} s | {s['p1_ratio']}x "
                    f"| {s['p2_agent_s']:.3f} s | {s['p2_ofctl_s']:.3f} s | {s['p2_ratio']}x | {s['p2_flow_mods']} "
                    f"| {s['rss_mib']} MiB |")
    return ("P1 (full install, connect to barrier) and P2 (restart, connect to in sync), goal <= 2x; "
            f"medians of {result['runs']} runs.\n\n" + "\n".join(rows) + "\n\n"
            f"memory: {result['mib_per_10k_flows']} MiB per 10k flows; commit {result['commit']}, "
            f"{result['date']}, {result['machine']} ({result['cpus']} CPUs)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000,100000", help="flow counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default="agent", help="results name: bench/results/NAME.{md,json}")
    args = parser.parse_args()
    sizes = [int(text) for text in args.sizes.split(",")]
    workdir = RUN_ROOT / f"configs-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    measured = []
    try:
        with Bench(workdir) as bench:
            for flows in sizes:
                measured.append(bench.measure(flows, args.repeat).summary())
    finally:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    result = {
        "id": "P1,P2", "what": "agent install and restart against ovs-ofctl", "goal": f"<= {GOAL}x, 0 flow-mods",
        "sizes": measured, "mib_per_10k_flows": memory_slope(measured), "runs": args.repeat,
        **report.provenance(),
    }
    report.write(args.output, result, markdown(result))
    print(markdown(result))
    met = all(s["p1_ratio"] <= GOAL and s["p2_ratio"] <= GOAL and s["p2_flow_mods"] == 0
              and s["identical_flows"] for s in measured)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
