"""Taking over a node Neutron's agent programmed: its flows replaced in place, VMs never losing a ping.

Neutron's own agent code programs the switch (tests/compat/neutron.py), with
a cookie of its own and the port numbers Open vSwitch gives its ports; then
`brtun run --takeover` starts on that switch.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.config import load_config
from flows.flow import render_flows
from flows.model import build_bridge
from flows.pipeline import build
from flows.textparse import parse_flow
from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.compat.cloud import NeutronCloud
from tests.compat.switch import NeutronSwitch
from tests.conftest import CONFIGS, PROJECT
from tests.integration.helpers import FlowMonitor, Pinger, brtun, dump, is_learned, running_testbed, wait_until

pytestmark = pytest.mark.compat
NEUTRON = 0x8A1B2C3D4E5F6071  # the cookie Neutron's agent picked at its start
EXAMPLE = CONFIGS / "example.yaml"


def neutron_node(ovs: PrivateOvs, config_path: Path, host: str) -> tuple[NeutronCloud, NeutronSwitch]:
    """br-tun and br-int as Neutron's agent leaves them on `host`: its bridges, its ports with the
    ofports Open vSwitch chose, and its flows, sent by its own code with its own cookie."""
    config = load_config(str(config_path))
    dpid = f"{config.host(host).datapath_id:016x}"
    ovs.add_bridge("br-int", "fail_mode=secure", "protocols=OpenFlow10,OpenFlow13")
    ovs.add_bridge("br-tun", "fail_mode=secure", "protocols=OpenFlow10,OpenFlow13",
                   f"other_config:datapath-id={dpid}")
    for bridge in ("br-int", "br-tun"):  # Neutron's native OpenFlow app (of_listen_port 6633), before any flow
        ovs.vsctl("set-controller", bridge, "tcp:127.0.0.1:6633")
    ovs.vsctl("add-port", "br-int", "patch-tun", "--", "set", "Interface", "patch-tun", "type=patch",
              "options:peer=patch-int")
    ovs.vsctl("add-port", "br-tun", "patch-int", "--", "set", "Interface", "patch-int", "type=patch",
              "options:peer=patch-tun")

    def assign(on: str, name: str, columns: dict[str, object]) -> int:
        if on != host:  # the other hosts' switches are not this test's
            return 10 + len(name)
        options = columns["options"]
        assert isinstance(options, dict)
        ovs.vsctl("add-port", "br-tun", name, "--", "set", "Interface", name, f"type={columns['type']}",
                  *(f"options:{key}={value}" for key, value in options.items()))
        return int(ovs.vsctl("get", "Interface", name, "ofport"))

    cloud = NeutronCloud(config, cookie=NEUTRON, assign=assign)
    cloud.start()
    switch = NeutronSwitch(ovs, "br-tun", create=False)
    switch.send(cloud.messages(host))
    return cloud, switch


def ofports(ovs: PrivateOvs) -> dict[str, int]:
    text = ovs.vsctl("--format=csv", "--no-headings", "--columns=name,ofport", "list", "Interface")
    return {name.strip('"'): int(number) for name, number in (line.split(",") for line in text.splitlines())}


@pytest.fixture
def agent(private_ovs: PrivateOvs) -> Iterator[AgentProcess]:
    process = AgentProcess(private_ovs, EXAMPLE, "compute1", extra_args=("--takeover",))
    try:
        yield process
    finally:
        process.stop()


def test_the_agent_takes_over_neutrons_br_tun_in_one_bundle_keeping_ports_and_learned_flows(
        agent: AgentProcess) -> None:
    ovs = agent.ovs
    _cloud, switch = neutron_node(ovs, EXAMPLE, "compute1")
    neutrons = dump(ovs, "br-tun")
    assert neutrons and all(f"cookie={NEUTRON:#x}" in line for line in neutrons)
    learned = parse_flow(f" cookie={NEUTRON:#x}, table=20, hard_timeout=300, priority=1,vlan_tci=0x0001/0x0fff,"
                         f"dl_dst=fa:16:3e:00:00:04 actions=load:0->NXM_OF_VLAN_TCI[],load:0x3e9->NXM_NX_TUN_ID[],"
                         f"output:{ofports(ovs)['gre-c0a8640d']}")
    switch.add([learned])  # as Neutron's learn action wrote it
    ports_before = ofports(ovs)
    with FlowMonitor(ovs, "br-tun") as watch:
        agent.start()
        log = agent.wait_in_sync()
    config = load_config(str(EXAMPLE))
    wanted = sorted(render_flows(build(build_bridge(config, "compute1", observed_ofports=ports_before))).splitlines())
    now = dump(ovs, "br-tun")
    assert [line for line in now if not is_learned(line)] == wanted
    assert [line for line in now if is_learned(line)] == [learned.render()]  # theirs, kept
    assert ofports(ovs) == ports_before  # Neutron's ports adopted as they are: same numbers
    tunnels = [line for line in log.splitlines() if re.search(r"database: (fix|add) (gre|vxlan)-", line)]
    assert len(tunnels) == 2 and all(line.endswith(": adopted") for line in tunnels), tunnels  # options as they were
    taken = re.search(r"br-tun: taking over (\d+) flows: (\d+) replaced in place, (\d+) deleted", log)
    assert taken is not None and int(taken.group(2)) == len(neutrons) and taken.group(3) == "0", log
    assert re.search(r"br-tun: .*sent \d+ adds, 0 modifies, 0 deletes in one bundle", log), log
    deleted = [event for event in watch.events if "DELETED" in event]
    assert deleted == [], deleted  # replaced in place: no flow of Neutron's went away before ours took its place
    agent.stop()
    agent.extra_args = ()
    agent.start()
    assert "br-tun: read" in agent.wait_in_sync() and "in sync, nothing sent" in agent.log().split("start 2")[-1]


def test_brtun_diff_from_a_neutron_dump_says_what_a_takeover_would_do(private_ovs: PrivateOvs,
                                                                       tmp_path: Path) -> None:
    neutron_node(private_ovs, EXAMPLE, "compute1")
    (tmp_path / "dump").write_text(private_ovs.ofctl("dump-flows", "br-tun"))
    (tmp_path / "show").write_text(private_ovs.ofctl("show", "br-tun"))
    common = ("diff", "--from", str(tmp_path / "dump"), "--ports", str(tmp_path / "show"), "--config", str(EXAMPLE),
              "--as-host", "compute1")
    plain = brtun(*common)
    assert plain.returncode == 1 and "foreign flows in the place of desired ones: 25" in plain.stdout
    taking = brtun(*common, "--takeover")
    assert taking.returncode == 1, taking.stderr
    assert f"taken over in place (cookie {NEUTRON:#x} -> 0x5e1ec7ab1e; same table, priority, match): 25" \
        in taking.stdout
    for line in ("missing (the config wants them, the switch lacks them): 0", "taken over and deleted (not in the "
                 "config): 0", "foreign flows in the place of desired ones: 0"):
        assert line in taking.stdout, taking.stdout
    wrong = brtun(*common, "--takeover", "0xnot")
    assert wrong.returncode == 2 and "'0xnot' is not a cookie" in wrong.stderr


def test_taking_over_a_neutron_programmed_compute_host_loses_no_ping(tmp_path: Path) -> None:
    """The seed testbed; compute1's br-tun reprogrammed by Neutron's code with Neutron's cookie;
    then compute1's agent restarts with --takeover while vm1 pings vm2 every 10 ms."""
    seed = PROJECT / "examples" / "seed.yaml"
    with running_testbed(seed, "seed") as built:
        host = built.hosts["compute1"]
        assert host.agent is not None
        assert host.agent.stop() == 0
        ports = ofports(host.ovs)
        config = load_config(str(seed))
        cloud = NeutronCloud(config, cookie=NEUTRON,
                             assign=lambda on, name, columns: ports[name] if on == "compute1" else 10)
        cloud.start()
        scratch = PrivateOvs(f"{host.ovs.name}-n", host.ovs.rundir / "neutron")
        scratch.start(vswitchd_args=("--enable-dummy",))
        try:
            flows = NeutronSwitch(scratch).replay(cloud.messages("compute1"))
        finally:
            scratch.stop()
        (tmp_path / "neutron.flows").write_text(render_flows(flows))
        host.ovs.ofctl("--bundle", "replace-flows", "br-tun", str(tmp_path / "neutron.flows"))
        assert all(f"cookie={NEUTRON:#x}" in line for line in dump(host.ovs, "br-tun"))
        probe = subprocess.run(["ip", "netns", "exec", "vm1", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.4"],
                               capture_output=True, text=True, check=False)
        assert probe.returncode == 0, "vm1 does not reach vm2 through Neutron's flows:\n" + probe.stdout
        pinger = Pinger("vm1", "10.0.0.4", seconds=6)
        host.agent.extra_args = (*host.agent.extra_args, "--takeover")
        host.agent.start()
        log = host.agent.wait_in_sync()
        sent, received = pinger.wait()
        print(f"takeover of compute1 under ping -i 0.01: {sent} sent, {received} received")
        assert "br-tun: taking over" in log
        assert sent >= 400 and received == sent
        wanted = sorted(render_flows(build(build_bridge(config, "compute1", observed_ofports=ports))).splitlines())
        wait_until(lambda: [line for line in dump(host.ovs, "br-tun") if not is_learned(line)] == wanted,
                   what="compute1's br-tun to hold brtun's flows")
