"""A fake switch claims br-tun's and br-int's datapath IDs (issue 18, attack 1), run as `nobody`
inside the host's namespace, before the real switch connects and after: it never takes a bridge.
Afterwards the agent still repairs both bridges and applies a change; flows are exactly the
config's throughout.  Root, who may be a switch, gets a conflict: refused, logged, counted, and the
agent stays on the real switch, also once the fake has gone.

Each test: a private Open vSwitch, a real agent, real sockets; the fake is
tests/integration/fakeswitch.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIGS
from tests.integration.helpers import brtun, dump, is_learned, wait_until
from tests.integration.test_control import scrape

pytestmark = pytest.mark.integration
HOST = "compute1"
DPIDS = {"br-tun": 0xB01, "br-int": 0x1000000000000B01}  # example.yaml's compute1
FAKE = (Path(__file__).parent / "fakeswitch.py").read_text()
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")


class Fake:
    """fakeswitch.py in the host's namespace, as `nobody` (or root), for `seconds`."""

    def __init__(self, ovs: PrivateOvs, target: str, bridge: str, seconds: float, user: str = "nobody",
                 mutate: tuple[int, float] | None = None) -> None:
        as_user = NOBODY if user == "nobody" else ()
        extra = ("--mutate", str(mutate[0]), str(mutate[1])) if mutate is not None else ()
        self.bridge = bridge
        self.seconds = seconds
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", ovs.name, *as_user, "/usr/bin/python3", "-I", "-c", FAKE, target,
             hex(DPIDS[bridge]), str(seconds), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict[str, Any]:
        out, err = self._process.communicate(timeout=self.seconds + 30)
        assert self._process.returncode == 0, err
        summary: dict[str, Any] = json.loads(out)
        print(f"fake {self.bridge}: {summary}")
        return summary


def write_config(path: Path, net3: bool = False) -> Path:
    data: dict[str, Any] = yaml.safe_load((CONFIGS / "example.yaml").read_text())
    if net3:
        data["networks"]["net3"] = {"type": "gre", "segmentation_id": 3003}
        data["hosts"]["compute1"]["ports"].append({"network": "net3", "mac": "fa:16:3e:00:03:01", "ip": "10.3.0.11"})
        data["hosts"]["network"]["ports"].append({"network": "net3", "mac": "fa:16:3e:00:03:04", "ip": "10.3.0.2"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def desired(config: Path) -> list[str]:
    result = brtun("render", str(config), "--host", HOST)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "brtun.yaml")


@pytest.fixture
def agent_process(private_ovs: PrivateOvs, config: Path, request: pytest.FixtureRequest) -> Iterator[AgentProcess]:
    process = AgentProcess(private_ovs, config, HOST, listen=getattr(request, "param", ""))
    try:
        yield process
    finally:
        process.stop()


def still_the_real_switch(agent: AgentProcess, config: Path, tmp_path: Path) -> None:
    """0 effect: flows as the config says; the agent repairs both bridges and applies a change."""
    ovs = agent.ovs
    assert [line for line in dump(ovs, "br-tun") if not is_learned(line)] == desired(config)
    for bridge, table in (("br-tun", "table=22"), ("br-int", "table=23")):
        before = dump(ovs, bridge)
        ovs.ofctl("del-flows", bridge, table)
        wait_until(lambda b=bridge, f=before: dump(ovs, b) == f, 10, f"{bridge} {table} to be repaired")
    new = write_config(tmp_path / "net3.yaml", net3=True)
    applied = brtun("apply", str(new), "--socket", str(agent.control_socket))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert dump(ovs, "br-tun") == desired(new)
    state = brtun("state", "--socket", str(agent.control_socket))
    assert "br-tun: connected" in state.stdout and "in sync" in state.stdout and "DIFFERENT" not in state.stdout
    metrics = scrape(ovs)
    for bridge in DPIDS:
        assert metrics[("brtun_switch_connections_total", (("bridge", bridge),))] == 1
        assert metrics[("brtun_switch_connected", (("bridge", bridge),))] == 1
    log = agent.log()
    assert "disconnected" not in log and "Traceback" not in log


def test_nobody_cannot_reach_the_default_unix_socket_before_or_after_the_switch_connects(
        agent_process: AgentProcess, config: Path, tmp_path: Path) -> None:
    agent = agent_process
    target = agent.listen_target
    assert target.startswith("unix:")
    # before: the fakes are already trying when the agent starts, and go on for a while after
    fakes = [Fake(agent.ovs, target, bridge, seconds=12) for bridge in DPIDS]
    time.sleep(0.5)
    agent.start()
    agent.wait_in_sync()
    socket_mode = Path(target.removeprefix("unix:")).stat().st_mode & 0o777
    assert socket_mode == 0o600
    results = [fake.result() for fake in fakes]
    for result in results:
        assert "connected" not in result["attempts"] and not result["seen"]
        assert result["attempts"].get("errno 13 (Permission denied)", 0) > 10  # tried, all along
    # after: again, once everything is up
    late = [Fake(agent.ovs, target, bridge, seconds=3) for bridge in DPIDS]
    for fake in late:
        result = fake.result()
        assert set(result["attempts"]) == {"errno 13 (Permission denied)"}
    still_the_real_switch(agent, config, tmp_path)
    assert "refused an OpenFlow connection" not in agent.log()  # they never got as far as the agent


@pytest.mark.parametrize("agent_process", ["127.0.0.1:6653"], indirect=True)
def test_on_tcp_nobody_is_refused_before_the_handshake_before_or_after_the_switch_connects(
        agent_process: AgentProcess, config: Path, tmp_path: Path) -> None:
    agent = agent_process
    target = "127.0.0.1:6653"
    fakes = [Fake(agent.ovs, target, bridge, seconds=12) for bridge in DPIDS]
    time.sleep(0.5)
    agent.start()
    agent.wait_in_sync()
    for fake in fakes:
        result = fake.result()
        assert result["attempts"].get("connected", 0) > 3  # TCP lets anyone connect ...
        assert "features_request" not in result["seen"] and "hello" not in result["seen"]  # ... not talk
    late = [Fake(agent.ovs, target, bridge, seconds=3) for bridge in DPIDS]
    for fake in late:
        assert "features_request" not in fake.result()["seen"]
    log = agent.log()
    assert "refused an OpenFlow connection from uid 65534" in log
    assert "only root and uid 0 (this agent's user) may be a switch" in log
    refused = scrape(agent.ovs)[("brtun_openflow_refused_total", (("reason", "user"),))]
    print(f"{refused:.0f} connections from nobody refused; "
          f"{sum(1 for line in log.splitlines() if 'refused an OpenFlow' in line)} log lines")
    assert refused > 6
    still_the_real_switch(agent, config, tmp_path)


@pytest.mark.parametrize("agent_process", ["", "127.0.0.1:6653"], indirect=True, ids=["unix", "tcp"])
def test_a_second_connection_claiming_a_connected_bridge_is_a_conflict_and_changes_nothing(
        agent_process: AgentProcess, config: Path, tmp_path: Path) -> None:
    """Root may connect (it could program the switch anyway); still, a claim does not displace
    the established connection, and when the claimant leaves the agent is where it was."""
    agent = agent_process
    agent.start()
    agent.wait_in_sync()
    ovs = agent.ovs
    before = (dump(ovs, "br-tun"), dump(ovs, "br-int"))
    fakes = [Fake(ovs, agent.listen_target.removeprefix("tcp:"), bridge, seconds=3, user="root") for bridge in DPIDS]
    for fake in fakes:
        result = fake.result()
        assert result["seen"].get("features_request", 0) >= 1  # it said it was the bridge ...
        assert "flow_mod" not in result["seen"] and "multipart_request" not in result["seen"]  # ... not used
        assert result["endings"].get("closed by the agent", 0) >= 1
    assert (dump(ovs, "br-tun"), dump(ovs, "br-int")) == before
    log = agent.log()
    for bridge, dpid in DPIDS.items():
        assert f"claims {bridge}'s datapath ID {dpid:#x} while {bridge} is connected; refused" in log
    metrics = scrape(ovs)
    conflicts = {bridge: metrics[("brtun_switch_conflicts_total", (("bridge", bridge),))] for bridge in DPIDS}
    print(f"conflicts counted: {conflicts}")
    assert all(count >= 1 for count in conflicts.values())
    still_the_real_switch(agent, config, tmp_path)
