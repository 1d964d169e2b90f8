"""An N-host mesh: overlapping subnets, crossed local VLANs, flooding only where a network lives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows.model import local_vlans
from mininet_topos import checks
from mininet_topos.mesh import mesh_config
from mininet_topos.topology import Built
from tests.integration.helpers import passes, running_testbed

pytestmark = pytest.mark.integration
HOSTS = 4


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    path = Path(tmp_path_factory.mktemp("mesh")) / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh_config(HOSTS, types=("gre", "vxlan")), sort_keys=False))  # red: VXLAN
    with running_testbed(path, "mesh", hub="native") as built:  # the agents on os-ken's native hub
        yield built


@pytest.fixture(scope="module")
def bed(mesh: Built) -> checks.Bed:
    return checks.Bed(mesh.state, mesh.spec, mesh.config)


def test_the_mesh_crosses_local_vlans_and_leaves_each_network_off_one_host(mesh: Built) -> None:
    vlans = {h.name: local_vlans(h, mesh.config) for h in mesh.config.hosts}
    assert vlans["host1"] == {"blue": 2, "red": 1} and vlans["host2"] == {"blue": 1, "red": 2}
    assert "red" not in vlans["host3"] and "blue" not in vlans["host4"]
    assert len(mesh.vms) == 2 * HOSTS - 2


def test_ping_and_tcp_across_the_mesh(bed: checks.Bed) -> None:
    passes(checks.ping_across_hosts(bed))
    passes(checks.tcp_across_hosts(bed))


def test_the_same_address_in_two_networks_reaches_only_its_own_network(bed: checks.Bed) -> None:
    passes(checks.overlapping_subnets(bed))


def test_one_broadcast_yields_one_copy_per_remote_vm_of_its_network_and_none_elsewhere(bed: checks.Bed) -> None:
    passes(checks.broadcast_copies(bed))


def test_a_frame_with_another_hosts_vlan_goes_nowhere(bed: checks.Bed) -> None:
    result = checks.inject_unknown_vlan(bed)
    assert "VLAN 1, 99" in result.figure  # host3 uses only VLAN 2: VLAN 1 is other hosts' VLAN
    passes(result)


def test_gre_from_a_non_endpoint_reaches_nothing_and_learning_is_right(bed: checks.Bed) -> None:
    passes(checks.intruder_gre(bed))
    passes(checks.learned_flows(bed))
    passes(checks.gre_on_underlay(bed))


def test_each_networks_vms_get_the_mtu_its_encapsulation_leaves_and_no_byte_more(bed: checks.Bed) -> None:
    gre, vxlan = checks.largest_packet(bed, "blue"), checks.largest_packet(bed, "red")
    assert "VM MTU 1458 (gre)" in gre.name and "VM MTU 1450 (vxlan)" in vxlan.name
    passes(gre)
    passes(vxlan)


def test_trace_across_networks_never_reaches_the_other_network_and_drops_where_it_is_absent(mesh: Built) -> None:
    import subprocess
    import sys

    from tests.conftest import PROJECT

    # vm1 is blue on host1; vm6 is red on host4, which does not carry blue.
    result = subprocess.run([sys.executable, "-m", "controller.cli", "trace", "vm1", "vm6"], capture_output=True,
                            text=True, cwd=PROJECT, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("verdict: NOT delivered to vm6; also flooded to vm3, vm5")  # blue's own VMs
    assert "dropped on host4 in br-tun table 3 (GRE_TUN_TO_LV): priority 0" in verdict
    assert "vm6 eth0" not in result.stdout
