"""P5: TCP between VMs over GRE through brtun's br-tun, against the same VMs on one host (reported).

    .venv/bin/python bench/bench_iperf.py [--seconds 5] [--repeat 3]

A two-compute-host testbed (Mininet, a private userspace Open vSwitch and
a `brtun run` agent per host, the seed's VM plumbing: tap - qbr with the
iptables security group - qvb/qvo - br-int) with three VMs on one network:
two on compute1, one on compute2.  iperf3 (started here, by pidfile, on
tcp/22, the port the security group admits) measures
- over GRE: compute1's VM to compute2's (br-int - br-tun - GRE - br-tun - br-int);
- baseline, in the same run: compute1's VM to its neighbour on compute1
  (br-int alone: no tunnel, no br-tun).
Runs alternate; medians and the ratio go to bench/results/iperf.{md,json} (or --output NAME).
The figure is bound by Open vSwitch's userspace datapath, not by brtun:
the agent is not on the packet path.  Needs root; the testbed's namespaces
(vm1..vm3, underlay, p5c1, p5c2) must not exist yet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from flows.config import parse_config  # noqa: E402
from mininet_topos import probes, spec  # noqa: E402
from mininet_topos.topology import BuildOptions, Testbed  # noqa: E402

SSH = 22  # the one TCP port the testbed's security group admits
CONFIG = """
options: {l2_population: false}
networks:
  private: {type: gre, segmentation_id: 1}
hosts:
  p5c1:
    datapath_id: 0xc01
    local_ip: 192.168.100.21
    ports:
      - {network: private, mac: "fa:16:3e:5a:00:01", ip: 10.5.0.11, name: qvo5a000001-01}
      - {network: private, mac: "fa:16:3e:5a:00:02", ip: 10.5.0.12, name: qvo5a000002-02}
  p5c2:
    datapath_id: 0xc02
    local_ip: 192.168.100.22
    ports:
      - {network: private, mac: "fa:16:3e:5a:00:03", ip: 10.5.0.13, name: qvo5a000003-03}
testbed:
  name: p5bench
  underlay: {cidr: 192.168.100.0/24}
  roles: {p5c1: compute, p5c2: compute}
  subnets:
    private: {cidr: 10.5.0.0/24, dhcp: false}
  security_group: [icmp, ssh]
"""
NAMESPACES = ("vm1", "vm2", "vm3", "underlay", "p5c1", "p5c2")


def gbits(state: object, client: str, server: str, address: str, seconds: int) -> float:
    probes.iperf3_server(state, server, SSH)  # type: ignore[arg-type]
    value, error = probes.iperf3_gbits(client, address, SSH, seconds=seconds)
    if value is None:
        raise RuntimeError(f"iperf3 {client} -> {server} failed: {error}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="length of each iperf3 run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default="iperf", help="results name: bench/results/NAME.{md,json}")
    args = parser.parse_args()
    taken = [name for name in NAMESPACES if Path(f"/run/netns/{name}").exists()]
    if taken:
        print(f"namespaces {', '.join(taken)} exist (a testbed is up?): bring it down first", file=sys.stderr)
        return 2
    config = parse_config(CONFIG)
    testbed_spec = spec.testbed_spec(config, "p5bench")
    (near, neighbour), (far,) = testbed_spec.vms_on("p5c1"), testbed_spec.vms_on("p5c2")
    gre, local = [], []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "p5.yaml"
        path.write_text(CONFIG)
        built = Testbed(path, config, testbed_spec, BuildOptions(progress=lambda _text: None), kind="p5").up()
        try:
            for run in range(args.repeat):
                assert far.ip is not None and neighbour.ip is not None
                gre.append(gbits(built.state, near.name, far.name, far.ip, args.seconds))
                local.append(gbits(built.state, near.name, neighbour.name, neighbour.ip, args.seconds))
                print(f"run {run + 1}: over GRE {gre[-1]:.2f} Gbit/s, same host {local[-1]:.2f} Gbit/s", flush=True)
        finally:
            built.close()
    result = {
        "id": "P5", "what": "iperf3 TCP VM to VM over GRE (br-tun) vs the same VMs on one host",
        "gre_gbits_median": round(statistics.median(gre), 3),
        "same_host_gbits_median": round(statistics.median(local), 3),
        "ratio": round(statistics.median(gre) / statistics.median(local), 2), "goal": "report",
        "runs": args.repeat, "seconds": args.seconds, "datapath": "netdev (userspace)",
        **report.provenance(),
    }
    report.write(args.output, result,
        "| id | what | over GRE (median) | same host, no tunnel (median) | ratio |\n|---|---|---|---|---|\n"
        f"| P5 | iperf3 TCP VM to VM, {args.seconds} s x {args.repeat} | {result['gre_gbits_median']} Gbit/s | "
        f"{result['same_host_gbits_median']} Gbit/s | {result['ratio']} |\n\n"
        f"commit {result['commit']}, {result['date']}, {result['machine']} ({result['cpus']} CPUs), "
        "Open vSwitch userspace datapath\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
