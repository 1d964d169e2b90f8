"""A running testbed's state directory: what it made, so anything can find it and `down` can undo it.

/run/brtun/testbeds/NAME/state.json lists, as soon as each exists, the
network namespaces, the daemons (by pidfile), each simulated host's run
directory and agent address.  It is written before and during the build,
so `brtun testbed down NAME` cleans up after a crash too: it stops every
recorded daemon by PID and deletes every recorded namespace, and nothing
else (no `mn -c`, no killing by name).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ovshost import pids
from ovshost.agentproc import CONTROL_SOCKET

_SAVING = threading.RLock()  # State.save and the changes it records, from any thread

STATE_ROOT = Path("/run/brtun/testbeds")
# Stop order: agents first (they would otherwise see their switch go, or their server), then Neutron's
# servers from the API down to the database, then the rest.
STOP_ORDER = ("agent", "neutron-api", "neutron-rpc-server", "rabbitmq", "epmd", "mariadb", "iperf3", "dnsmasq",
              "udhcpc", "ovs-vswitchd", "ovsdb-server")


@dataclass
class Daemon:
    what: str  # one of STOP_ORDER
    pidfile: str
    marker: str  # text its command line must contain for the PID to be ours (a pidfile of the PID alone)
    host: str = ""
    group: bool = False  # it leads a process group of its own: stop the group (ovshost.pids)
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL (neutron-rpc-server ignores SIGTERM)


@dataclass
class HostState:
    name: str
    role: str
    netns: str
    rundir: str
    local_ip: str
    agent_listen: str
    agent_log: str

    @property
    def control_socket(self) -> Path:
        """Where this host's agent listens for `brtun apply/state/edit` (AgentProcess.control_socket)."""
        return Path(self.rundir) / CONTROL_SOCKET


@dataclass
class TestbedState:
    name: str
    directory: str
    config: str = ""
    kind: str = "seed"
    status: str = "building"
    created: float = field(default_factory=time.time)
    creator_pid: int = field(default_factory=os.getpid)
    datapath_type: str = "netdev"
    namespaces: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    hosts: dict[str, HostState] = field(default_factory=dict)
    vms: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {host, network, ip, mac}
    # with --neutron: where its API and bus are, and the IDs Neutron gave the testbed's networks and ports
    neutron: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.directory) / "state.json"

    def save(self) -> None:
        """Atomically, so a crash mid-write never leaves half a state behind; one writer at a time (a
        testbed starts neutron-server's daemons in a thread while it builds the hosts)."""
        with _SAVING:
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
            temporary.replace(self.path)

    def add_namespace(self, name: str) -> None:
        with _SAVING:
            self.namespaces.append(name)
            self.save()

    def add_daemon(self, daemon: Daemon) -> None:
        with _SAVING:
            self.daemons.append(daemon)
            self.save()


class NoTestbed(LookupError):
    pass


def create(name: str, kind: str) -> TestbedState:
    directory = STATE_ROOT / name
    if (directory / "state.json").exists():
        raise FileExistsError(f"testbed {name} is already up (or crashed): run `brtun testbed down {name}` first")
    directory.mkdir(parents=True, exist_ok=True)
    state = TestbedState(name, str(directory), kind=kind)
    state.save()
    return state


def load(name: str) -> TestbedState:
    path = STATE_ROOT / name / "state.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise NoTestbed(f"no testbed named {name} is up (none in {STATE_ROOT})") from None
    raw["daemons"] = [Daemon(**d) for d in raw.get("daemons", [])]
    raw["hosts"] = {k: HostState(**v) for k, v in raw.get("hosts", {}).items()}
    return TestbedState(**raw)


def names() -> list[str]:
    if not STATE_ROOT.exists():
        return []
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/state.json"))


def find_host(host: str, testbed: str | None = None) -> tuple[TestbedState, HostState]:
    """A simulated host of a running testbed, by name (for other brtun commands)."""
    for name in [testbed] if testbed else names():
        state = load(name)
        if host in state.hosts:
            return state, state.hosts[host]
    raise NoTestbed(f"no running testbed has a host named {host}")


def namespace_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def down(state: TestbedState) -> list[str]:
    """Stop what the state lists and delete it; return what was done, line by line."""
    done = []
    rank = {what: i for i, what in enumerate(STOP_ORDER)}
    for daemon in sorted(state.daemons, key=lambda d: rank.get(d.what, len(rank))):
        if pids.stop(Path(daemon.pidfile), daemon.marker, daemon.grace, daemon.group):
            done.append(f"stopped {daemon.what} of {daemon.host or state.name}")
    for namespace in reversed(state.namespaces):
        if namespace_exists(namespace):
            subprocess.run(["ip", "netns", "del", namespace], check=False)
            done.append(f"deleted namespace {namespace}")
    shutil.rmtree(state.directory, ignore_errors=True)
    done.append(f"removed {state.directory}")
    return done
