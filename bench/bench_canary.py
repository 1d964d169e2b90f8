"""The canary's cost and speed: a real agent keeping a br-tun of N flows, left alone, then disturbed.

    sudo .venv/bin/python bench/bench_canary.py --sizes 10000 --seconds 30 --repeat 5

For each size: the agent installs the generated config (bench/bigconfig.py) on a private Open
vSwitch (userspace datapath, its own namespace), and then, with nothing changing, the CPU time the
agent and ovs-vswitchd spend over SECONDS (from /proc/PID/stat) is what keeping the bridge costs:
mostly the canary.  Then, REPEAT times, one l2population flow of table 20 is changed in place with
`ovs-ofctl mod-flows` (its table keeps its count) and the time until br-tun holds the config's flows
again is measured: the canary's detection plus the repair.  Writes bench/results/NAME.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bigconfig, report  # noqa: E402
from ovshost.agentproc import AgentProcess  # noqa: E402
from ovshost.privateovs import PrivateOvs  # noqa: E402

RUN_ROOT = Path("/run/brtun-bench")
TICKS = os.sysconf("SC_CLK_TCK")
REPAIR_TIMEOUT = 10.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def not_learned(lines: list[str]) -> list[str]:
    return [line for line in lines if "hard_timeout=" not in line or "learn(" in line]


def measure(ovs: PrivateOvs, workdir: Path, flows: int, seconds: float, repeat: int) -> dict[str, Any]:
    path = workdir / f"big{flows}.yaml"
    bigconfig.write(flows, path)
    agent = AgentProcess(ovs, path, bigconfig.HOST)
    try:
        agent.start()
        agent.wait_for_log("br-tun: read", timeout=240)
        expected = sorted(ovs.ofctl("--no-stats", "dump-flows", "br-tun").splitlines())
        time.sleep(3)  # the first audits
        pid, switch = int(agent.pidfile.read_text()), ovs.pid("ovs-vswitchd")
        assert switch is not None
        agent_before, switch_before, started = cpu_seconds(pid), cpu_seconds(switch), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - started
        agent_cpu, switch_cpu = cpu_seconds(pid) - agent_before, cpu_seconds(switch) - switch_before
        repairs = []
        table20 = [line for line in expected if "table=20, priority=2" in line]
        for run in range(repeat):
            line = table20[run % len(table20)]
            head = line.split(" actions=")[0].split(", ", 1)[1].replace(", ", ",")
            changed = time.monotonic()
            ovs.ofctl("mod-flows", "--strict", "br-tun", f"{head} actions=drop")
            while sorted(ovs.ofctl("--no-stats", "dump-flows", "br-tun").splitlines()) != expected:
                if time.monotonic() - changed > REPAIR_TIMEOUT:
                    break
                time.sleep(0.02)
            else:
                repairs.append(time.monotonic() - changed)
                time.sleep(1)
                continue
            print(f"not repaired in {REPAIR_TIMEOUT:.0f} s", flush=True)
            repairs.append(float("inf"))
            break
        result = {"flows": len(expected), "idle_seconds": round(wall, 1),
                  "agent_cpu_percent": round(100 * agent_cpu / wall, 2),
                  "switch_cpu_percent": round(100 * switch_cpu / wall, 2),
                  "repair_median_s": round(statistics.median(repairs), 3), "repair_max_s": round(max(repairs), 3),
                  "repairs": [round(r, 3) for r in repairs]}  # inf: not repaired in REPAIR_TIMEOUT
        print(f"{len(expected):>7,} flows: idle {wall:.0f} s: agent {result['agent_cpu_percent']}% of a CPU, "
              f"ovs-vswitchd {result['switch_cpu_percent']}%; a flow changed in place repaired in "
              f"{result['repair_median_s']} s (median of {repeat}, max {result['repair_max_s']})", flush=True)
        return result
    finally:
        agent.stop()
        ovs.vsctl("--if-exists", "del-br", "br-tun", "--", "--if-exists", "del-br", "br-int")


def markdown(result: dict[str, Any]) -> str:
    rows = ["| flows | agent CPU (idle) | ovs-vswitchd CPU (idle) | flow changed in place: repaired (median, max) |",
            "|---|---|---|---|"]
    for s in result["sizes"]:
        rows.append(f"| {s['flows']:,} | {s['agent_cpu_percent']}% | {s['switch_cpu_percent']}% "
                    f"| {s['repair_median_s']:.3f} s, {s['repair_max_s']:.3f} s |")
    return (f"The canary: CPU over {result['seconds']} s with nothing changing, and detection + repair of one "
            f"changed flow ({result['runs']} runs).\n\n" + "\n".join(rows) + "\n\n"
            f"commit {result['commit']}, {result['date']}, {result['machine']} ({result['cpus']} CPUs)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000", help="flow counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default="canary", help="results name: bench/results/NAME.{md,json}")
    args = parser.parse_args()
    name = f"brtun-c-{uuid.uuid4().hex[:6]}"
    ovs = PrivateOvs(name, RUN_ROOT / name)
    workdir = RUN_ROOT / f"canary-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    measured = []
    try:
        ovs.start()
        for flows in (int(text) for text in args.sizes.split(",")):
            measured.append(measure(ovs, workdir, flows, args.seconds, args.repeat))
    finally:
        ovs.stop()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    result = {"what": "the canary's idle cost and its repair of a flow changed in place", "sizes": measured,
              "seconds": args.seconds, "runs": args.repeat, **report.provenance()}
    report.write(args.output, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
