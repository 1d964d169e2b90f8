"""Testbed lifecycle: `brtun testbed up/status/down`, and `down` after a killed `brtun demo`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovshost import pids
from ovshost import state as states
from tests.conftest import PROJECT
from tests.integration.conftest import require_environment
from tests.integration.helpers import brtun, wait_until

pytestmark = pytest.mark.integration
BRTUN = [sys.executable, "-m", "controller.cli"]


def leftovers(state: states.TestbedState) -> list[str]:
    """Anything of the testbed still on the machine: namespaces, processes, its directory."""
    found = [f"namespace {n}" for n in state.namespaces if states.namespace_exists(n)]
    found += [f"{d.what} pid" for d in state.daemons if pids.owned_pid(Path(d.pidfile), d.marker)]
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if state.directory.encode() in proc.read_bytes():
                found.append(f"process {proc.parent.name}")
        except OSError:
            continue
    if Path(state.directory).exists():
        found.append(f"directory {state.directory}")
    return found


def test_up_status_down(tmp_path: Path) -> None:
    require_environment()
    up = brtun("testbed", "up", "--hosts", "2")
    try:
        assert up.returncode == 0, up.stderr
        assert "testbed mesh is up" in up.stdout
        state = states.load("mesh")
        status = brtun("testbed", "status")
        assert "host1" in status.stdout and "daemons: 6/6 running" in status.stdout, status.stdout
        ping = subprocess.run(["ip", "netns", "exec", "vm1", "ping", "-c", "2", "-W", "1", "10.1.0.2"],
                              capture_output=True, text=True, check=False)
        assert ping.returncode == 0, ping.stdout
    finally:
        down = brtun("testbed", "down", "mesh")
    assert down.returncode == 0 and "testbed mesh is down" in down.stdout, down.stderr
    assert leftovers(state) == []
    assert "no testbed is up" in brtun("testbed", "status").stdout


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_down_after_a_killed_demo_leaves_no_namespace_bridge_or_process() -> None:
    require_environment()
    links_before = root_links()
    demo = subprocess.Popen([*BRTUN, "demo", "--cli"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=PROJECT, text=True)
    try:
        wait_until(lambda: "seed" in states.names() and states.load("seed").status == "up", timeout=60,
                   what="the demo's testbed to be up")
        time.sleep(1)  # the demo is running its checks: kill it in the middle
        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=10)
        state = states.load("seed")  # as the killed demo last wrote it
        assert len([d for d in state.daemons if pids.owned_pid(Path(d.pidfile), d.marker)]) >= 7
    finally:
        if demo.poll() is None:
            demo.kill()
    down = brtun("testbed", "down", "seed")
    assert down.returncode == 0, down.stderr
    assert leftovers(state) == []
    assert "seed" not in states.names()
    assert root_links() <= links_before  # no bridge or veth left in the root namespace


def test_up_refuses_when_a_namespace_it_needs_is_taken() -> None:
    require_environment()
    assert not states.namespace_exists("underlay"), "a testbed is up: this test needs the machine to itself"
    subprocess.run(["ip", "netns", "add", "underlay"], check=True)
    try:
        result = brtun("testbed", "up", "--hosts", "2")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "network namespace underlay already exists (another testbed?" in result.stderr
        assert "mesh" not in states.names() and not states.namespace_exists("host1")
    finally:
        subprocess.run(["ip", "netns", "del", "underlay"], check=False)


def in_groups(leaders: set[int]) -> list[str]:
    """Processes in the process groups these PIDs led (a daemon's workers, RabbitMQ's Erlang VM)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[2]) in leaders:
            found.append(f"process {stat.parent.name} in group {fields[2]}")
    return found


def test_down_after_a_killed_neutron_demo_stops_every_server_and_agent() -> None:
    """`brtun demo --neutron` killed: `down` stops MariaDB, RabbitMQ, the API, the RPC server (which ignores
    SIGTERM) and the agents by PID, their workers with them, and removes the server's data."""
    require_environment()
    demo = subprocess.Popen([*BRTUN, "demo", "--neutron", "--cli"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=PROJECT, text=True)
    try:
        wait_until(lambda: "seed" in states.names() and states.load("seed").status == "up", timeout=120,
                   what="the demo's testbed to be up")
        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=10)
        state = states.load("seed")
        servers = [d for d in state.daemons if d.group]
        assert sorted(d.what for d in servers) == ["epmd", "mariadb", "neutron-api", "neutron-rpc-server", "rabbitmq"]
        leaders = {pid for d in servers if (pid := pids.owned_pid(Path(d.pidfile), d.marker)) is not None}
        assert len(leaders) == 5 and in_groups(leaders)
    finally:
        if demo.poll() is None:
            demo.kill()
    down = brtun("testbed", "down", "seed")
    assert down.returncode == 0, down.stderr
    assert "stopped neutron-rpc-server" in down.stdout and "stopped rabbitmq" in down.stdout, down.stdout
    assert leftovers(state) == [] and in_groups(leaders) == []
    assert "seed" not in states.names()
