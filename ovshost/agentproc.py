"""A brtun agent process for one simulated host, started and stopped by PID.

The agent runs inside the host's namespace against the host's private
Open vSwitch (`PrivateOvs`), exactly as `brtun run` runs on a real host;
its PID comes from its own pidfile, its log goes to the run directory.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovshost import pids
from ovshost.privateovs import PrivateOvs

BRTUN = [sys.executable, "-m", "controller.cli"]
PROJECT = Path(__file__).resolve().parent.parent
# The agent's files, in its host's run directory.
PIDFILE = "brtun-agent.pid"
CONTROL_SOCKET = "brtun-agent.sock"  # where `brtun apply/state/edit` look for a testbed's agents
OPENFLOW_SOCKET = "brtun-openflow.sock"  # where the host's bridges connect (`brtun run --listen unix:PATH`)
LOG = "brtun-agent.log"


def openflow_target(rundir: Path) -> str:
    """Where a host's agent listens for its bridges, in its run directory."""
    return f"unix:{rundir / OPENFLOW_SOCKET}"


class AgentError(RuntimeError):
    pass


@dataclass
class AgentProcess:
    ovs: PrivateOvs
    config: Path
    host: str
    hub: str = "eventlet"
    listen: str = ""  # `brtun run --listen`; default: unix:RUNDIR/brtun-openflow.sock, which only root reaches
    datapath_type: str = "netdev"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    extra_args: tuple[str, ...] = ()  # more `brtun run` options (TLS, metrics port)
    neutron: bool = False  # `config` is Neutron's agent config: brtun run --neutron CONFIG

    @property
    def pidfile(self) -> Path:
        return self.ovs.rundir / PIDFILE

    @property
    def listen_target(self) -> str:
        return self.listen or openflow_target(self.ovs.rundir)

    @property
    def control_socket(self) -> Path:
        return self.ovs.rundir / CONTROL_SOCKET

    @property
    def log_path(self) -> Path:
        return self.ovs.rundir / LOG

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def start(self, config: Path | None = None) -> None:
        if config is not None:
            self.config = config
        if self.running:
            raise AgentError(f"the agent of {self.host} is already running")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts} ----\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.ovs.name, *BRTUN, "run",
                 *(["--neutron", str(self.config)] if self.neutron else [str(self.config)]), "--host", self.host,
                 "--ovsdb", f"unix:{self.ovs.db_socket}", "--listen", self.listen_target, "--hub", self.hub,
                 "--datapath-type", self.datapath_type, "--pidfile", str(self.pidfile),
                 "--control-socket", str(self.control_socket), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=self.ovs.env, cwd=PROJECT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_log(self, text: str, timeout: float = 20, since_start: bool = True) -> str:
        """Wait until the log of the current run contains `text`; return that run's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            current = log.rsplit(f"---- start {self.starts} ----", 1)[-1] if since_start else log
            if text in current:
                return current
            if self.process is not None and self.process.poll() is not None:
                raise AgentError(f"the agent of {self.host} exited ({self.process.returncode}):\n{current}")
            time.sleep(0.05)
        raise AgentError(f"no {text!r} in the agent log of {self.host} after {timeout} s:\n{self.log()}")

    def wait_in_sync(self, timeout: float = 20) -> str:
        """Until both bridges have been reconciled once in this run."""
        self.wait_for_log("br-int: read", timeout)
        return self.wait_for_log("br-tun: read", timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Stop the agent by its PID (never by name); SIGKILL if it does not go."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        pids.stop(self.pidfile, str(self.config))  # a SIGKILLed agent leaves its pidfile
        self.pidfile.unlink(missing_ok=True)
        return code
