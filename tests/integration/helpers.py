"""Helpers for integration tests: read a private switch, watch it independently of the agent."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ovshost.privateovs import PrivateOvs


def dump(ovs: PrivateOvs, bridge: str, *filters: str) -> list[str]:
    """The bridge's flows as the switch prints them, sorted, without statistics."""
    return sorted(ovs.ofctl("--no-stats", "dump-flows", bridge, *filters).splitlines())


def rendered(*argv: str) -> list[str]:
    """`brtun ARGS` output lines, sorted (the command run as a user would)."""
    from tests.conftest import PROJECT

    result = subprocess.run([sys.executable, "-m", "controller.cli", *argv], capture_output=True, text=True,
                            check=True, cwd=PROJECT)
    return sorted(result.stdout.splitlines())


def brtun(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`brtun ARGS` as a user runs it; the result, whatever the exit status."""
    from tests.conftest import PROJECT

    return subprocess.run([sys.executable, "-m", "controller.cli", *argv], capture_output=True, text=True,
                          cwd=PROJECT, timeout=timeout)


def is_learned(line: str) -> bool:
    """A dump-flows line written by table 10's learn action."""
    return "table=20, hard_timeout=" in line


class Pinger:
    """`ping` every `interval` seconds for `seconds`, in the background, ended by its own count."""

    def __init__(self, namespace: str, address: str, seconds: float, interval: float = 0.01) -> None:
        self.seconds = seconds
        count = int(seconds / interval)
        self._process = subprocess.Popen(["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-i", str(interval),
                                          "-c", str(count), "-W", "1", address],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(self) -> tuple[int, int]:
        """(sent, received) once the pings are done."""
        out, _ = self._process.communicate(timeout=self.seconds + 60)
        found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if found is None:
            raise AssertionError(f"ping printed no summary: {out}")
        return int(found.group(1)), int(found.group(2))


def wait_until(check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class FlowMonitor:
    """`ovs-ofctl monitor BRIDGE watch:!initial`: every flow change on the switch, whoever makes it."""

    def __init__(self, ovs: PrivateOvs, bridge: str = "br-tun") -> None:
        self.ovs = ovs
        self.bridge = bridge
        self.output = ""
        self._log = ovs.rundir / f"monitor-{bridge}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FlowMonitor:
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                ["ip", "netns", "exec", self.ovs.name, "ovs-ofctl", "-O", "OpenFlow13", "monitor",
                 self.bridge, "watch:!initial"], stdout=log, stderr=subprocess.STDOUT, env=self.ovs.env)
        wait_until(lambda: "FLOW_MONITOR reply" in self._log.read_text(), 10, "the flow monitor to start")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        time.sleep(0.3)  # let the last updates arrive
        assert self._process is not None
        self._process.terminate()
        self._process.wait(timeout=5)
        self.output = Path(self._log).read_text()

    @property
    def events(self) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if "event=" in line]

    @property
    def flow_mods(self) -> list[str]:
        """The events a controller caused: without the flows MAC learning writes and expires
        as traffic flows (table 20 with a hard timeout)."""
        return [event for event in self.events if "table=20 hard_timeout=" not in event]


def passes(result: Any) -> None:
    """A testbed check (mininet_topos.checks.Check) passed; its line is printed either way."""
    print(result.line())
    assert result.ok, result.line()


@contextlib.contextmanager
def running_testbed(config_path: Path, kind: str, hub: str = "eventlet", neutron: bool = False) -> Iterator[Any]:
    """A testbed built in this process from a config, taken down afterwards even on failure (`neutron`:
    driven by a real neutron-server, `brtun testbed up --neutron`)."""
    from flows.config import load_config
    from mininet_topos import spec
    from mininet_topos.topology import BuildOptions, Testbed
    from tests.integration.conftest import require_environment

    require_environment()
    config = load_config(str(config_path))
    built = Testbed(config_path, config, spec.testbed_spec(config, kind), BuildOptions(hub=hub, neutron=neutron),
                    kind=kind).up()
    try:
        yield built
    finally:
        built.close()
