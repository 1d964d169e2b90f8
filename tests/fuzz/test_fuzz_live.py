"""The fuzz suite against a live agent: hostile control requests on its real socket, and a hostile
peer in br-tun's place sending mutated OpenFlow.  Root, a private Open vSwitch, a real agent.

Every request gets a JSON reply; every malformed message ends at most its own connection; the
agent never crashes, never logs a traceback, keeps br-int's connection and flows, answers `state`
throughout, and once the real br-tun is back it is brought exactly to the config."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from controller.control import read_reply, request
from ovshost.agentproc import AgentProcess
from tests.fuzz.conftest import TRIED, bounded, outcome
from tests.fuzz.test_fuzz_messages import requests
from tests.integration.helpers import brtun, dump, is_learned, wait_until
from tests.integration.test_fake_switch import Fake

pytestmark = pytest.mark.integration
HOST = "compute1"
PEER_SECONDS = 25.0  # how long the hostile peers talk to the agent
PEERS = ((1, 0.3), (2, 0.3), (3, 1.0))  # (seed, share of answers mutated)


def desired(agent: AgentProcess) -> list[str]:
    result = brtun("render", str(agent.config), "--host", HOST)
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())


def healthy(agent: AgentProcess) -> None:
    assert agent.running, agent.log()[-3000:]
    log = agent.log()
    assert "Traceback" not in log and "worker round failed" not in log, log[-4000:]


def send(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it stops reading an oversize request
            sock.sendall(data if data.endswith(b"\n") else data + b"\n")
        reply: dict[str, Any] = json.loads(read_reply(sock))
        return reply


def test_hostile_control_requests_on_the_live_socket(agent: AgentProcess) -> None:
    target = "control requests (live agent)"

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(requests())
    def one(data: bytes) -> None:
        with bounded(target, seconds=30):
            reply = send(agent.control_socket, data)
        assert isinstance(reply.get("ok"), bool), reply
        if not reply["ok"]:
            assert reply["errors"] and all(isinstance(error, str) and error for error in reply["errors"]), reply
        outcome(target, "accepted" if reply["ok"] else "refused")

    one()
    healthy(agent)
    state = request(agent.control_socket, {"op": "state"})
    assert state["bridges"]["br-tun"]["in_sync"] and state["bridges"]["br-int"]["in_sync"], state


def test_a_hostile_peer_in_br_tun_s_place(agent: AgentProcess) -> None:
    """br-tun's real switch is kept away (its socket path renamed, the bridge reconnected); three
    fakes, as root (who may connect), claim br-tun and answer the agent with mutated messages and
    send their own; br-int stays connected throughout."""
    ovs = agent.ovs
    int_before = dump(ovs, "br-int")
    listener = Path(agent.listen_target.removeprefix("unix:"))
    away = listener.with_name("away.sock")
    listener.rename(away)
    try:
        ovs.run("ovs-appctl", "bridge/reconnect", "br-tun")
        agent.wait_for_log("br-tun disconnected")
        fakes = [Fake(ovs, f"unix:{away}", "br-tun", PEER_SECONDS, user="root", mutate=peer) for peer in PEERS]
        started, answered = time.monotonic(), []
        while time.monotonic() - started < PEER_SECONDS:
            asked = time.monotonic()
            reply = request(agent.control_socket, {"op": "state"}, timeout=30)
            answered.append(time.monotonic() - asked)
            assert reply["bridges"]["br-int"]["connected"], reply
            time.sleep(0.5)
        results = [fake.result() for fake in fakes]
    finally:
        away.rename(listener)
    ovs.run("ovs-appctl", "bridge/reconnect", "br-tun")
    wait_until(lambda: [line for line in dump(ovs, "br-tun") if not is_learned(line)] == desired(agent), 60,
               "the real br-tun to be brought back to the config")
    assert dump(ovs, "br-int") == int_before
    connections = sum(r["attempts"].get("connected", 0) for r in results)
    messages = sum(sum(r["seen"].values()) for r in results)
    mutated = sum(r["seen"].get("mutated", 0) + r["seen"].get("sent unasked", 0) for r in results)
    TRIED["OpenFlow: hostile peers in br-tun's place (live agent)"] += mutated
    for result in results:
        for what, count in result["endings"].items():
            for _ in range(count):
                outcome("OpenFlow: hostile peers in br-tun's place (live agent)", f"connection {what}")
    print(f"{connections} connections, {messages} messages exchanged, {mutated} of them mutated or unasked; "
          f"state answered {len(answered)} times meanwhile, slowest {max(answered):.2f} s")
    assert connections >= 3 and mutated >= 20
    assert max(answered) < 10
    healthy(agent)
    log = agent.log()
    print("\n".join(sorted({line.split(": ", 1)[1][:150] for line in log.splitlines()
                            if "ended:" in line or "cannot read" in line or "conflict" in line})[:12]))
