"""5,000 tunnel endpoints on one host, in an underlay far larger than a /20: every port gets a number
without hand work, the switch holds exactly `brtun render`, and hosts coming and going renumber
no port."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows import naming
from flows.config import load_config
from flows.flow import render_flows
from flows.model import build_bridge
from flows.pipeline import build
from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.integration.helpers import brtun, dump

pytestmark = pytest.mark.integration
ENDPOINTS = 5000
NETWORKS = 50


def cloud(endpoints: int, first: int = 1) -> dict[str, Any]:
    """h0 carries every network; each other host one of them, at addresses 7 apart across a /16, so
    that hundreds of them share their low 12 bits (the preferred ofport)."""
    base = ipaddress.IPv4Address("10.0.0.1")
    hosts: dict[str, Any] = {"h0": {"datapath_id": 1, "local_ip": str(base), "ports": [
        {"network": f"n{j}", "mac": f"fa:16:3e:ff:00:{j:02x}", "ip": f"172.16.{j}.1"} for j in range(NETWORKS)]}}
    for i in range(first, first + endpoints):
        hosts[f"h{i}"] = {"datapath_id": 1 + i, "local_ip": str(base + 7 * i), "ports": [
            {"network": f"n{i % NETWORKS}", "mac": f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
             "ip": f"172.16.{i % NETWORKS}.{2 + i // NETWORKS}"}]}
    return {"options": {"l2_population": True, "arp_responder": True},
            "networks": {f"n{j}": {"type": "gre", "segmentation_id": 100 + j} for j in range(NETWORKS)},
            "hosts": hosts}


def ofports(ovs: PrivateOvs) -> dict[str, int]:
    text = ovs.vsctl("--format=csv", "--no-headings", "--columns=name,ofport", "list", "Interface")
    return {name.strip('"'): int(number) for name, number in (line.split(",") for line in text.splitlines())}


@pytest.fixture
def agent(private_ovs: PrivateOvs, tmp_path: Path) -> Iterator[AgentProcess]:
    path = tmp_path / "cloud.yaml"
    path.write_text(yaml.safe_dump(cloud(ENDPOINTS), sort_keys=False))
    process = AgentProcess(private_ovs, path, "h0")
    try:
        yield process
    finally:
        process.stop()


def test_five_thousand_endpoints_get_distinct_numbers_and_keep_them_as_hosts_come_and_go(
        agent: AgentProcess, tmp_path: Path) -> None:
    started = time.monotonic()
    checked = brtun("check", str(agent.config))
    check_seconds = time.monotonic() - started
    assert checked.returncode == 0, checked.stderr
    ovs = agent.ovs
    started = time.monotonic()
    agent.start()
    agent.wait_in_sync(timeout=600)
    in_sync = time.monotonic() - started
    ports = ofports(ovs)
    tunnels = {name: number for name, number in ports.items() if naming.tunnel_type_of(name)}
    spare = sum(1 for number in tunnels.values() if number >= naming.FIRST_SPARE_OFPORT)
    assert len(tunnels) == ENDPOINTS and len(set(tunnels.values())) == ENDPOINTS
    config = load_config(str(agent.config))
    assert sorted(dump(ovs, "br-tun")) == sorted(render_flows(build(build_bridge(config, "h0"))).splitlines())
    print(f"{ENDPOINTS} endpoints: brtun check {check_seconds:.1f} s; agent from start to in sync {in_sync:.1f} s; "
          f"{len(tunnels)} tunnel ports, {spare} on spare numbers, {len(dump(ovs, 'br-tun'))} flows")

    # 100 hosts come (many colliding with ports that exist), 100 others go: nobody is renumbered
    data = cloud(ENDPOINTS)
    for i in range(1, 101):
        del data["hosts"][f"h{i}"]
    data["hosts"].update(cloud(100, first=ENDPOINTS + 1)["hosts"])
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    applied = brtun("apply", str(changed), "--socket", str(agent.control_socket), timeout=600)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = {name: number for name, number in ofports(ovs).items() if naming.tunnel_type_of(name)}
    kept = {name: number for name, number in tunnels.items() if name in after}
    assert len(kept) == ENDPOINTS - 100 and all(after[name] == number for name, number in kept.items())
    new = set(after) - set(tunnels)
    assert len(new) == 100 and len(set(after.values())) == len(after)
    new_config = load_config(str(changed))
    assert sorted(dump(ovs, "br-tun")) == sorted(render_flows(build(build_bridge(
        new_config, "h0", observed_ofports={**after, "patch-int": ports["patch-int"]}))).splitlines())
