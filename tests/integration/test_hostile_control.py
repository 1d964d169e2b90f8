"""A hostile client of the control socket, against a real agent on a real switch (issue 18, attacks 2, 3, 5):
YAML bombs and slow configs sent to the agent, thousands of connections held open, file descriptors
run out, a request trickled in a byte at a time, JSON nested 500,000 deep, fields of the wrong type.
After each: the agent answers, both switches stayed connected, no flow changed, nothing is logged as
a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.control import MAX_CONNECTIONS, REQUEST_SECONDS, read_reply, request
from ovshost.agentproc import AgentProcess
from tests.conftest import CONFIGS
from tests.integration.helpers import FlowMonitor, dump, wait_until

pytestmark = pytest.mark.integration
HOST = "compute1"


def pid_of(agent: AgentProcess) -> int:
    return int(agent.pidfile.read_text())


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def state(agent: AgentProcess, timeout: float = 10) -> dict[str, Any]:
    return request(agent.control_socket, {"op": "state"}, timeout=timeout)


def raw(agent: AgentProcess, data: bytes, timeout: float = 30) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(agent.control_socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer: dict[str, Any] = json.loads(read_reply(sock))
        return answer


def undisturbed(agent: AgentProcess, before: tuple[list[str], list[str]]) -> None:
    """Both switches still connected on their first connection, the flows as they were, no traceback."""
    ovs = agent.ovs
    assert (dump(ovs, "br-tun"), dump(ovs, "br-int")) == before
    log = agent.log()
    assert "disconnected" not in log and log.count("br-tun connected") == 1 and log.count("br-int connected") == 1
    assert "Traceback" not in log, log[-3000:]
    reply = state(agent)
    assert reply["bridges"]["br-tun"]["in_sync"] and reply["bridges"]["br-int"]["in_sync"]


@contextlib.contextmanager
def held(path: Path, count: int, seconds: float) -> Iterator[list[socket.socket]]:
    """Up to `count` connections opened (non-blocking: once the agent's backlog is full, a connect
    fails at once) and held, each having sent half a request; closed afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 1024)), hard))
    opened: list[socket.socket] = []
    refused = 0
    deadline = time.monotonic() + seconds
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(path))
                sock.send(b'{"op": "sta')
                opened.append(sock)
            except OSError as error:
                sock.close()
                assert error.errno in (errno.EAGAIN, errno.ECONNREFUSED), error
                refused += 1
        print(f"{len(opened)} connections held, {refused} refused by the full backlog")
        yield opened
    finally:
        for sock in opened:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_20400_connections_held_open_do_not_take_the_socket(agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    pid = pid_of(agent)
    idle = open_fds(pid)
    with held(agent.control_socket, 20_400, 30) as connections:
        assert connections
        time.sleep(1)
        during = open_fds(pid)
        print(f"the agent's file descriptors: {idle} idle, {during} under load (at most {MAX_CONNECTIONS} served)")
        assert during <= idle + MAX_CONNECTIONS + 2
    started = time.monotonic()
    reply = state(agent)  # waits while the backlog of closed connections drains
    print(f"state answered {time.monotonic() - started:.3f} s after the load ended")
    assert reply["ok"] and time.monotonic() - started < 5
    wait_until(lambda: open_fds(pid) <= idle + 2, 15, "the agent to let go of the connections")
    undisturbed(agent, before)


def test_out_of_file_descriptors_the_accept_loop_logs_retries_and_recovers(agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    pid = pid_of(agent)
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + 3, limits[1]))
    try:
        with held(agent.control_socket, 200, 20):
            agent.wait_for_log("control socket: cannot accept a connection (EMFILE", 15)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    wait_until(lambda: bool(state(agent, timeout=5)["ok"]), 20, "the control socket to answer again")
    log = agent.log()
    failures = [line for line in log.splitlines() if "cannot accept a connection" in line]
    print(f"{len(failures)} log lines for the failed accepts: {failures[0].split('brtun.control: ')[1]}")
    assert len(failures) <= 3  # once per kind of failure in 10 s, not once per try
    undisturbed(agent, before)


def test_a_request_trickled_a_byte_at_a_time_is_cut_off_after_the_whole_request_deadline(
        agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REQUEST_SECONDS + 10)
        sock.connect(str(agent.control_socket))
        started = time.monotonic()
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in b'{"op": "state"}':
                sock.send(bytes([byte]))
                sent += 1
                if _readable(sock, 2.0):  # the agent answered (and closes): stop sending
                    break
        reply = json.loads(read_reply(sock))
        seconds = time.monotonic() - started
    print(f"{sent} bytes, one every 2 s: cut off after {seconds:.1f} s: {reply['errors'][0]}")
    assert not reply["ok"] and f"no whole request in {REQUEST_SECONDS:.0f} s" in reply["errors"][0]
    assert REQUEST_SECONDS - 0.5 <= seconds <= REQUEST_SECONDS + 3
    undisturbed(agent, before)


def _readable(sock: socket.socket, seconds: float) -> bool:
    import select

    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def test_json_nested_500000_deep_gets_a_reply_and_no_traceback(agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    reply = raw(agent, b'{"op": "validate", "config": ' + b"[" * 500_000 + b"]" * 500_000 + b"}\n")
    assert not reply["ok"] and "nested too deeply" in reply["errors"][0], reply
    reply = raw(agent, b"[" * 500_000 + b"\n")
    assert not reply["ok"] and "nested too deeply" in reply["errors"][0], reply
    undisturbed(agent, before)


def wrong_types() -> list[tuple[dict[str, Any], str]]:
    """(a request with one field of the wrong type, a piece of the expected error)."""
    config = (CONFIGS / "example.yaml").read_text()
    return [
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": 9},
          "dry_run": "no"}, "edit: 'dry_run' must be true or false, not a string"),
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": 9},
          "dry_run": 0}, "'dry_run' must be true or false, not a number"),
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": 9},
          "dry_run": None}, "'dry_run' must be true or false, not null"),
        ({"op": "edit", "edit": 7, "args": {}}, "'edit' must be a string, not a number"),
        ({"op": "edit", "edit": "add-network", "args": "name=n9"}, "'args' must be an object, not a string"),
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": "9"}},
         "argument 'segmentation_id' must be a whole number, not str '9'"),
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": True}},
         "argument 'segmentation_id' must be a whole number, not bool True"),
        ({"op": "edit", "edit": "add-network", "args": {"name": ["n9"], "type": "gre", "segmentation_id": 9}},
         "argument 'name' must be a string, not list"),
        ({"op": "edit", "edit": "add-port", "args": {"network": "net1", "mac": "fa:16:3e:00:09:09",
                                                     "host": {"compute2": 1}}}, "argument 'host' must be a string"),
        ({"op": "edit", "edit": "add-endpoint", "args": {"name": "c9", "local_ip": "192.168.100.19",
                                                         "tunnel_types": ["gre", 1]}}, "must be a list of strings"),
        ({"op": "edit", "edit": "add-network", "args": {"name": "n9", "type": "gre", "segmentation_id": 9,
                                                        "mtu": 1400}}, "unknown argument mtu"),
        ({"op": "apply", "config": config, "path": 5}, "'path' must be a string or null, not a number"),
        ({"op": "apply", "config": config, "edit": False}, "'edit' must be a string, not true/false"),
        ({"op": "validate", "config": [config]}, "'config' must be a string, not a list"),
        ({"op": "state", "verbose": True}, "state: unknown field verbose"),
        ({"op": "desired", "bridge": "br-ex"}, "'bridge' must be br-tun or br-int"),
    ]


def test_every_field_has_an_exact_type_and_a_wrong_one_changes_nothing(agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    with FlowMonitor(agent.ovs, "br-tun") as watch:
        for payload, message in wrong_types():
            reply = request(agent.control_socket, payload)
            assert not reply["ok"] and any(message in error for error in reply["errors"]), (payload, reply)
    assert watch.events == []
    assert state(agent)["config"]["edits"] == []
    undisturbed(agent, before)


def test_yaml_bombs_sent_to_the_agent_are_refused_at_once_and_stall_nothing(agent: AgentProcess) -> None:
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    laughs = "\n".join(["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                       + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"
    for what, text, message in [
            ("billion laughs", laughs, "billion laughs"),
            ("alias inside its anchor", "a: &a [*a]\n", "an alias refers to a collection it is inside of"),
            ("100,000 [", "[" * 100_000, "nested more than 32 deep"),
            ("an integer of 5,000 digits", (CONFIGS / "example.yaml").read_text().replace(
                "segmentation_id: 1001", "segmentation_id: " + "9" * 5000), "a number of 5,000 digits is outside"),
            ("a NUL", "networks: {}\x00", "binary data")]:
        started = time.monotonic()
        reply = request(agent.control_socket, {"op": "validate", "config": text}, timeout=30)
        seconds = time.monotonic() - started
        print(f"{what}: refused in {seconds * 1000:.0f} ms: {reply['errors'][0][:100]}")
        assert not reply["ok"] and any(message in error for error in reply["errors"]), (what, reply)
        assert seconds < 3
    undisturbed(agent, before)


def test_a_config_that_takes_seconds_to_read_leaves_the_switches_and_the_socket_served(
        agent: AgentProcess) -> None:
    """Nearly a mebibyte of YAML, 480,000 values: the parser child reads it for a second or more; the
    agent meanwhile answers `state` and keeps both switches' connections (the switch's inactivity
    probe would drop one that went unanswered for 5 s); then the config is rejected as invalid."""
    before = (dump(agent.ovs, "br-tun"), dump(agent.ovs, "br-int"))
    heavy = "networks: {}\nhosts: {}\ntestbed: {junk: [" + "1," * 480_000 + "1]}\n"
    assert len(heavy) < (1 << 20) - 1000
    import threading

    replies: list[dict[str, Any]] = []
    slow = threading.Thread(target=lambda: replies.append(
        request(agent.control_socket, {"op": "validate", "config": heavy}, timeout=60)))
    started = time.monotonic()
    slow.start()
    answered = []
    while slow.is_alive() and time.monotonic() - started < 30:
        asked = time.monotonic()
        assert state(agent, timeout=5)["bridges"]["br-tun"]["connected"]
        answered.append(time.monotonic() - asked)
    slow.join(30)
    seconds = time.monotonic() - started
    print(f"validate of {len(heavy) / 1e6:.2f} MB took {seconds:.1f} s; meanwhile {len(answered)} state requests, "
          f"slowest {max(answered) * 1000:.0f} ms")
    assert replies and not replies[0]["ok"], replies
    assert len(answered) >= 2 and max(answered) < 2
    undisturbed(agent, before)
