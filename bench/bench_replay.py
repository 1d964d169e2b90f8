"""P4: the replay simulator's packets per second, against ofproto/trace on a real switch in the same run.

    .venv/bin/python bench/bench_replay.py [--packets 20000] [--traced 300] [--repeat 3]

Both replay the same generated packets (tests/packetgen.py) through the
same flows (tests/data/configs/mixed.yaml, host h1); the baseline is
Open vSwitch's `ofproto/trace -generate` on a private switch, asked over one
persistent unixctl connection (what `ovs-appctl` sends, without a process
per packet: the fairest baseline).  Each run times the simulator just before
and just after the traced batch, so each run's ratio compares figures taken
under the same load; reports the median ratio and its spread, and writes
bench/results/replay.{md,json}.  Needs root (for the switch).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.replay import bridge_ports, desired_flows, tunnel_endpoints  # noqa: E402
from flows.simulator import FlowTableSimulator  # noqa: E402
from ovshost.scratch import ScratchSwitch  # noqa: E402
from tests.packetgen import random_packet, universe  # noqa: E402

CONFIG, HOST = ROOT / "tests/data/configs/mixed.yaml", "h1"


def packets(count: int, seed: int) -> list[dict[str, int]]:
    config = load_config(str(CONFIG))
    world = universe(config, HOST)
    rng = random.Random(seed)
    return [random_packet(world, rng, []) for _ in range(count)]


def simulator_pps(batch: list[dict[str, int]]) -> float:
    simulator = FlowTableSimulator.of(desired_flows(load_config(str(CONFIG)), HOST))
    started = time.perf_counter()
    for packet in batch:
        simulator.process(packet)
    return len(batch) / (time.perf_counter() - started)


def trace_pps(switch: ScratchSwitch, batch: list[dict[str, int]]) -> float:
    config = load_config(str(CONFIG))
    switch.load(bridge_ports(config, HOST), desired_flows(config, HOST), tunnel_endpoints(config, HOST))
    started = time.perf_counter()
    for packet in batch:
        switch.trace(packet)
    return len(batch) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20000, help="packets through the simulator per run")
    parser.add_argument("--traced", type=int, default=300, help="packets through ofproto/trace per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default="replay", help="bench/results/OUTPUT.{md,json}")
    args = parser.parse_args()
    sim, live, ratios = [], [], []
    with ScratchSwitch() as switch:
        for run in range(args.repeat):
            batch = packets(args.packets, seed=run)  # new packets each run: nothing learned before
            before = simulator_pps(batch)
            traced = trace_pps(switch, batch[: args.traced])
            after = simulator_pps(packets(args.packets, seed=1000 + run))
            sim.append((before + after) / 2)
            live.append(traced)
            ratios.append(sim[-1] / traced)
            print(f"run {run + 1}: simulator {before:,.0f} / {after:,.0f} pps, ofproto/trace {traced:,.0f} pps: "
                  f"{ratios[-1]:.0f}x", flush=True)
    result = {
        "id": "P4", "what": "replay simulator packets per second vs ofproto/trace over one unixctl connection",
        "simulator_pps_median": round(statistics.median(sim)), "trace_pps_median": round(statistics.median(live)),
        "ratio": round(statistics.median(ratios), 1), "ratio_min": round(min(ratios), 1),
        "ratio_max": round(max(ratios), 1), "goal": ">= 100x",
        "runs": args.repeat, "packets": args.packets, "traced": args.traced,
        **report.provenance(),
    }
    report.write(args.output, result,
        "| id | what | simulator (median) | ofproto/trace over unixctl (median) | ratio (median, min-max) | goal |\n"
        "|---|---|---|---|---|---|\n"
        f"| P4 | replay, packets/s | {result['simulator_pps_median']:,} | {result['trace_pps_median']:,} | "
        f"{result['ratio']}x ({result['ratio_min']}-{result['ratio_max']}) | >= 100x |\n")
    print(json.dumps(result))
    return 0 if result["ratio"] >= 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
