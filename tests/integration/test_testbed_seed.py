"""The seed's network under brtun agents: real namespaces, real Open vSwitch, real packets.

One testbed for the module (building it takes a few seconds); every check
is a test of its own, and the testbed is taken down even when one fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mininet_topos import checks
from mininet_topos.cli import SEED
from mininet_topos.topology import Built
from ovshost import state as states
from tests.integration.helpers import passes, running_testbed

pytestmark = pytest.mark.integration

# The seed's `iptables -t nat -S` in the router namespace, line for line.
SEED_NAT = """\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N neutron-l3-agent-OUTPUT
-N neutron-l3-agent-POSTROUTING
-N neutron-l3-agent-PREROUTING
-N neutron-l3-agent-float-snat
-N neutron-l3-agent-snat
-N neutron-postrouting-bottom
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A OUTPUT -j neutron-l3-agent-OUTPUT
-A POSTROUTING -j neutron-l3-agent-POSTROUTING
-A POSTROUTING -j neutron-postrouting-bottom
-A neutron-l3-agent-POSTROUTING ! -i qg-5d13ee78-0a ! -o qg-5d13ee78-0a -m conntrack ! --ctstate DNAT -j ACCEPT
-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697
-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat
-A neutron-l3-agent-snat -o qg-5d13ee78-0a -j SNAT --to-source 172.24.4.2
-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 172.24.4.2
-A neutron-postrouting-bottom -m comment --comment "Perform source NAT on outgoing traffic." -j neutron-l3-agent-snat
"""


@pytest.fixture(scope="module")
def seed() -> Iterator[Built]:
    with running_testbed(SEED, "seed") as built:
        yield built


@pytest.fixture(scope="module")
def bed(seed: Built) -> checks.Bed:
    return checks.Bed(seed.state, seed.spec, seed.config)


def test_every_vm_gets_its_address_from_dnsmasq_across_the_tunnel(seed: Built, bed: checks.Bed) -> None:
    passes(checks.dhcp(bed, seed.timings["addresses"] - seed.timings["plumbed"]))


def test_vm_to_vm_ping_across_hosts(bed: checks.Bed) -> None:
    passes(checks.ping_across_hosts(bed))


def test_tcp_across_the_tunnel_with_iperf3(bed: checks.Bed) -> None:
    passes(checks.tcp_across_hosts(bed))


def test_a_vm_reaches_the_external_host_through_snat(bed: checks.Bed) -> None:
    passes(checks.snat(bed))


def test_the_security_group_on_qbr_drops_a_port_not_allowed_and_passes_icmp(bed: checks.Bed) -> None:
    passes(checks.security_group(bed))


def test_br_tun_learns_the_remote_vm_with_the_right_vlan_key_and_port(bed: checks.Bed) -> None:
    passes(checks.learned_flows(bed))


def test_the_underlay_carries_gre_with_the_networks_key(bed: checks.Bed) -> None:
    passes(checks.gre_on_underlay(bed))


def test_the_vms_mtu_from_dhcp_is_the_largest_packet_gre_carries_and_one_byte_more_is_refused(
        bed: checks.Bed) -> None:
    passes(checks.largest_packet(bed))


def test_a_frame_from_patch_int_with_an_unknown_vlan_goes_nowhere(bed: checks.Bed) -> None:
    passes(checks.inject_unknown_vlan(bed))


def test_gre_from_a_host_that_is_no_endpoint_reaches_nothing(bed: checks.Bed) -> None:
    passes(checks.intruder_gre(bed))


def test_the_listings_read_like_the_seeds(seed: Built) -> None:
    netns = subprocess.run(["ip", "netns"], capture_output=True, text=True, check=True).stdout
    assert "qrouter-a7bf0605-3474-4f5c-bcbd-98a11bd175d4" in netns
    assert "qdhcp-77e45b4b-3238-467e-b38f-33dd86a5f83b" in netns
    router = seed.spec.router
    assert router is not None
    nat = subprocess.run(["ip", "netns", "exec", router.namespace, "iptables", "-t", "nat", "-S"],
                         capture_output=True, text=True, check=True).stdout
    assert nat == SEED_NAT
    routes = subprocess.run(["ip", "netns", "exec", router.namespace, "ip", "route"], capture_output=True,
                            text=True, check=True).stdout
    assert "default via 172.24.4.1 dev qg-5d13ee78-0a" in routes
    dhcp = subprocess.run(["ip", "netns", "exec", "qdhcp-77e45b4b-3238-467e-b38f-33dd86a5f83b", "ip", "addr"],
                          capture_output=True, text=True, check=True).stdout
    assert "inet 10.0.0.2/24" in dhcp and "link/ether fa:16:3e:85:fa:a0" in dhcp
    show = seed.hosts["network"].vsctl("show")
    for port in ("tapf2d4361c-39", "qr-c36567ef-4d", "qg-5d13ee78-0a", "patch-tun", "gre-c0a8640b"):
        assert f"Port {port}" in show
    for host in ("compute1", "compute2"):
        assert seed.hosts[host].vsctl("get", "Port", f"qvo{seed.spec.vms_on(host)[0].suffix}", "tag").strip() == "1"


def test_the_testbed_state_lets_other_commands_find_the_hosts(seed: Built) -> None:
    state, host = states.find_host("compute1")
    assert state.name == "seed" and host.netns == "compute1" and host.local_ip == "192.168.100.11"


def brtun(*argv: str) -> subprocess.CompletedProcess[str]:
    import sys

    from tests.conftest import PROJECT

    return subprocess.run([sys.executable, "-m", "controller.cli", *argv], capture_output=True, text=True,
                          cwd=PROJECT, timeout=60, check=False)


def test_trace_vm_to_vm_ends_at_the_right_vm_with_the_seeds_hops_and_learns_nothing(
        seed: Built, tmp_path: Path) -> None:
    def table_20() -> dict[str, list[str]]:
        return {host: seed.hosts[host].ovs.ofctl("--no-stats", "dump-flows", "br-tun", "table=20").splitlines()
                for host in ("compute1", "compute2")}

    probes_ping = subprocess.run(["ip", "netns", "exec", "vm1", "ping", "-c", "1", "10.0.0.4"], capture_output=True,
                                 check=False)
    assert probes_ping.returncode == 0
    before = table_20()
    picture = tmp_path / "walk.svg"
    result = brtun("trace", "vm1", "vm2", "--svg", str(picture))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    hops = [line.split()[:3] for line in lines if line[:3].strip().isalpha() and len(line.split()) > 2
            and line[1].isupper() and line[2] == " "]
    assert [hop[0] for hop in hops] == list("ABCDEFGHIJK")
    assert [hop[2].rstrip(":") for hop in hops][:8] == [
        "vm1", "tap7c7ae61e-05", "qbr7c7ae61e-05", "br-int", "br-tun", "gre-c0a8640c", "gre-c0a8640b", "br-tun"]
    assert "20 UCAST_TO_TUN" in result.stdout and " 3 GRE_TUN_TO_LV" in result.stdout
    assert lines[-2] == "verdict: delivered to vm2"
    assert table_20() == before  # no -generate: nothing learned on the live bridges
    from xml.etree import ElementTree

    svg = ElementTree.parse(picture).getroot()
    texts = {node.text for node in svg.iter() if node.text}
    assert set("ABCDEFGHIJK") <= texts
    assert {"vm1 eth0", "br-int", "br-tun", "gre-c0a8640c", "gre-c0a8640b", "vm2 eth0"} <= texts


def test_flows_and_diff_of_a_testbed_host_by_name(seed: Built) -> None:
    listing = brtun("flows", "compute1")
    assert listing.returncode == 0 and "br-tun of compute1 (testbed seed)" in listing.stdout
    assert "private: key 0x1 -> local VLAN 1" in listing.stdout
    checked = brtun("diff", "compute1")
    assert checked.returncode == 0 and checked.stdout.rstrip().endswith("IN SYNC"), checked.stdout


def test_diff_and_state_agree_after_run_time_edits(seed: Built) -> None:
    """Issue 18, attack 7: after two `brtun edit`s, `brtun diff HOST` compares with what the agent runs
    (file plus edits) and says so; `--config FILE` still compares with the file."""
    for edit in (("add-network", "barsnet", "vxlan", "4321"),
                 ("add-port", "barsnet", "fa:16:3e:ba:05:01", "--ip", "10.77.0.5", "--on-host", "compute1")):
        done = brtun("edit", *edit)
        assert done.returncode == 0, done.stdout + done.stderr
    try:
        state = brtun("state", "--host", "compute1")
        assert state.returncode == 0 and "+ 2 run-time edits" in state.stdout, state.stdout
        assert "br-tun: connected;" in state.stdout and "): in sync" in state.stdout, state.stdout
        checked = brtun("diff", "compute1")
        print(checked.stdout.splitlines()[0])
        assert checked.returncode == 0 and checked.stdout.rstrip().endswith("IN SYNC"), checked.stdout
        assert f"vs what compute1's agent runs: {seed.state.config} + 2 run-time edits (add-network name=barsnet " \
               "segmentation_id=4321 type=vxlan; add-port " in checked.stdout.splitlines()[0]
        file_only = brtun("diff", "compute1", "--config", seed.state.config)
        assert file_only.returncode == 1 and "vs compute1's desired br-tun" in file_only.stdout
        assert "extra (brtun's cookie, not in the config): 4" in file_only.stdout, file_only.stdout
    finally:
        for edit in (("remove-port", "fa:16:3e:ba:05:01", "--on-host", "compute1"), ("remove-network", "barsnet")):
            brtun("edit", *edit)
    checked = brtun("diff", "compute1")
    assert checked.returncode == 0 and checked.stdout.rstrip().endswith("IN SYNC"), checked.stdout
