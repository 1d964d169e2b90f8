"""A valid brtun config whose first host's br-tun holds about N flows, for the scale benchmarks.

    .venv/bin/python bench/bigconfig.py 50000 -o /tmp/big.yaml   # prints the exact count

The shape is an l2population cloud with the ARP responder on: `hosts`
hosts (one tunnel port each toward the measured host, alternating GRE and
VXLAN networks so both tunnel tables fill), and as many networks as it
takes, each with a port on every host.  Per network the measured host gets
a table 3/4 entry, a table 22 flood entry and, per remote port, one table
20 and one table 21 entry; so the flow count grows with networks x hosts,
as it does in a real cloud.  When the local VLANs run out (4094 per host)
a network gets several ports per host instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.config import Config, parse_config  # noqa: E402
from flows.model import build_bridge  # noqa: E402
from flows.pipeline import build  # noqa: E402

HOST = "h0"  # the host whose br-tun the benchmarks program
DEFAULT_TABLES = 15  # setup_default_table with the ARP responder on
MAX_NETWORKS = 4000  # stay under the 4094 local VLANs of a host


def plan(flows: int, hosts: int) -> tuple[int, int]:
    """(networks, ports per host and network) that give about `flows` flows on HOST."""
    remotes = hosts - 1
    fixed = DEFAULT_TABLES + remotes  # defaults + table 0 per tunnel port
    per_network_and_port = 2 * remotes  # tables 20 and 21 per remote port
    ports = 1
    networks = max(1, round((flows - fixed) / (2 + per_network_and_port)))
    if networks > MAX_NETWORKS:
        ports = math.ceil(networks / MAX_NETWORKS)
        networks = max(1, round((flows - fixed) / (2 + per_network_and_port * ports)))
    return networks, ports


def generate(flows: int, hosts: int = 16) -> dict[str, Any]:
    """The config as plain data (YAML-ready)."""
    if not 2 <= hosts <= 4000:
        raise ValueError("hosts must be 2..4000 (endpoints differ in their low 12 bits)")
    networks, ports = plan(flows, hosts)
    config: dict[str, Any] = {"options": {"l2_population": True, "arp_responder": True}, "networks": {},
                              "hosts": {}}
    for index in range(networks):
        kind = "gre" if index % 2 == 0 else "vxlan"
        config["networks"][f"n{index}"] = {"type": kind, "segmentation_id": index + 1}
    for host in range(hosts):
        host_ports = []
        for index in range(networks):
            for port in range(ports):
                serial = host * ports + port  # unique per network
                mac = f"fa:16:3e:{(serial >> 8) & 0xFF:02x}:{serial & 0xFF:02x}:{port:02x}"
                ip = f"10.{serial >> 8 & 0xFF}.{serial & 0xFF}.{port + 2}"
                host_ports.append({"network": f"n{index}", "mac": mac, "ip": ip})
        config["hosts"][f"h{host}"] = {"datapath_id": 0x1000 + host,
                                       "local_ip": f"10.200.{(host + 1) >> 8}.{(host + 1) & 0xFF}",
                                       "ports": host_ports}
    return config


def cloud(hosts: int, networks: int = 200, ports: int = 10) -> dict[str, Any]:
    """A wide cloud rather than a full host: `hosts` hosts with `ports` VM ports each, spread over
    `networks` networks (GRE and VXLAN), l2population and the ARP responder on; what `brtun check`
    of a 2,000-host config is measured on (tests/unit/test_hostile_configs.py)."""
    config: dict[str, Any] = {"options": {"l2_population": True, "arp_responder": True},
                              "networks": {f"n{i}": {"type": "gre" if i % 2 == 0 else "vxlan", "segmentation_id": i + 1}
                                           for i in range(networks)}, "hosts": {}}
    for host in range(hosts):
        host_ports = []
        for port in range(ports):
            serial = host * ports + port
            high, middle, low = serial >> 16 & 0xFF, serial >> 8 & 0xFF, serial & 0xFF
            host_ports.append({"network": f"n{serial % networks}", "mac": f"fa:16:3e:{high:02x}:{middle:02x}:{low:02x}",
                               "ip": f"10.{high}.{middle}.{low}"})
        address = host + 1
        config["hosts"][f"h{host}"] = {"datapath_id": 0x1000 + host,
                                       "local_ip": f"10.200.{address >> 8 & 0xFF}.{address & 0xFF}",
                                       "ports": host_ports}
    return config


def write(flows: int, path: Path, hosts: int = 16) -> Config:
    """Write the config to `path` and return it, validated as the agent will read it."""
    text = yaml.safe_dump(generate(flows, hosts), default_flow_style=None, sort_keys=False, width=200)
    path.write_text(text)
    return parse_config(text)


def flow_count(config: Config, host: str = HOST) -> int:
    return len(build(build_bridge(config, host)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flows", type=int)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    config = write(args.flows, args.output, args.hosts)
    print(f"{args.output}: host {HOST} has {flow_count(config):,} br-tun flows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
