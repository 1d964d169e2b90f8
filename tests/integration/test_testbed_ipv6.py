"""The seed's network over an IPv6 underlay: GRE over ip6gre between IPv6 endpoints, everything
else as in the IPv4 seed (examples/seed-ipv6.yaml)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from mininet_topos import checks, probes
from mininet_topos.topology import Built
from tests.conftest import PROJECT
from tests.integration.helpers import passes, running_testbed

pytestmark = pytest.mark.integration
SEED6 = PROJECT / "examples" / "seed-ipv6.yaml"


@pytest.fixture(scope="module")
def seed6() -> Iterator[Built]:
    with running_testbed(SEED6, "seed") as built:
        yield built


@pytest.fixture(scope="module")
def bed(seed6: Built) -> checks.Bed:
    return checks.Bed(seed6.state, seed6.spec, seed6.config)


def test_every_check_of_the_seed_passes_over_ipv6(seed6: Built, bed: checks.Bed) -> None:
    results = checks.seed_checks(bed, seed6.timings["addresses"] - seed6.timings["plumbed"])
    for result in results:
        print(f"{'PASS' if result.ok else 'FAIL'}  {result.name}  {result.figure}")
    assert [result.name for result in results if not result.ok] == []


def test_the_tunnel_ports_are_ip6gre_named_by_neutrons_hash(seed6: Built) -> None:
    compute1 = seed6.hosts["compute1"].ovs
    name = "gre-" + subprocess.run([sys.executable, "-c", "from flows.naming import tunnel_port_name as t; "
                                    "print(t('gre', 'fd00:100::c')[4:])"], capture_output=True, text=True,
                                   cwd=PROJECT, check=True).stdout.strip()
    assert compute1.vsctl("get", "Interface", name, "type").strip() == "ip6gre"
    assert compute1.vsctl("get", "Interface", name, "options:remote_ip").strip().strip('"') == "fd00:100::c"
    assert compute1.vsctl("get", "Interface", name, "options:packet_type").strip().strip('"') == "legacy_l2"


def test_the_underlay_carries_ipv6_gre_and_the_vm_mtu_is_1438(bed: checks.Bed) -> None:
    first, second = bed.pair_across_hosts()
    with probes.Capture("underlay", bed.underlay_port(first.host), "ip6 proto 47") as seen:
        probes.ping(first.name, str(second.ip), count=2)
    assert any("ethertype IPv6" in line and "fd00:100::b > fd00:100::c" in line and "GREv0, key=0x1" in line
               for line in seen.lines), seen.lines
    result = checks.largest_packet(bed)
    assert "VM MTU 1438 (gre)" in result.name
    passes(result)


def test_brtun_trace_walks_the_packet_across_the_ipv6_underlay(seed6: Built) -> None:
    result = subprocess.run([sys.executable, "-m", "controller.cli", "trace", "vm1", "vm2"], capture_output=True,
                            text=True, cwd=PROJECT, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GRE key 0x1 to fd00:100::c (compute2)" in result.stdout
    assert "arrives from fd00:100::b with key 0x1" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("verdict: delivered to vm2")
