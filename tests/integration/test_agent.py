"""The agent on a real Open vSwitch: a private ovsdb-server + ovs-vswitchd per test, no mocks."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.targets import spellings
from flows import br_int
from flows.config import load_config
from flows.flow import render_flows
from flows.model import build_bridge
from flows.pipeline import build
from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIGS
from tests.integration.helpers import FlowMonitor, dump, rendered, wait_until

pytestmark = pytest.mark.integration
EXAMPLE = CONFIGS / "example.yaml"
NEUTRON_GRE = {"remote_ip": "192.168.100.13", "local_ip": "192.168.100.11", "in_key": "flow",
               "out_key": "flow", "df_default": "true", "egress_pkt_mark": "0"}


@pytest.fixture
def agent(private_ovs: PrivateOvs) -> Iterator[AgentProcess]:
    process = AgentProcess(private_ovs, EXAMPLE, "compute1")
    try:
        yield process
    finally:
        process.stop()


def get(ovs: PrivateOvs, table: str, record: str, column: str) -> str:
    """One database value as text, without the quotes ovs-vsctl adds only sometimes."""
    return ovs.vsctl("get", table, record, column).strip().strip('"')


def interface(ovs: PrivateOvs, name: str, column: str) -> str:
    return get(ovs, "Interface", name, column)


def options(ovs: PrivateOvs, name: str) -> dict[str, str]:
    raw = interface(ovs, name, "options").strip("{}")
    pairs = [item.split("=", 1) for item in raw.split(", ") if item]
    return {key: value.strip('"') for key, value in pairs}


def expected_br_tun(config_path: Path, host: str, ofports: dict[str, int]) -> list[str]:
    model = build_bridge(load_config(str(config_path)), host, observed_ofports=ofports)
    return sorted(render_flows(build(model)).splitlines())


def test_on_an_empty_switch_the_agent_builds_br_tun_exactly_as_brtun_render(agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    log = agent.wait_in_sync()
    assert "br-tun: read 0 flows" in log and "sent 25 adds, 0 modifies, 0 deletes in one bundle" in log
    assert dump(ovs, "br-tun") == rendered("render", str(EXAMPLE), "--host", "compute1")
    assert dump(ovs, "br-int") == sorted(render_flows(br_int.build(0x5E1EC7AB1E)).splitlines())
    assert options(ovs, "gre-c0a8640d") == NEUTRON_GRE
    assert interface(ovs, "vxlan-c0a8640c", "type") == "vxlan"
    assert interface(ovs, "patch-int", "options:peer") == "patch-tun"
    assert interface(ovs, "patch-tun", "options:peer") == "patch-int"
    for bridge, dpid in (("br-tun", "0000000000000b01"), ("br-int", "1000000000000b01")):
        assert get(ovs, "Bridge", bridge, "fail_mode") == "secure"
        assert get(ovs, "Bridge", bridge, "protocols") == "[OpenFlow13]"
        assert get(ovs, "Bridge", bridge, "other_config:disable-in-band") == "true"
        assert get(ovs, "Bridge", bridge, "other_config:datapath-id") == dpid
        assert ovs.vsctl("get-controller", bridge).strip() == f"unix:{ovs.rundir}/brtun-openflow.sock"
    assert "connection_mode     : out-of-band" in ovs.vsctl("list", "Controller")


def test_existing_ports_are_adopted_fixed_or_left_alone(agent: AgentProcess) -> None:
    ovs = agent.ovs
    ovs.add_bridge("br-tun", "fail_mode=secure")
    ovs.vsctl("add-port", "br-tun", "patch-int", "--", "set", "Interface", "patch-int", "type=patch",
              "options:peer=patch-tun", "ofport_request=41")
    ovs.vsctl("add-port", "br-tun", "gre-c0a8640d", "--", "set", "Interface", "gre-c0a8640d", "type=gre",
              *(f"options:{k}={v}" for k, v in NEUTRON_GRE.items()), "ofport_request=42")
    ovs.vsctl("add-port", "br-tun", "vxlan-c0a8640c", "--", "set", "Interface", "vxlan-c0a8640c",
              "type=vxlan", "options:remote_ip=192.168.100.99", "options:key=flow", "ofport_request=43")
    ovs.vsctl("add-port", "br-tun", "gre-0a636363", "--", "set", "Interface", "gre-0a636363", "type=gre",
              "options:remote_ip=10.99.99.99", "options:key=flow", "ofport_request=44")
    agent.start()
    log = agent.wait_in_sync()
    ofports = {name: int(interface(ovs, name, "ofport"))
               for name in ("patch-int", "gre-c0a8640d", "vxlan-c0a8640c", "gre-0a636363")}
    assert ofports == {"patch-int": 41, "gre-c0a8640d": 42, "vxlan-c0a8640c": 43, "gre-0a636363": 44}
    assert options(ovs, "vxlan-c0a8640c") == {**NEUTRON_GRE, "remote_ip": "192.168.100.12"}
    assert ("fix vxlan-c0a8640c on br-tun: options df_default=true, egress_pkt_mark=0, in_key=flow, "
            "local_ip=192.168.100.11, out_key=flow, remote_ip=192.168.100.12; removes options the config does not "
            "give: key=flow; adopted") in log
    assert "fix gre-c0a8640d on br-tun: adopted" in log  # right options: only marked as ours
    assert "gre-0a636363 on br-tun is not a tunnel port of this config: left alone" in log
    assert dump(ovs, "br-tun") == expected_br_tun(EXAMPLE, "compute1", {
        "patch-int": 41, "gre-c0a8640d": 42, "vxlan-c0a8640c": 43})
    assert not [line for line in dump(ovs, "br-tun") if "in_port=44" in line]


def test_restarting_over_a_programmed_switch_changes_no_flow_and_keeps_learned_ones(
        agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    trace = ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
                    "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
    assert "learn" in trace.stdout
    before = dump(ovs, "br-tun")
    assert agent.stop() == 0
    with FlowMonitor(ovs, "br-tun") as watch_tun, FlowMonitor(ovs, "br-int") as watch_int:
        agent.start()
        log = agent.wait_in_sync()
    assert watch_tun.events == [] and watch_int.events == []
    assert "br-tun: read 26 flows (1 learned, 0 foreign): in sync, nothing sent" in log
    assert "br-int: read 9 flows (0 learned, 0 foreign): in sync, nothing sent" in log
    assert dump(ovs, "br-tun") == before
    # The switch was asked to connect at once (its Controller row re-spelled), not left to its backoff.
    assert "asked the switch to connect br-tun and br-int now" in log
    targets = {target.strip('"') for target in ovs.vsctl("--columns=target", "--bare", "list", "Controller").split()}
    assert targets and targets <= set(spellings(agent.listen_target)), (targets, agent.listen_target)


def test_a_packet_from_a_tunnel_is_learned_and_unicast_then_follows_it(agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
            "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
    learned = [line for line in dump(ovs, "br-tun", "table=20") if "priority=1," in line]
    assert learned == [" cookie=0x5e1ec7ab1e, table=20, hard_timeout=300, priority=1,vlan_tci=0x0002/0x0fff,"
                       "dl_dst=fa:16:3e:aa:bb:cc actions=load:0->NXM_OF_VLAN_TCI[],"
                       "load:0x1388->NXM_NX_TUN_ID[],output:3"]
    unicast = ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
                      "in_port=1,dl_vlan=2,dl_src=fa:16:3e:00:00:02,dl_dst=fa:16:3e:aa:bb:cc").stdout
    hops = unicast.split("20. ", 1)[1]
    assert hops.startswith("vlan_tci=0x0002/0x0fff,dl_dst=fa:16:3e:aa:bb:cc, priority 1, cookie 0x5e1ec7ab1e")
    assert "load:0x1388->NXM_NX_TUN_ID[]" in hops and "output:3" in hops and "22." not in hops


def test_a_tunnel_port_deleted_by_hand_is_recreated(agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    expected = dump(ovs, "br-tun")
    ovs.vsctl("del-port", "br-tun", "gre-c0a8640d")
    wait_until(lambda: "gre-c0a8640d" in ovs.vsctl("list-ports", "br-tun"), what="the port to come back")
    wait_until(lambda: dump(ovs, "br-tun") == expected, what="the flows to be as before")
    assert options(ovs, "gre-c0a8640d") == NEUTRON_GRE
    assert "database: add gre-c0a8640d to br-tun" in agent.log().rsplit("br-tun: read", 1)[1]


def test_adding_a_host_adds_only_that_hosts_port_and_flows(agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    before = dump(ovs, "br-tun")
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["hosts"]["compute3"] = {"datapath_id": 0xB04, "local_ip": "192.168.100.14", "ports": [
        {"network": "net1", "mac": "fa:16:3e:00:00:31", "ip": "10.1.0.31"},
        {"network": "net2", "mac": "fa:16:3e:00:00:32", "ip": "10.2.0.31"}]}
    grown = tmp_path / "grown.yaml"
    grown.write_text(yaml.safe_dump(data))
    agent.stop()
    with FlowMonitor(ovs, "br-tun") as watch:
        agent.start(grown)
        agent.wait_in_sync()
    assert sorted(ovs.vsctl("list-ports", "br-tun").split()) == [
        "gre-c0a8640d", "gre-c0a8640e", "patch-int", "vxlan-c0a8640c", "vxlan-c0a8640e"]
    after = dump(ovs, "br-tun")
    assert after == expected_br_tun(grown, "compute1", {"patch-int": 1, "gre-c0a8640d": 2,
                                                          "vxlan-c0a8640c": 3, "gre-c0a8640e": 0x140E,
                                                          "vxlan-c0a8640e": 0x240E})
    gone = set(before) - set(after)
    assert {line.split(" actions")[0] for line in gone} == {
        " cookie=0x5e1ec7ab1e, table=22, priority=1,dl_vlan=1", " cookie=0x5e1ec7ab1e, table=22, priority=1,dl_vlan=2"}
    for line in set(after) - set(before):
        assert any(mark in line for mark in ("5134", "9230", "fa:16:3e:00:00:3", "10.1.0.31", "10.2.0.31")), line
    kinds = {event.split()[0] for event in watch.events}
    assert kinds == {"event=ADDED", "event=MODIFIED"}
    assert len([e for e in watch.events if e.startswith("event=MODIFIED")]) == 2


def test_a_refused_change_is_logged_with_its_flow_leaves_the_switch_unchanged_and_is_retried(
        agent: AgentProcess) -> None:
    ovs = agent.ovs
    ovs.add_bridge("br-tun", "fail_mode=secure")
    # Open vSwitch refuses a second flow in table 22 (OFPFMFC_TABLE_FULL).
    ovs.vsctl("--", "--id=@limit", "create", "Flow_Table", "flow_limit=1", "overflow_policy=refuse",
              "--", "set", "Bridge", "br-tun", "flow_tables:22=@limit")
    agent.start()
    log = agent.wait_for_log("was refused")
    assert "OpenFlow error type=5 code=1 on br-tun for add  cookie=0x5e1ec7ab1e, table=22" in log
    assert dump(ovs, "br-tun") == []  # atomic: nothing of the bundle was applied
    assert agent.running
    ovs.vsctl("clear", "Bridge", "br-tun", "flow_tables")
    wait_until(lambda: dump(ovs, "br-tun") == rendered("render", str(EXAMPLE), "--host", "compute1"),
               timeout=20, what="the retried bundle")


def test_the_agent_runs_on_os_kens_native_hub_too(private_ovs: PrivateOvs) -> None:
    agent = AgentProcess(private_ovs, EXAMPLE, "compute1", hub="native")
    try:
        agent.start()
        log = agent.wait_in_sync()
        assert "(native hub; a unix socket of mode 0600: only root can connect)" in log
        assert dump(private_ovs, "br-tun") == rendered("render", str(EXAMPLE), "--host", "compute1")
        assert agent.stop(signal.SIGTERM) == 0
        assert "stopped; flows left in place" in agent.log()
        assert len(dump(private_ovs, "br-tun")) == 25
    finally:
        agent.stop()


def test_an_ofport_change_moves_tables_0_20_and_22_to_the_new_number(agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    ovs.vsctl("set", "Interface", "gre-c0a8640d", "ofport_request=77")
    wait_until(lambda: interface(ovs, "gre-c0a8640d", "ofport") == "77", what="Open vSwitch to renumber")
    expected = expected_br_tun(EXAMPLE, "compute1", {"patch-int": 1, "gre-c0a8640d": 77, "vxlan-c0a8640c": 3})
    wait_until(lambda: dump(ovs, "br-tun") == expected, what="tables 0, 20 and 22 to follow")
    assert not [line for line in dump(ovs, "br-tun") if "in_port=2 " in line or "output:2" in line]


def test_vm_ports_on_br_int_get_their_networks_local_vlan_and_strangers_the_dead_vlan(
        agent: AgentProcess) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    for name, mac in (("qvo-net1", "fa:16:3e:00:00:01"), ("qvo-net2", "FA:16:3E:00:00:02"),
                      ("qvo-stranger", "fa:16:3e:99:99:99")):
        ovs.vsctl("add-port", "br-int", name, "--", "set", "Interface", name, "type=internal",
                  f"external_ids:attached-mac={mac}", f"external_ids:iface-id={name}")
    ovs.vsctl("add-port", "br-int", "not-a-vif", "--", "set", "Interface", "not-a-vif", "type=internal")
    wait_until(lambda: get(ovs, "Port", "qvo-stranger", "tag") == "4095", what="the dead VLAN tag")
    assert get(ovs, "Port", "qvo-net1", "tag") == "1"
    assert get(ovs, "Port", "qvo-net2", "tag") == "2"
    assert get(ovs, "Port", "not-a-vif", "tag") == "[]"
    assert "tag qvo-stranger with VLAN 4095: no config port has its MAC (dead VLAN)" in agent.log()


def test_removing_a_host_deletes_its_tunnel_port_its_flows_and_the_flows_learned_through_it(
        agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    agent.start()
    agent.wait_in_sync()
    ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
            "in_port=2,tun_id=0x3e9,dl_src=fa:16:3e:aa:00:01,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
    ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
            "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:00:02,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
    assert len([line for line in dump(ovs, "br-tun") if "table=20, hard_timeout" in line]) == 2
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    del data["hosts"]["network"]
    del data["hosts"]["compute1"]["ofports"]["gre-c0a8640d"]
    shrunk = tmp_path / "shrunk.yaml"
    shrunk.write_text(yaml.safe_dump(data))
    agent.stop()
    agent.start(shrunk)
    log = agent.wait_in_sync()
    assert "delete gre-c0a8640d from br-tun: the config no longer implies it" in log
    assert "gre-c0a8640d" not in ovs.vsctl("list-ports", "br-tun")
    after = dump(ovs, "br-tun")
    learned = [line for line in after if "table=20, hard_timeout" in line]
    assert len(learned) == 1 and "dl_dst=fa:16:3e:aa:00:02" in learned[0]  # the vxlan one stays
    static = [line for line in after if "table=20, hard_timeout" not in line]
    assert static == expected_br_tun(shrunk, "compute1", {"patch-int": 1, "vxlan-c0a8640c": 3})
