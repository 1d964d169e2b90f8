"""The renderer against the real switch: what `brtun render` prints is what Open vSwitch prints.

Each golden render is installed with `ovs-ofctl --bundle add-flows` and read
back with `dump-flows`; the switch must print every line exactly as rendered.
"""

from __future__ import annotations

import subprocess

import pytest

from flows.flow import Flow
from flows.textparse import parse_dump
from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIG_NAMES, EXPECTED

pytestmark = pytest.mark.integration


def hosts_of(golden: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in golden.splitlines(keepends=True):
        if line.startswith("# host "):
            current = line.removeprefix("# host ").strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return {host: "".join(lines) for host, lines in sections.items()}


def sort_lines(text: str) -> list[str]:
    return sorted(text.splitlines())


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_open_vswitch_prints_every_rendered_flow_exactly_as_rendered(name: str, private_ovs: PrivateOvs) -> None:
    private_ovs.add_bridge("br-tun", "fail_mode=secure", "protocols=OpenFlow13")
    for host, text in hosts_of((EXPECTED / f"{name}.flows").read_text()).items():
        private_ovs.ofctl("del-flows", "br-tun")
        flows_file = private_ovs.rundir / f"{host}.flows"
        flows_file.write_text(text)
        private_ovs.ofctl("--bundle", "add-flows", "br-tun", str(flows_file))
        dumped = private_ovs.ofctl("--no-stats", "dump-flows", "br-tun")
        assert sort_lines(dumped) == sort_lines(text), f"{name} {host}"


def test_a_learned_flow_written_by_the_switch_parses_into_the_expected_value(private_ovs: PrivateOvs) -> None:
    """Let the real learn action write a table-20 flow, then read it with flows.textparse."""
    private_ovs.add_bridge("br-tun", "fail_mode=secure", "protocols=OpenFlow13")
    for port, number in (("patch-int", 1), ("gre-c0a8640d", 3)):
        private_ovs.vsctl("add-port", "br-tun", port, "--", "set", "Interface", port, "type=internal",
                          f"ofport_request={number}")
    compute1 = hosts_of((EXPECTED / "example.flows").read_text())["compute1"]
    flows_file = private_ovs.rundir / "compute1.flows"
    flows_file.write_text(compute1)
    private_ovs.ofctl("--bundle", "add-flows", "br-tun", str(flows_file))
    trace = private_ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
                            "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff",
                            "-generate")
    assert "learn" in trace.stdout
    dumped = private_ovs.ofctl("--no-stats", "dump-flows", "br-tun", "table=20")
    (learned,) = [flow for flow in parse_dump(dumped) if flow.priority == 1]
    assert learned.render() == (
        " cookie=0x5e1ec7ab1e, table=20, hard_timeout=300, priority=1,vlan_tci=0x0002/0x0fff,"
        "dl_dst=fa:16:3e:aa:bb:cc actions=load:0->NXM_OF_VLAN_TCI[],load:0x1388->NXM_NX_TUN_ID[],output:3")
    assert learned.hard_timeout == 300 and isinstance(learned, Flow)


def test_the_private_switch_is_really_private(private_ovs: PrivateOvs) -> None:
    private_ovs.add_bridge("br-private-probe")
    system = subprocess.run(["ip", "link", "show", "br-private-probe"], capture_output=True, check=False)
    assert system.returncode != 0, "the bridge leaked into the root namespace"
    assert "br-private-probe" in private_ovs.vsctl("list-br")
