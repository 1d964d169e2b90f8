"""Changes and restarts under traffic: two hosts, three networks, VMs pinging every 10 ms.

The switches are watched independently of the agents (`ovs-ofctl monitor`, tcpdump on the
underlay); every test puts the testbed back as it found it.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.config import load_config
from mininet_topos import probes
from mininet_topos.mesh import mesh_config
from mininet_topos.spec import Vm
from mininet_topos.topology import Built, phy_mac
from tests.integration.helpers import (
    FlowMonitor,
    Pinger,
    brtun,
    dump,
    is_learned,
    rendered,
    running_testbed,
    wait_until,
)

pytestmark = pytest.mark.integration
NETWORKS = ("blue", "red", "green")
KEYS = {"blue": 100, "red": 200, "green": 300}  # mesh_config: 100 * (j + 1)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    path = Path(tmp_path_factory.mktemp("live")) / "live.yaml"
    path.write_text(yaml.safe_dump(mesh_config(2, 3), sort_keys=False))
    with running_testbed(path, "mesh") as built:
        yield built


@pytest.fixture
def original(mesh: Built, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The testbed's config; afterwards the testbed is given it back (and must take it)."""
    data: dict[str, Any] = yaml.safe_load(Path(mesh.state.config).read_text())
    saved = tmp_path / "original.yaml"
    saved.write_text(yaml.safe_dump(data, sort_keys=False))
    yield data
    result = brtun("apply", str(saved), "--testbed", mesh.state.name)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in mesh.hosts.values():
        assert host.agent is not None and host.agent.running, f"the agent of {host.name} is not running"


def vm(mesh: Built, host: str, network: str) -> Vm:
    return next(v for v in mesh.spec.vms if v.host == host and v.network == network)


def pinger(mesh: Built, network: str, seconds: float) -> Pinger:
    first, second = vm(mesh, "host1", network), vm(mesh, "host2", network)
    replies, _ = probes.ping(first.name, str(second.ip), count=2, interval=0.05)  # ARP settled first
    assert replies == 2, f"{network} does not ping before the test"
    return Pinger(first.name, str(second.ip), seconds)


def learned(mesh: Built, host: str) -> list[str]:
    return [line for line in dump(mesh.hosts[host].ovs, "br-tun") if is_learned(line)]


def ours(mesh: Built, host: str) -> list[str]:
    return [line for line in dump(mesh.hosts[host].ovs, "br-tun") if not is_learned(line)]


def apply(mesh: Built, data: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = brtun("apply", str(path), "--testbed", mesh.state.name)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in ("host1", "host2"):
        assert ours(mesh, host) == rendered("render", str(path), "--host", host), f"{host} after {path.name}"
    return result.stdout


def without(data: dict[str, Any], network: str) -> dict[str, Any]:
    changed = yaml.safe_load(yaml.safe_dump(data))
    del changed["networks"][network]
    for host in changed["hosts"].values():
        host["ports"] = [p for p in host["ports"] if p["network"] != network]
        host["local_vlans"].pop(network, None)
    return changed


def test_restarting_the_agents_under_10ms_pings_loses_nothing_and_changes_no_flow(mesh: Built) -> None:
    ping = pinger(mesh, "blue", seconds=8)
    learned_before = {h: learned(mesh, h) for h in ("host1", "host2")}
    assert all(learned_before.values()), "the pings should have taught both br-tuns"
    with ExitStack() as stack:
        watches = [stack.enter_context(FlowMonitor(mesh.hosts[h].ovs, b))
                   for h in ("host1", "host2") for b in ("br-tun", "br-int")]
        for host in ("host1", "host2"):
            agent = mesh.hosts[host].agent
            assert agent is not None
            assert agent.stop() == 0
            agent.start()
            log = agent.wait_in_sync()
            assert "br-tun: read" in log and "in sync, nothing sent" in log
        sent, received = ping.wait()
    print(f"agent restarts under ping -i 0.01: {sent} sent, {received} received")
    assert sent >= 700 and received == sent
    assert [w.flow_mods for w in watches] == [[], [], [], []]
    for host, flows in learned_before.items():
        assert {f.split("priority")[1] for f in flows} <= {f.split("priority")[1] for f in learned(mesh, host)}


def test_a_killed_agent_leaves_traffic_flowing_and_its_restart_changes_nothing(mesh: Built) -> None:
    host = mesh.hosts["host1"]
    agent = host.agent
    assert agent is not None
    ping = pinger(mesh, "red", seconds=6)
    before = dump(host.ovs, "br-tun")
    with FlowMonitor(host.ovs, "br-tun") as watch_tun, FlowMonitor(host.ovs, "br-int") as watch_int:
        agent.stop(signal.SIGKILL)
        time.sleep(3)  # agentless: the switch keeps its flows (fail_mode=secure, no NORMAL fallback)
        assert host.ovs.vsctl("get-fail-mode", "br-tun").strip() == "secure"
        assert not [line for line in dump(host.ovs, "br-tun") if "NORMAL" in line]
        agent.start()
        log = agent.wait_in_sync()
        sent, received = ping.wait()
    print(f"SIGKILL and restart under ping -i 0.01: {sent} sent, {received} received")
    assert received == sent
    assert watch_tun.flow_mods == [] and watch_int.flow_mods == []
    assert "br-tun: read" in log and log.count("in sync, nothing sent") == 2
    assert [line for line in before if not is_learned(line)] == ours(mesh, "host1")


def test_restarting_ovs_vswitchd_brings_the_pipeline_and_ports_back(mesh: Built) -> None:
    host = mesh.hosts["host1"]
    agent = host.agent
    assert agent is not None
    config = load_config(mesh.state.config)
    spec = mesh.spec
    expected = ours(mesh, "host1")
    ports = host.ovs.vsctl("list-ports", "br-tun")
    ping = pinger(mesh, "green", seconds=12)
    time.sleep(1)
    restarted = time.monotonic()
    host.restart_switch(config.host("host1").local_ip, spec.underlay.prefixlen, spec.underlay_mtu,
                        {"192.168.100.2": phy_mac("192.168.100.2")})
    wait_until(lambda: ours(mesh, "host1") == expected, timeout=20, what="br-tun's pipeline to come back")
    repaired = time.monotonic() - restarted
    sent, received = ping.wait()
    outage = (sent - received) * 0.01
    print(f"ovs-vswitchd restart: pipeline back in {repaired:.2f} s; ping -i 0.01 lost {sent - received} of "
          f"{sent} (about {outage:.2f} s without traffic)")
    assert host.ovs.vsctl("list-ports", "br-tun") == ports
    assert received > 0 and sent - received < sent / 2
    replies, _ = probes.ping(vm(mesh, "host1", "green").name, str(vm(mesh, "host2", "green").ip), count=20,
                             interval=0.01)
    assert replies == 20, "pings did not resume"
    assert dump(host.ovs, "br-int") == sorted(rendered_br_int())
    assert "br-tun connected" in agent.log().rsplit("---- start", 1)[-1]


def rendered_br_int() -> list[str]:
    from flows import br_int
    from flows.config import DEFAULT_COOKIE
    from flows.flow import render_flows

    return render_flows(br_int.build(DEFAULT_COOKIE)).splitlines()


def test_networks_come_and_go_with_brtun_apply_while_a_third_pings(
        mesh: Built, original: dict[str, Any], tmp_path: Path) -> None:
    ping = pinger(mesh, "green", seconds=20)
    green = {h: (f"tun_id={KEYS['green']:#x}", f"{KEYS['green']:#x}->tun_id",
                 f"dl_vlan={original['hosts'][h]['local_vlans']['green']},")
             for h in ("host1", "host2")}
    with ExitStack() as stack:
        watches = {h: stack.enter_context(FlowMonitor(mesh.hosts[h].ovs, "br-tun")) for h in ("host1", "host2")}
        for network in ("blue", "red"):
            # remove it: no flow and no learned flow of it stays on any host
            first, second = vm(mesh, "host1", network), vm(mesh, "host2", network)
            assert probes.ping(first.name, str(second.ip), count=2, interval=0.05)[0] == 2
            assert any(f"{KEYS[network]:#x}->NXM_NX_TUN_ID" in line for line in learned(mesh, "host1"))
            apply(mesh, without(original, network), tmp_path / f"without-{network}.yaml")
            for host in ("host1", "host2"):
                vlan = original["hosts"][host]["local_vlans"][network]
                left = [line for line in dump(mesh.hosts[host].ovs, "br-tun")
                        if f"{KEYS[network]:#x}" in line or f"dl_vlan={vlan}" in line
                        or f"vlan_tci={vlan:#06x}" in line]
                assert left == [], f"{network} left flows on {host}: {left}"
            assert probes.ping(first.name, str(second.ip), count=2, interval=0.05)[0] == 0
            # add it back: it works again
            apply(mesh, original, tmp_path / f"with-{network}.yaml")
            assert probes.ping(first.name, str(second.ip), count=3, interval=0.05)[0] == 3
        sent, received = ping.wait()
    print(f"blue and red removed and added again while green pinged every 10 ms: {sent} sent, {received} received")
    assert sent >= 1500 and received == sent
    touched = [e for h, w in watches.items() for e in w.flow_mods if any(mark in e for mark in green[h])]
    assert touched == [], "green's flows were touched"


GRE_LINE = re.compile(r"key=(0x[0-9a-f]+).*?: ([0-9a-f:]{17}) > ([0-9a-f:]{17})")


def keys_seen(lines: list[str]) -> list[tuple[str, int]]:
    """(network of the inner source MAC, GRE key) for each GRE packet on the underlay."""
    seen = []
    for line in lines:
        match = GRE_LINE.search(line)
        if match and match.group(2).startswith("fa:16:3e:"):
            network = NETWORKS[int(match.group(2).split(":")[3], 16) - 1]  # mesh MACs: fa:16:3e:0J:...
            seen.append((network, int(match.group(1), 16)))
    return seen


def test_remapping_local_vlans_under_traffic_never_sends_a_packet_with_the_wrong_key(
        mesh: Built, original: dict[str, Any], tmp_path: Path) -> None:
    swapped = yaml.safe_load(yaml.safe_dump(original))
    vlans = swapped["hosts"]["host1"]["local_vlans"]
    vlans["blue"], vlans["red"] = vlans["red"], vlans["blue"]  # two networks trade VLANs
    moved = yaml.safe_load(yaml.safe_dump(swapped))
    moved["hosts"]["host1"]["local_vlans"]["green"] = 7  # and one moves to a free VLAN
    pings = {network: pinger(mesh, network, seconds=14) for network in NETWORKS}
    with probes.Capture("underlay", "ulp1", "ip proto 47", limit_seconds=40) as capture:
        time.sleep(1)
        out = apply(mesh, swapped, tmp_path / "swapped.yaml")
        assert "changes network: its new ports wait on the dead VLAN" in out
        time.sleep(2)
        apply(mesh, moved, tmp_path / "moved.yaml")
        time.sleep(2)
        apply(mesh, original, tmp_path / "back.yaml")
        results = {network: ping.wait() for network, ping in pings.items()}
    seen = keys_seen(capture.lines)
    wrong = [(network, key) for network, key in seen if key != KEYS[network]]
    for network, (sent, received) in results.items():
        print(f"{network}: {sent} sent, {received} received during three remaps")
    print(f"{len(seen)} GRE packets on host1's underlay, {len(wrong)} with the wrong key")
    assert len(seen) > 1000 and {n for n, _ in seen} == set(NETWORKS)
    assert wrong == []
    for network in NETWORKS:
        first, second = vm(mesh, "host1", network), vm(mesh, "host2", network)
        assert probes.ping(first.name, str(second.ip), count=3, interval=0.05)[0] == 3, f"{network} after remaps"


def switches(mesh: Built) -> dict[str, tuple[list[str], list[str]]]:
    return {h: (ours(mesh, h), dump(mesh.hosts[h].ovs, "br-int")) for h in ("host1", "host2")}


def test_a_change_any_agent_rejects_changes_no_switch(
        mesh: Built, original: dict[str, Any], tmp_path: Path) -> None:
    before = switches(mesh)
    bad = {
        "host1's datapath ID": lambda d: d["hosts"]["host1"].update(datapath_id=0xBAD),
        "host2 leaves": lambda d: d["hosts"].pop("host2"),
        "the cookie": lambda d: d.update(cookie=0x77),
    }
    with ExitStack() as stack:
        watches = [stack.enter_context(FlowMonitor(mesh.hosts[h].ovs, "br-tun")) for h in ("host1", "host2")]
        for what, change in bad.items():
            data = with_purple(original)  # a real change for everyone, but one agent says no
            change(data)
            path = tmp_path / "bad.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            result = brtun("apply", str(path), "--testbed", mesh.state.name)
            print(f"{what}: {result.stderr.strip()}")
            assert result.returncode == 2 and "nothing applied" in result.stderr, what
    assert [w.flow_mods for w in watches] == [[], []]
    assert switches(mesh) == before
    for host in ("host1", "host2"):
        check = brtun("diff", host)
        assert check.returncode == 0 and "IN SYNC" in check.stdout, check.stdout


def with_purple(original: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(original))
    data["networks"]["purple"] = {"type": "gre", "segmentation_id": 900}
    for i, host in enumerate(("host1", "host2"), start=1):
        data["hosts"][host]["ports"].append({"network": "purple", "mac": f"fa:16:3e:09:00:{i:02x}"})
    return data


def test_when_one_switch_refuses_a_change_every_host_goes_back(
        mesh: Built, original: dict[str, Any], tmp_path: Path) -> None:
    before = switches(mesh)
    host2 = mesh.hosts["host2"].ovs
    # host2's table 22 is full: Open vSwitch refuses one more flow there (OFPFMFC_TABLE_FULL)
    full = len(dump(host2, "br-tun", "table=22"))
    host2.vsctl("--", "--id=@limit", "create", "Flow_Table", f"flow_limit={full}", "overflow_policy=refuse",
                "--", "set", "Bridge", "br-tun", "flow_tables:22=@limit")
    try:
        path = tmp_path / "purple.yaml"
        path.write_text(yaml.safe_dump(with_purple(original), sort_keys=False))
        result = brtun("apply", str(path), "--testbed", mesh.state.name)
        print(result.stdout + result.stderr)
        assert result.returncode == 1
        assert "host2: the switch refused it" in result.stderr and "went back to their previous config" in result.stderr
        assert switches(mesh) == before
    finally:
        host2.vsctl("clear", "Bridge", "br-tun", "flow_tables")


def test_brtun_edit_reaches_every_agent_or_none(mesh: Built, original: dict[str, Any]) -> None:
    name = mesh.state.name

    def edit(*argv: str) -> Any:
        return brtun("edit", *argv, "--testbed", name)

    assert edit("add-network", "purple", "gre", "900").returncode == 0
    unsure = edit("add-port", "purple", "fa:16:3e:09:00:01")
    assert unsure.returncode == 2 and "which host is the port on? (--on-host NAME)" in unsure.stderr
    for i, host in enumerate(("host1", "host2"), start=1):
        result = edit("add-port", "purple", f"fa:16:3e:09:00:{i:02x}", "--on-host", host)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("applied, ") == 2  # both agents, every time
    for host in ("host1", "host2"):
        assert any("tun_id=0x384" in line for line in ours(mesh, host)), f"purple on {host}"
    before = switches(mesh)
    refused = edit("remove-endpoint", "host2")  # host2's own agent says no: nobody applies it
    assert refused.returncode == 2 and "host2: hosts.host2: missing" in refused.stderr
    assert switches(mesh) == before
    state = brtun("state", "--testbed", name)
    assert state.stdout.count("+ 3 run-time edits") == 2
