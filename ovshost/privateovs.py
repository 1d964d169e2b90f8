"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) in its own network namespace.

Each simulated host runs its own switch daemons (docs/TESTBED.md: one userspace
datapath for all hosts cannot route their tunnels), with OVS_RUNDIR,
OVS_DBDIR and OVS_LOGDIR pointing at a private directory, so `ovs-vsctl`,
`ovs-ofctl` and `ovs-appctl` run through `PrivateOvs.run` reach this
instance and nothing else.  Daemons are stopped by the PIDs in their own
pidfiles, after checking that the PID still belongs to a process of this
instance: nothing is ever killed by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ovshost import pids

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovs-vswitchd", "ovsdb-server")  # stop order


class OvsError(RuntimeError):
    pass


class Appctl:
    """One connection to a daemon's unixctl socket (Open vSwitch's own Python client)."""

    def __init__(self, path: Path) -> None:
        from ovs.unixctl.client import UnixctlClient  # imports Open vSwitch's poller: only when used

        error, client = UnixctlClient.create(str(path))
        if error:
            raise OvsError(f"cannot connect to {path}: {os.strerror(error)}")
        self._client = client
        self.path = path

    def __call__(self, command: str, *argv: str) -> str:
        error, reply, result = self._client.transact(command, list(argv))
        if error:
            raise OvsError(f"{command} over {self.path}: {os.strerror(error)}")
        if reply is not None:  # the command's own error
            raise OvsError(f"{command}: {reply.strip()}")
        return str(result)

    def close(self) -> None:
        self._client.close()


@dataclass
class PrivateOvs:
    name: str  # also the namespace name
    rundir: Path
    vswitchd_args: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        private = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": private, "OVS_DBDIR": private, "OVS_LOGDIR": private}

    @property
    def db_socket(self) -> Path:
        return self.rundir / "db.sock"

    def _netns(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace, against this instance's switch."""
        result = subprocess.run(self._netns(argv), env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise OvsError(f"{self.name}: {' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
        return result

    def vsctl(self, *argv: str) -> str:
        return self.run("ovs-vsctl", "--timeout=10", *argv).stdout

    def ofctl(self, *argv: str) -> str:
        return self.run("ovs-ofctl", "-O", "OpenFlow13", *argv).stdout

    def start(self, create_namespace: bool = True, vswitchd_args: tuple[str, ...] = ()) -> None:
        """Start both daemons (detached, with pidfiles), in a new namespace unless told
        the namespace exists already (a Mininet node made it)."""
        if create_namespace:
            if Path(f"/run/netns/{self.name}").exists():
                raise OvsError(f"network namespace {self.name} already exists; is a previous run still up?")
            subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.run("ip", "link", "set", "lo", "up")
        db = self.rundir / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True, capture_output=True)
        self.run("ovsdb-server", str(db), f"--remote=punix:{self.db_socket}",
                 "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                 f"--pidfile={self.rundir / 'ovsdb-server.pid'}",
                 f"--log-file={self.rundir / 'ovsdb-server.log'}",
                 "-vconsole:off", "--detach", "--no-chdir")
        self.vsctl("--no-wait", "init")
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".", f"external_ids:system-id={self.name}")
        self.vswitchd_args = tuple(vswitchd_args)
        self._start_vswitchd()

    def _start_vswitchd(self) -> None:
        self.run("ovs-vswitchd", f"unix:{self.db_socket}",
                 f"--pidfile={self.rundir / 'ovs-vswitchd.pid'}",
                 f"--log-file={self.rundir / 'ovs-vswitchd.log'}",
                 "-vconsole:off", "--detach", "--no-chdir", *self.vswitchd_args)

    def restart_vswitchd(self) -> None:
        """Stop ovs-vswitchd (by its pidfile) and start it again: every flow is gone, the
        database (bridges, ports, controllers) stays, as after `systemctl restart` of the switch."""
        pids.stop(self.rundir / "ovs-vswitchd.pid", str(self.rundir))
        self._start_vswitchd()

    def appctl(self) -> Appctl:
        """A persistent unixctl connection to this instance's ovs-vswitchd: what `ovs-appctl` does,
        without starting a process per command (ofproto/trace 10x faster)."""
        pid = self.pid("ovs-vswitchd")
        if pid is None:
            raise OvsError(f"{self.name}: ovs-vswitchd is not running")
        return Appctl(self.rundir / f"ovs-vswitchd.{pid}.ctl")

    def pid(self, daemon: str) -> int | None:
        """The daemon's PID from its pidfile, if that process is still this instance's."""
        return pids.owned_pid(self.rundir / f"{daemon}.pid", str(self.rundir))

    def stop(self, delete_namespace: bool = True) -> None:
        """Stop the daemons we started (by pidfile), delete the namespace and the run directory."""
        for daemon in DAEMONS:
            pids.stop(self.rundir / f"{daemon}.pid", str(self.rundir))
        if delete_namespace and Path(f"/run/netns/{self.name}").exists():
            subprocess.run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.rundir, ignore_errors=True)

    def add_bridge(self, bridge: str, *settings: str, datapath: str = "netdev") -> None:
        self.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, f"datapath_type={datapath}", *settings)
