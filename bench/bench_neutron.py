"""Scale: one port bound on one host -> every other agent's br-tun has its flows, for N agents.

    .venv/bin/python bench/bench_neutron.py [--sizes 10,30,60] [--repeat 5]

A real neutron-server (MariaDB, RabbitMQ, API, RPC server) in a namespace
of its own; for each N, N `brtun run --neutron` agents: two with a switch
(host 0, where the port is plugged, and host 1, a receiver whose br-tun is
programmed for real), the other N-2 `--no-switch` (each computes its
br-tun and reports, as its own process).  Every agent has a port on the
benchmark's network (l2population tells each of every other).  Then, R
times: a port is made through the API and bound to host 0, and its VIF is
plugged into host 0's br-int (t0); host 0's agent asks Neutron about it,
wires it and reports it up; l2population fans its entry out; each other
agent's log says when its br-tun had the port's flows (computed, or for
host 1 installed and confirmed by a barrier).  The floor, in the same run:
N-1 plain oslo.messaging consumers of the same fanout (bench/fanout_consumers.py),
which only note when the message arrived.  Then the port is deleted.

Also measured in this process: one agent's own work for one announced port
when the network spans 10 ... 1,000 hosts (the Neutron state, its config,
the Change computed without a switch), for the estimate at 1,000 hosts.

Writes bench/results/neutron.{md,json}.  Needs root, mariadb-server,
rabbitmq-server and neutron (`./run setup`).  Everything it starts it stops by
PID; every namespace it makes has a name of its own (no lock needed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from ovshost import pids  # noqa: E402
from ovshost.agentproc import AgentProcess  # noqa: E402
from ovshost.neutronapi import NeutronApi  # noqa: E402
from ovshost.neutronserver import NeutronServer  # noqa: E402
from ovshost.privateovs import PrivateOvs  # noqa: E402

SERVER_IP = "10.254.0.1"
PREFIX = 24
RUN_ROOT = Path("/run/brtun-bench")


def fail(message: str) -> None:
    print(f"bench_neutron: {message}", file=sys.stderr)
    raise SystemExit(2)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def log_time(line: str) -> float:
    """A brtun log line's time (logging's asctime, this machine's local time) as an epoch."""
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


class Bench:
    """The benchmark's namespace, server and switches; `down` removes all of it, also after a failure."""

    def __init__(self) -> None:
        self.name = f"brtun-bn-{uuid.uuid4().hex[:6]}"
        self.directory = RUN_ROOT / self.name
        self.server: NeutronServer | None = None
        self.switches: list[PrivateOvs] = []
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []  # no-switch agents and the consumers
        self.agents: list[AgentProcess] = []

    def up(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        sh("ip", "netns", "add", self.name)
        self.netns("ip", "link", "set", "lo", "up")
        self.netns("ip", "link", "add", "bb0", "type", "bridge")
        self.netns("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", "bb0")
        self.netns("ip", "link", "set", "bb0", "up")
        for index in range(2):  # the two hosts with a switch, each in a namespace of its own on the bridge
            ovs = PrivateOvs(f"{self.name}-s{index}", self.directory / f"switch{index}")
            self.switches.append(ovs)
            ovs.start()
            sh("ip", "link", "add", f"sw{index}", "netns", self.name, "type", "veth", "peer", "name", "eth0",
               "netns", ovs.name)
            self.netns("ip", "link", "set", f"sw{index}", "master", "bb0", "up")
            ovs.run("ip", "addr", "add", f"{self.switch_ip(index)}/{PREFIX}", "dev", "eth0")
            ovs.run("ip", "link", "set", "eth0", "up")
        self.server = NeutronServer(self.directory / "neutron", self.name, SERVER_IP, tenant_network_type="vxlan",
                                    agent_down_time=75)
        started = time.monotonic()
        self.server.start()
        print(f"neutron-server up in {time.monotonic() - started:.1f} s ({self.server.timings})", flush=True)

    def netns(self, *argv: str) -> None:
        sh("ip", "netns", "exec", self.name, *argv)

    @staticmethod
    def switch_ip(index: int) -> str:
        return f"10.254.0.{10 + index}"

    @staticmethod
    def fake_ip(index: int) -> str:
        """A no-switch agent's endpoint: never used for packets; distinct in its low 12 bits (brtun's ofports)."""
        return f"10.254.{1 + index // 250}.{index % 250 + 1}"

    def stop_round(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents.clear()
        for ovs in self.switches:  # the VIFs of the round's ports
            for port in ovs.run("ovs-vsctl", "--timeout=10", "list-ports", "br-int", check=False).stdout.split():
                if port.startswith("tap"):
                    ovs.run("ovs-vsctl", "--timeout=10", "del-port", "br-int", port, check=False)
        for process, pidfile in self.processes:
            pids.stop(pidfile, "", timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()

    def down(self) -> None:
        self.stop_round()
        if self.server is not None:
            self.server.remove()
        for ovs in self.switches:
            ovs.stop()
        subprocess.run(["ip", "netns", "del", self.name], check=False)
        subprocess.run(["rm", "-rf", str(self.directory)], check=False)

    def spawn(self, argv: list[str], log: Path, pidfile: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as stream:
            process = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=stream,
                                       stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        pids.write(pidfile, process.pid)
        self.processes.append((process, pidfile))
        return process


class Round:
    """N agents on one network; the port events and what each agent's log says of them."""

    def __init__(self, bench: Bench, n: int) -> None:
        self.bench, self.n = bench, n
        assert bench.server is not None
        self.server = bench.server
        self.api = NeutronApi(self.server.api_socket)
        self.directory = bench.directory / f"n{n}"
        self.directory.mkdir(exist_ok=True)
        self.hosts = [f"n{n}-h{i}" for i in range(n)]
        self.logs: dict[str, Path] = {}

    def start(self) -> float:
        started = time.monotonic()
        for index, host in enumerate(self.hosts):
            switch = index < 2
            local_ip = Bench.switch_ip(index) if switch else Bench.fake_ip(index)
            conf = self.directory / f"{host}.conf"
            conf.write_text(self.server.agent_config(local_ip, ("vxlan",), report_interval=30, settle_seconds=1))
            if switch:
                ovs = self.bench.switches[index]
                agent = AgentProcess(ovs, conf, host, listen=f"127.0.0.1:{6653}", neutron=True,
                                     extra_args=("--metrics-port", "0", "--control-socket", "none"))
                agent.start()
                self.bench.agents.append(agent)
                self.logs[host] = agent.log_path
            else:
                log = self.directory / f"{host}.log"
                self.bench.spawn([sys.executable, "-m", "controller.cli", "run", "--neutron", str(conf), "--host", host,
                                  "--no-switch"], log, self.directory / f"{host}.pid")
                self.logs[host] = log
        self.api.wait_agents(self.hosts, timeout=600)
        return time.monotonic() - started

    def populate(self) -> float:
        """The network, and a port on every host but host 0 (each bound as Nova binds it, then up)."""
        started = time.monotonic()
        self.network = self.api.create_network(f"bench-{self.n}", "vxlan")["id"]
        self.api.create_subnet(self.network, "10.50.0.0/16", None, dhcp=False)
        ports = []
        for index, host in enumerate(self.hosts[1:], start=1):
            port = self.api.create_port(self.network, f"fa:16:3e:{self.n:02x}:{index // 256:02x}:{index % 256:02x}",
                                        None, None, name=f"{host}-vm")
            self.api.bind_port(port["id"], host)
            if index == 1:
                self.plug(1, port["id"], port["mac_address"], "tapseed")
            ports.append(port["id"])
        for port in ports:
            self.api.wait_status(port, timeout=600)
        self.quiet()
        return time.monotonic() - started

    def plug(self, index: int, port_id: str, mac: str, name: str) -> None:
        self.bench.switches[index].vsctl("add-port", "br-int", name, "--", "set", "Interface", name, "type=internal",
                                         f"external_ids:iface-id={port_id}", f"external_ids:attached-mac={mac}",
                                         "external_ids:iface-status=active")

    def quiet(self, seconds: float = 3, timeout: float = 300) -> None:
        """Until no agent has logged anything for `seconds`."""
        deadline = time.monotonic() + timeout
        sizes: dict[str, int] = {}
        still = time.monotonic()
        while time.monotonic() < deadline:
            now = {host: log.stat().st_size for host, log in self.logs.items()}
            if now != sizes:
                sizes, still = now, time.monotonic()
            elif time.monotonic() - still >= seconds:
                return
            time.sleep(0.2)

    def seen(self, mac: str, sign: str, since: float) -> dict[str, float]:
        """Each agent's time of the first change that added (+) or removed (-) the MAC, after `since`."""
        found = {}
        for host, log in self.logs.items():
            if host == self.hosts[0]:
                continue
            for line in log.read_text(errors="replace").splitlines():
                if "neutron: applied" in line and f"remote MACs {sign}" in line and mac in line.split(
                        f"remote MACs {sign}")[1].split(";")[0]:
                    when = log_time(line)
                    if when >= since - 0.01:
                        found[host] = when
                        break
        return found

    def floor(self, output: Path, mac: str, since: float) -> list[float]:
        times: dict[str, float] = {}
        for line in output.read_text().splitlines() if output.exists() else []:
            consumer, when, *macs = line.split()
            if mac in macs and float(when) >= since and consumer not in times:
                times[consumer] = float(when)
        return [t - since for t in times.values()]

    def compute_ms(self) -> list[float]:
        """The no-switch agents' own time to carry out the last change (their log's "in X ms")."""
        spent = []
        for host, log in self.logs.items():
            lines = [line for line in log.read_text(errors="replace").splitlines() if "neutron: applied" in line]
            if lines and " in " in lines[-1] and host not in self.hosts[:2]:
                spent.append(float(lines[-1].split(" in ")[1].split(" ms")[0]))
        return spent

    def measure(self, repeat: int) -> dict[str, Any]:
        output = self.directory / "floor.txt"
        consumers = self.bench.spawn([sys.executable, "bench/fanout_consumers.py", self.server.transport_url,
                                      str(self.n - 1), str(output)], self.directory / "floor.log",
                                     self.directory / "floor.pid")
        deadline = time.monotonic() + 120
        while "ready" not in (self.directory / "floor.log").read_text(errors="replace"):
            if consumers.poll() is not None or time.monotonic() > deadline:
                fail(f"the fanout consumers did not start:\n{(self.directory / 'floor.log').read_text()[-2000:]}")
            time.sleep(0.2)
        ours, floor, active, removal, spent, receiver = [], [], [], [], [], []
        for run in range(repeat):
            mac = f"fa:16:3e:ff:{self.n:02x}:{run:02x}"
            port = self.api.create_port(self.network, mac, None, None, name=f"measured-{run}")
            self.api.bind_port(port["id"], self.hosts[0])
            t0 = time.time()
            self.plug(0, port["id"], mac, f"tapm{run}")
            deadline = time.monotonic() + 300
            while len(self.seen(mac, "+", t0)) < self.n - 1 or len(self.floor(output, mac, t0)) < self.n - 1:
                if time.monotonic() > deadline:
                    fail(f"N={self.n}: only {len(self.seen(mac, '+', t0))} agents and "
                         f"{len(self.floor(output, mac, t0))} consumers saw {mac} in 300 s")
                time.sleep(0.1)
            seen = self.seen(mac, "+", t0)
            active.append(self.api.wait_status(port["id"]) + time.time() - t0)
            ours += [t - t0 for t in seen.values()]
            receiver.append(seen[self.hosts[1]] - t0)
            floor += self.floor(output, mac, t0)
            spent += self.compute_ms()
            t1 = time.time()
            self.api.delete_port(port["id"])
            while len(self.seen(mac, "-", t1)) < self.n - 1:
                if time.monotonic() > deadline + 120:
                    fail(f"N={self.n}: {mac} did not leave every agent")
                time.sleep(0.1)
            removal += [t - t1 for t in self.seen(mac, "-", t1).values()]
            self.bench.switches[0].vsctl("del-port", "br-int", f"tapm{run}")
            self.quiet(seconds=1.5, timeout=60)
            print(f"N={self.n} run {run + 1}: every agent in {max(ours[-(self.n - 1):]):.3f} s (p50 "
                  f"{statistics.median(ours[-(self.n - 1):]):.3f}), floor {max(floor[-(self.n - 1):]):.3f} s, "
                  f"receiver with a switch {receiver[-1]:.3f} s", flush=True)
        rss = [int(Path(f"/proc/{p.pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
               for p, _ in self.bench.processes if p.poll() is None and p is not consumers]
        return {"n": self.n, "samples": len(ours),
                "p50_s": round(statistics.median(ours), 3), "p99_s": round(percentile(ours, 0.99), 3),
                "max_s": round(max(ours), 3),
                "floor_p50_s": round(statistics.median(floor), 3), "floor_p99_s": round(percentile(floor, 0.99), 3),
                "receiver_with_switch_p50_s": round(statistics.median(receiver), 3),
                "port_active_p50_s": round(statistics.median(active), 3),
                "removal_p50_s": round(statistics.median(removal), 3),
                "removal_p99_s": round(percentile(removal, 0.99), 3),
                "agent_work_ms_p50": round(statistics.median(spent), 1) if spent else None,
                "no_switch_agent_rss_mib": round(statistics.median(rss), 1) if rss else None}


def own_work(remote_hosts: int, runs: int = 5) -> dict[str, float]:
    """One agent's work for one port announced on a network its host shares with `remote_hosts` others:
    the state, the config, the Change computed (no switch), in this process."""
    from controller.changes import Change
    from controller.computeonly import ComputeOnly
    from controller.running import Origin
    from flows.config import Options
    from flows.neutronstate import LocalHost, NeutronState, parse_details

    net = "0b0b0b0b-0000-4000-8000-000000000001"
    state = NeutronState(LocalHost("h0", "10.200.0.1", ("vxlan",), 0xB01, options=Options(l2_population=True)))
    state.set_local_port(parse_details({"device": "p0", "port_id": "p0", "network_id": net, "network_type": "vxlan",
                                        "segmentation_id": 7, "mac_address": "fa:16:3e:00:00:01", "fixed_ips": [],
                                        "admin_state_up": True}, "tap0", ("vxlan",)))

    def ip(i: int) -> str:
        return f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}"

    entries = {ip(i + 2): [["00:00:00:00:00:00", "0.0.0.0"], [f"fa:16:3e:01:{i // 256:02x}:{i % 256:02x}",
                                                                f"10.9.{i // 250}.{i % 250 + 1}"]]
               for i in range(remote_hosts)}
    state.add_fdb({net: {"segment_id": 7, "network_type": "vxlan", "ports": entries}})
    target = ComputeOnly(state.config(), "h0", Origin(""))
    times = []
    for run in range(runs):
        started = time.perf_counter()
        state.add_fdb({net: {"segment_id": 7, "network_type": "vxlan",
                             "ports": {ip(2): [[f"fa:16:3e:02:00:{run:02x}", f"10.8.0.{run + 1}"]]}}})
        config = state.config()
        Change.to(target, config, Origin("")).apply(target)
        times.append((time.perf_counter() - started) * 1000)
    flows = len(target.held["br-tun"])
    return {"remote_hosts": remote_hosts, "ms_median": round(statistics.median(times), 1), "flows": flows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,30,60", help="agents per round (comma-separated, each >= 3)")
    parser.add_argument("--repeat", type=int, default=5, help="ports measured per round")
    parser.add_argument("--output", default="neutron", help="bench/results/OUTPUT.{md,json}")
    parser.add_argument("--work-sizes", default="10,30,60,250,1000",
                        help="network sizes for one agent's own work (in this process)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if os.geteuid() != 0 or any(n < 3 for n in sizes):
        fail("needs root, and sizes of at least 3 agents")
    work = [own_work(int(n)) for n in args.work_sizes.split(",")]
    for row in work:
        print(f"one agent's own work, network over {row['remote_hosts']} other hosts ({row['flows']} flows): "
              f"{row['ms_median']} ms", flush=True)
    bench = Bench()
    rows = []
    try:
        bench.up()
        for n in sizes:
            round_ = Round(bench, n)
            started = round_.start()
            populated = round_.populate()
            print(f"N={n}: {n} agents registered in {started:.1f} s, every one with a port up in {populated:.1f} s",
                  flush=True)
            row = round_.measure(args.repeat)
            row.update(start_s=round(started, 1), populate_s=round(populated, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
            bench.stop_round()
    finally:
        bench.down()
    result = {"id": "N1", "what": "one port bound -> every other agent's br-tun has its flows",
              "rounds": rows, "own_work": work, "repeat": args.repeat, **report.provenance()}
    lines = ["| N agents | samples | p50 | p99 | max | floor p50 (Neutron's fanout to N-1 plain consumers) | floor p99 "
             "| receiver with a switch, p50 | port ACTIVE p50 | removal p50 / p99 | agent's own work p50 | "
             "no-switch agent RSS |", "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['n']} | {r['samples']} | {r['p50_s']} s | {r['p99_s']} s | {r['max_s']} s | "
                     f"{r['floor_p50_s']} s | {r['floor_p99_s']} s | {r['receiver_with_switch_p50_s']} s | "
                     f"{r['port_active_p50_s']} s | {r['removal_p50_s']} s / {r['removal_p99_s']} s | "
                     f"{r['agent_work_ms_p50']} ms | {r['no_switch_agent_rss_mib']} MiB |")
    lines += ["", "| network over N other hosts | one agent's own work (state, config, Change) | br-tun flows |",
              "|---|---|---|"] + [f"| {w['remote_hosts']} | {w['ms_median']} ms | {w['flows']} |" for w in work]
    report.write(args.output, result, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
