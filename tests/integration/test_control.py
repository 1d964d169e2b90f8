"""Live changes on one real switch: the control socket, `brtun apply/state/edit`, SIGHUP,
the canary, metrics.  Each test: a private Open vSwitch, a real agent, no mocks.

Flow changes are counted by `ovs-ofctl monitor` (FlowMonitor), independently of the agent.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.control import read_reply, request
from controller.launcher import DEFAULT_METRICS_PORT
from flows.config import load_config
from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIGS
from tests.integration.helpers import FlowMonitor, brtun, dump, is_learned, wait_until

pytestmark = pytest.mark.integration
HOST = "compute1"
LEARN = "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff"


def raw_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CONFIGS / "example.yaml").read_text())
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_net3(data: dict[str, Any]) -> dict[str, Any]:
    """example.yaml plus a third network with ports on compute1 and network."""
    data["networks"]["net3"] = {"type": "gre", "segmentation_id": 3003}
    data["hosts"]["compute1"]["ports"].append({"network": "net3", "mac": "fa:16:3e:00:03:01", "ip": "10.3.0.11"})
    data["hosts"]["network"]["ports"].append({"network": "net3", "mac": "fa:16:3e:00:03:04", "ip": "10.3.0.2"})
    return data


@pytest.fixture
def agent(private_ovs: PrivateOvs, tmp_path: Path) -> Iterator[AgentProcess]:
    config = write(tmp_path / "brtun.yaml", raw_config())
    process = AgentProcess(private_ovs, config, HOST)
    try:
        process.start()
        process.wait_in_sync()
        # one learned flow, so that every test also sees whether learned flows survive
        private_ovs.run("ovs-appctl", "ofproto/trace", "br-tun", LEARN, "-generate")
        yield process
    finally:
        process.stop()


def ask(agent: AgentProcess, payload: dict[str, Any]) -> dict[str, Any]:
    return request(agent.control_socket, payload)


def switch_state(ovs: PrivateOvs) -> tuple[list[str], list[str], str]:
    return dump(ovs, "br-tun"), dump(ovs, "br-int"), ovs.vsctl("show")


def desired(config: Path) -> list[str]:
    result = brtun("render", str(config), "--host", HOST)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())


def ours_without_learned(ovs: PrivateOvs) -> list[str]:
    return [line for line in dump(ovs, "br-tun") if not is_learned(line)]



def test_state_over_the_control_socket_from_another_namespace(agent: AgentProcess) -> None:
    reply = ask(agent, {"op": "state"})  # this test runs in the root namespace, the agent in its own
    assert reply["ok"] and reply["host"] == HOST
    assert reply["bridges"]["br-tun"]["connected"] and reply["bridges"]["br-int"]["connected"]
    assert reply["bridges"]["br-tun"]["desired"] == 25
    assert reply["local_vlans"] == {"net1": 1, "net2": 2}
    shown = brtun("state", "--socket", str(agent.control_socket))
    assert shown.returncode == 0, shown.stderr
    assert f"{agent.control_socket}: config {agent.config}" in shown.stdout
    assert "br-tun: connected; 25 flows desired, 26 installed (1 learned, 0 foreign): in sync" in shown.stdout


def test_apply_adds_a_network_touching_nothing_else_and_keeps_learned_flows(
        agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    new = write(tmp_path / "new.yaml", with_net3(raw_config()))
    dry = brtun("apply", str(new), "--socket", str(agent.control_socket), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "accepts: br-int +0 ~0 -0, br-tun +4 ~0 -0" in dry.stdout and "dry run: nothing applied" in dry.stdout
    assert ours_without_learned(ovs) == desired(agent.config)
    with FlowMonitor(ovs) as watch:
        applied = brtun("apply", str(new), "--socket", str(agent.control_socket))
    assert applied.returncode == 0, applied.stderr
    assert "applied, " in applied.stdout
    assert ours_without_learned(ovs) == desired(new)
    # net3 (gre, key 3003) on VLAN 3: its provision, flood, l2pop unicast and ARP entries are new;
    # the tunnel port toward `network` already carried net1, so its table 0 flow stays as it was
    assert [e for e in watch.events if "event=ADDED" not in e] == []
    assert len(watch.events) == 4
    assert any(is_learned(line) for line in dump(ovs, "br-tun")), "the learned flow went"
    state = ask(agent, {"op": "state"})
    assert state["config"]["path"] == str(new) and state["local_vlans"] == {"net1": 1, "net2": 2, "net3": 3}


def test_removing_a_network_removes_its_flows_and_the_flows_learned_on_it(
        agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    data = raw_config()
    del data["networks"]["net2"]
    data["hosts"]["compute1"]["local_vlans"] = {"net1": 1}
    data["hosts"]["compute1"]["ofports"].pop("vxlan-c0a8640c")
    for host in data["hosts"].values():
        host["ports"] = [p for p in host["ports"] if p["network"] != "net2"]
    new = write(tmp_path / "new.yaml", data)
    assert any("vlan_tci=0x0002/0x0fff" in line for line in dump(ovs, "br-tun"))  # learned on net2
    reply = ask(agent, {"op": "apply", "config": new.read_text(), "path": str(new)})
    assert reply["ok"], reply
    assert dump(ovs, "br-tun") == desired(new)  # nothing left of net2, learned flow included
    assert not [line for line in dump(ovs, "br-tun") if "0x1388" in line or "vlan_tci" in line]


def test_run_time_edits_add_and_remove_networks_ports_and_endpoints(agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    sock = str(agent.control_socket)

    def edit(*argv: str) -> str:
        result = brtun("edit", *argv, "--socket", sock)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "applied, 0 flow changes" in edit("add-network", "net3", "gre", "3003", "--local-vlan", "7")
    edit("add-port", "net3", "fa:16:3e:00:03:01", "--ip", "10.3.0.11")  # compute1 now carries net3
    edit("add-port", "net3", "fa:16:3e:00:03:04", "--ip", "10.3.0.2", "--on-host", "network")
    expected = write(tmp_path / "expected.yaml", with_net3(raw_config()))
    data = yaml.safe_load(expected.read_text())
    data["hosts"]["compute1"]["local_vlans"]["net3"] = 7
    assert ours_without_learned(ovs) == desired(write(expected, data))
    assert any("dl_vlan=7" in line for line in dump(ovs, "br-tun"))

    edit("add-endpoint", "compute9", "192.168.100.19", "--tunnel-types", "gre")
    edit("add-port", "net1", "fa:16:3e:00:09:01", "--ip", "10.1.0.19", "--on-host", "compute9")
    # with l2population a tunnel port exists only toward a host that shares a network
    assert "gre-c0a86413" in ovs.vsctl("list-ports", "br-tun")
    assert any("dl_dst=fa:16:3e:00:09:01" in line for line in dump(ovs, "br-tun", "table=20"))
    edit("remove-endpoint", "compute9")
    wait_until(lambda: "gre-c0a86413" not in ovs.vsctl("list-ports", "br-tun"), what="the tunnel port to go")
    edit("remove-port", "fa:16:3e:00:03:04", "--on-host", "network")
    edit("remove-network", "net3")
    assert ours_without_learned(ovs) == desired(agent.config)
    state = ask(agent, {"op": "state"})
    assert len(state["config"]["edits"]) == 8
    # the file is the source of truth: SIGHUP reads it again and the edits are gone
    assert "applied" in sighup(agent)
    assert ask(agent, {"op": "state"})["config"]["edits"] == []


OVERSIZE = b'{"op": "validate", "config": "' + b"x" * (1 << 20) + b'"}\n'


def bad_configs() -> list[tuple[str, dict[str, Any] | str, str]]:
    """(what, the change, a piece of the expected message): configs an agent must reject."""
    def changed(edit: Any) -> dict[str, Any]:
        data = raw_config()
        edit(data)
        return data

    return [
        ("not YAML", "networks: [", "not valid YAML"),
        ("not a mapping", "- a\n- b\n", "must be a mapping"),
        ("VLAN 4095", changed(lambda d: d["hosts"]["compute1"]["local_vlans"].update(net1=4095)), "dead VLAN"),
        ("VLAN twice", changed(lambda d: d["hosts"]["compute1"]["local_vlans"].update(net2=1)),
         "already the local VLAN"),
        ("key out of range", changed(lambda d: d["networks"]["net2"].update(segmentation_id=1 << 24)),
         "outside 1..16777215"),
        ("key reused", changed(lambda d: d["networks"].update(net9={"type": "gre", "segmentation_id": 1001})),
         "already the key"),
        ("unknown type", changed(lambda d: d["networks"]["net1"].update(type="mpls")), "unknown tunnel type"),
        ("bad MAC", changed(lambda d: d["hosts"]["compute1"]["ports"][0].update(mac="fa:16:3e")),
         "is not a MAC address"),
        ("MAC twice", changed(lambda d: d["hosts"]["compute2"]["ports"][0].update(mac="fa:16:3e:00:00:02")),
         "already used on net2"),
        ("endpoint twice", changed(lambda d: d["hosts"]["compute2"].update(local_ip="192.168.100.11")),
         "already the local_ip"),
        ("unknown key", changed(lambda d: d["options"].update(l2pop=True)), "unknown key"),
        ("ARP responder alone", changed(lambda d: d["options"].update(l2_population=False)),
         "works only with l2_population"),
        ("own host removed", changed(lambda d: d["hosts"].pop("compute1")), "cannot leave the config"),
        ("datapath ID changed", changed(lambda d: d["hosts"]["compute1"].update(datapath_id=0xB09)),
         "datapath ID cannot change"),
        ("br-int datapath ID changed", changed(lambda d: d["hosts"]["compute1"].update(int_datapath_id=0xC01)),
         "br-int's datapath ID cannot change"),
        ("cookie changed", changed(lambda d: d.update(cookie=0x1234)), "would become foreign"),
    ]


def bad_requests() -> list[tuple[str, bytes, str]]:
    return [
        ("not JSON", b"hello\n", "not JSON"),
        ("not UTF-8", b"\xff\xfe\n", "not UTF-8"),
        ("a list", b"[1, 2]\n", "must be a JSON object"),
        ("no op", b'{"config": "x"}\n', 'needs "op"'),
        ("op not a string", b'{"op": 7}\n', 'needs "op"'),
        ("unknown op", b'{"op": "reboot"}\n', "unknown op"),
        ("unknown field", b'{"op": "state", "force": true}\n', "unknown field force"),
        ("config not text", b'{"op": "apply", "config": 5}\n', "must be a string"),
        ("apply without config", b'{"op": "apply"}\n', 'needs "config"'),
        ("edit without name", b'{"op": "edit", "args": {}}\n', 'needs "edit"'),
        ("edit args not an object", b'{"op": "edit", "edit": "add-network", "args": [1]}\n', "an object"),
        ("too large", OVERSIZE, "larger than"),
    ]


def bad_edits() -> list[tuple[str, str, dict[str, Any], str]]:
    return [
        ("unknown edit", "rename-network", {"name": "net1"}, "unknown edit"),
        ("network exists", "add-network", {"name": "net1", "type": "gre", "segmentation_id": 7}, "exists already"),
        ("network missing", "remove-network", {"name": "net9"}, "no network"),
        ("argument missing", "add-network", {"name": "net9", "type": "gre"}, "missing argument"),
        ("key taken", "add-network", {"name": "net9", "type": "gre", "segmentation_id": 1001}, "already the key"),
        ("bad type", "add-network", {"name": "net9", "type": "stt", "segmentation_id": 9}, "unknown tunnel type"),
        ("dead VLAN", "add-network", {"name": "net9", "type": "gre", "segmentation_id": 9, "local_vlan": 4095},
         "dead VLAN"),
        ("port on unknown network", "add-port", {"network": "net9", "mac": "fa:16:3e:00:09:09"}, "unknown network"),
        ("multicast MAC", "add-port", {"network": "net1", "mac": "01:00:5e:00:00:01"}, "multicast"),
        ("port on unknown host", "add-port", {"network": "net1", "mac": "fa:16:3e:00:09:09", "host": "nowhere"},
         "no host"),
        ("port missing", "remove-port", {"mac": "fa:16:3e:00:09:09"}, "no port with MAC"),
        ("endpoint exists", "add-endpoint", {"name": "compute2", "local_ip": "192.168.100.22"}, "exists already"),
        ("endpoint address", "add-endpoint", {"name": "c9", "local_ip": "192.168.100.300"}, "not an IP address"),
        ("endpoint address taken", "add-endpoint", {"name": "c9", "local_ip": "192.168.100.12"},
         "already the local_ip"),
        ("own host", "remove-endpoint", {"name": "compute1"}, "own host"),
        ("unknown endpoint", "remove-endpoint", {"name": "compute9"}, "no host"),
    ]


def raw_request(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it stops reading an oversize request
            sock.sendall(data)
        reply = read_reply(sock)
    answer: dict[str, Any] = json.loads(reply)
    return answer


def sighup(agent: AgentProcess) -> str:
    """Send SIGHUP and return the log line that reports its outcome."""
    seen = agent.log().count("SIGHUP: ")
    assert agent.process is not None
    agent.process.send_signal(signal.SIGHUP)
    wait_until(lambda: agent.log().count("SIGHUP: ") > seen, what="the SIGHUP outcome in the log")
    return [line for line in agent.log().splitlines() if "SIGHUP: " in line][-1]


def test_bad_changes_are_rejected_with_a_message_and_change_nothing(agent: AgentProcess, tmp_path: Path) -> None:
    ovs = agent.ovs
    before = switch_state(ovs)
    original = agent.config.read_text()
    rejected: list[str] = []
    with FlowMonitor(ovs, "br-tun") as watch_tun, FlowMonitor(ovs, "br-int") as watch_int:
        for what, change, message in bad_configs():
            text = change if isinstance(change, str) else yaml.safe_dump(change, sort_keys=False)
            for op in ("validate", "apply"):
                reply = ask(agent, {"op": op, "config": text, "path": str(tmp_path / "bad.yaml")})
                assert not reply["ok"], (what, op)
                assert any(message in error for error in reply["errors"]), (what, reply["errors"])
            rejected.append(f"socket {what}: {reply['errors'][0]}")
        for what, data, message in bad_requests():
            reply = raw_request(agent.control_socket, data)
            assert not reply["ok"] and message in reply["errors"][0], (what, reply)
            rejected.append(f"request {what}: {reply['errors'][0]}")
        for what, name, args, message in bad_edits():
            reply = ask(agent, {"op": "edit", "edit": name, "args": args})
            assert not reply["ok"] and any(message in e for e in reply["errors"]), (what, reply)
            rejected.append(f"edit {what}: {reply['errors'][0]}")
        for what, change, message in bad_configs()[:3] + bad_configs()[-4:]:
            text = change if isinstance(change, str) else yaml.safe_dump(change, sort_keys=False)
            agent.config.write_text(text)
            line = sighup(agent)
            assert "rejected; nothing changed" in line and message in line, (what, line)
            rejected.append(f"SIGHUP {what}: {line.split('rejected; nothing changed: ')[1]}")
        agent.config.write_text(original)
        cli = brtun("apply", str(write(tmp_path / "bad.yaml", {"networks": []})), "--socket",
                    str(agent.control_socket))
        assert cli.returncode == 2 and "no agent was asked" in cli.stderr
        rejected.append("brtun apply of an invalid file: " + cli.stderr.splitlines()[0])
    print("\n".join(rejected))
    assert len(rejected) >= 30
    assert watch_tun.events == [] and watch_int.events == []
    assert switch_state(ovs) == before
    for bridge in ("br-tun",):
        check = brtun("diff", "--bridge", f"unix:{ovs.rundir}/{bridge}.mgmt", "--config", str(agent.config),
                      "--as-host", HOST)
        assert check.returncode == 0 and "IN SYNC" in check.stdout, check.stdout + check.stderr
    assert ask(agent, {"op": "config"})["text"] == original


def test_sighup_applies_the_file_and_a_bad_file_changes_nothing(agent: AgentProcess) -> None:
    ovs = agent.ovs
    before = switch_state(ovs)
    agent.config.write_text("networks: [")
    assert "rejected; nothing changed" in sighup(agent)
    assert switch_state(ovs) == before
    write(agent.config, with_net3(raw_config()))
    assert "applied (4 flow changes)" in sighup(agent)
    assert ours_without_learned(ovs) == desired(agent.config)


def scrape(ovs: PrivateOvs, port: int = DEFAULT_METRICS_PORT) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = ovs.run("busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/metrics").stdout
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_report_flows_flow_mods_connections_and_learned_macs(agent: AgentProcess) -> None:
    metrics = scrape(agent.ovs)
    assert metrics[("brtun_flows_desired", (("bridge", "br-tun"),))] == 25
    assert metrics[("brtun_flows_desired", (("bridge", "br-int"),))] == 9
    assert metrics[("brtun_flow_mods_total", (("bridge", "br-tun"), ("kind", "add")))] == 25
    assert metrics[("brtun_switch_connections_total", (("bridge", "br-tun"),))] == 1
    assert metrics[("brtun_switch_connected", (("bridge", "br-int"),))] == 1
    assert metrics[("brtun_reconcile_seconds_count", (("bridge", "br-tun"),))] >= 1
    # the learned flow is counted at the next reconcile; the canary check does not read flows,
    # so make one: wipe table 22 and let the agent repair it
    agent.ovs.ofctl("del-flows", "br-tun", "table=22")
    wait_until(lambda: scrape(agent.ovs).get(("brtun_repairs_total", (("bridge", "br-tun"), ("reason", "wiped"))))
               == 1, what="the repair to be counted")
    metrics = scrape(agent.ovs)
    assert metrics[("brtun_learned_macs", (("network", "net2"),))] == 1
    assert metrics[("brtun_learned_macs", (("network", "net1"),))] == 0
    assert metrics[("brtun_openflow_errors_total", (("bridge", "br-tun"),))] == 0


@pytest.mark.parametrize("wipe", [("br-tun",), ("br-tun", "table=22"), ("br-int",), ("br-int", "table=23")])
def test_the_canary_notices_a_wiped_table_and_repairs_it(agent: AgentProcess, wipe: tuple[str, ...]) -> None:
    ovs = agent.ovs
    bridge = wipe[0]
    before = dump(ovs, bridge)
    wiped = time.monotonic()
    ovs.ofctl("del-flows", *wipe)
    expected = before if bridge == "br-int" else [line for line in before if not is_learned(line) or len(wipe) > 1]
    wait_until(lambda: dump(ovs, bridge) == expected, timeout=10, what=f"{bridge} to be repaired")
    repaired = time.monotonic() - wiped
    print(f"del-flows {' '.join(wipe)}: repaired in {repaired:.2f} s")
    log = agent.wait_for_log("(canary): repairing")
    # by content (a read-back) or by counts, whichever check came first: each names the tables
    line = next(line for line in log.splitlines() if "(canary): repairing" in line)
    assert re.search(rf"{bridge}: (content: )?table \d+", line), line
    if len(wipe) > 1:
        assert f"table {wipe[1].split('=')[1]}" in line, line
    assert load_config(str(agent.config)).cookie == 0x5E1EC7AB1E


def make_pki(directory: Path) -> dict[str, Path]:
    """A controller CA and a switch CA (ovs-pki), and a certificate from each: Open vSwitch's own way."""
    directory.mkdir()
    pki = directory / "pki"
    for argv in (["init"], ["req+sign", "ctl", "controller"], ["req+sign", "sw", "switch"]):
        subprocess.run(["ovs-pki", f"--dir={pki}", "--force", *argv], cwd=directory, check=True, capture_output=True)
    return {"ctl-key": directory / "ctl-privkey.pem", "ctl-cert": directory / "ctl-cert.pem",
            "sw-key": directory / "sw-privkey.pem", "sw-cert": directory / "sw-cert.pem",
            "controller-ca": pki / "controllerca" / "cacert.pem", "switch-ca": pki / "switchca" / "cacert.pem"}


def test_tls_the_switch_connects_over_ssl_and_a_wrong_certificate_does_not(
        private_ovs: PrivateOvs, tmp_path: Path) -> None:
    ovs = private_ovs
    ours, strangers = make_pki(tmp_path / "ours"), make_pki(tmp_path / "strangers")
    config = write(tmp_path / "brtun.yaml", raw_config())
    tls = ("--ssl-key", str(ours["ctl-key"]), "--ssl-cert", str(ours["ctl-cert"]),
           "--ssl-ca-cert", str(ours["switch-ca"]))
    agent = AgentProcess(ovs, config, HOST, listen="127.0.0.1:6653", extra_args=tls)
    try:
        ovs.vsctl("set-ssl", str(ours["sw-key"]), str(ours["sw-cert"]), str(ours["controller-ca"]))
        agent.start()
        log = agent.wait_in_sync()
        assert "(eventlet hub; TLS, switch certificate required; a local peer must run as root)" in log
        assert ovs.vsctl("get-controller", "br-tun").strip() == "ssl:127.0.0.1:6653"
        assert dump(ovs, "br-tun") == desired(config)
        assert agent.stop() == 0

        # the switch now shows a certificate our CA did not sign: no connection, no flows
        ovs.ofctl("del-flows", "br-tun")
        ovs.vsctl("del-ssl")
        ovs.vsctl("set-ssl", str(strangers["sw-key"]), str(strangers["sw-cert"]), str(ours["controller-ca"]))
        agent.start()
        agent.wait_for_log("control socket")
        time.sleep(4)  # several of the switch's connection attempts
        assert dump(ovs, "br-tun") == []
        assert "br-tun connected" not in agent.log().rsplit("---- start", 1)[-1]
        assert "is_connected        : false" in ovs.vsctl("list", "Controller")
        log = agent.log().rsplit("---- start", 1)[-1]
        assert ("a switch failed the TLS handshake (connection refused): ssl.SSLCertVerificationError: "
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed") in log
        assert "Traceback" not in log
        assert "tlsv1 alert unknown ca" in (ovs.rundir / "ovs-vswitchd.log").read_text()
    finally:
        agent.stop()


def test_tls_needs_all_three_files() -> None:
    result = brtun("run", str(CONFIGS / "example.yaml"), "--host", HOST, "--ssl-key", "/nonexistent")
    assert result.returncode == 2 and "TLS needs all three" in result.stderr


def test_a_switch_that_is_disconnected_during_a_change_gets_the_whole_difference_on_reconnect(
        agent: AgentProcess, tmp_path: Path) -> None:
    """br-tun's connection is cut (`bridge/reconnect`, the agent's socket renamed away meanwhile) and a
    change applied meanwhile: br-tun keeps exactly its old pipeline, nothing half done, and on
    reconnect gets every difference at once."""
    ovs = agent.ovs
    data = with_net3(raw_config())
    del data["networks"]["net2"]
    data["hosts"]["compute1"]["ofports"].pop("vxlan-c0a8640c")
    for host in data["hosts"].values():
        host["ports"] = [p for p in host["ports"] if p["network"] != "net2"]
        host.get("local_vlans", {}).pop("net2", None)
    data["hosts"]["compute1"]["local_vlans"]["net3"] = 3  # VLAN 2 changing network would need br-tun
    new = write(tmp_path / "new.yaml", data)
    old = ours_without_learned(ovs)
    listener = Path(agent.listen_target.removeprefix("unix:"))
    away = listener.with_name("away.sock")
    listener.rename(away)  # the agent still listens; the switch cannot reconnect until it is back
    try:
        ovs.run("ovs-appctl", "bridge/reconnect", "br-tun")
        agent.wait_for_log("br-tun disconnected")
        data["hosts"]["compute1"]["local_vlans"]["net3"] = 2  # net2's VLAN: unsafe without br-tun
        unsafe = brtun("apply", str(write(tmp_path / "unsafe.yaml", data)), "--socket", str(agent.control_socket))
        assert unsafe.returncode == 2 and "local VLAN 2 would change network while br-tun is not connected" \
            in unsafe.stderr
        applied = brtun("apply", str(new), "--socket", str(agent.control_socket))
        assert applied.returncode == 0, applied.stderr
        assert ours_without_learned(ovs) == old  # all of the old pipeline, none of the new
        assert "vxlan-c0a8640c" not in ovs.vsctl("list-ports", "br-tun")  # the database part is done
    finally:
        away.rename(listener)
    cut = time.monotonic()
    wait_until(lambda: ours_without_learned(ovs) == desired(new), timeout=30, what="the whole new pipeline")
    print(f"reconnected and reconciled {time.monotonic() - cut:.1f} s after the cut ended (the switch's backoff)")
    assert agent.log().count("br-tun connected") == 2
    assert not [line for line in dump(ovs, "br-tun") if "0x1388" in line]  # net2, learned flow included
