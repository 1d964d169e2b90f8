"""Small tools the checks use inside a testbed's namespaces: run, capture, send raw frames.

Every process started here is either waited for, bounded by a timeout, or
recorded with a pidfile in the testbed state so `down` can stop it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ovshost.state import Daemon, TestbedState


def netns(namespace: str, *argv: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


class Capture:
    """tcpdump in a namespace for the duration of a `with` block; `.lines` afterwards.

    Its output goes to a file, not a pipe: a pipe nobody reads fills after 64 KiB and
    tcpdump, blocked on it, would drop every packet after that."""

    def __init__(self, namespace: str, interface: str, expression: str = "", limit_seconds: float = 20) -> None:
        self.namespace = namespace
        self.argv = ["ip", "netns", "exec", namespace, "timeout", str(limit_seconds), "tcpdump", "-l", "-n", "-e",
                     "-i", interface, *expression.split()]
        self.lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._output: Any = None

    def __enter__(self) -> Capture:
        self._output = tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen(self.argv, stdout=self._output, stderr=subprocess.PIPE, text=True)
        assert self._process.stderr is not None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # tcpdump says when it listens
            line = self._process.stderr.readline()
            if "listening on" in line or not line:
                break
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        time.sleep(0.5)
        assert self._process is not None
        self._process.terminate()
        self._process.communicate(timeout=5)
        self._output.seek(0)
        self.lines = [line for line in self._output.read().splitlines() if line.strip()]
        self._output.close()


def ping(namespace: str, address: str, count: int = 5, interval: float = 0.2) -> tuple[int, float | None]:
    """(replies, average RTT in ms)."""
    out = netns(namespace, "ping", "-c", str(count), "-i", str(interval), "-W", "1", address, timeout=30).stdout
    received = re.search(r"(\d+) received", out)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
    return (int(received.group(1)) if received else 0), (float(rtt.group(1)) if rtt else None)


def tcp_connects(namespace: str, address: str, port: int, timeout: float = 2) -> bool:
    code = (f"import socket\ntry:\n socket.create_connection(('{address}', {port}), timeout={timeout}).close()\n"
            " print('open')\nexcept OSError as e:\n print('closed', e)")
    return netns(namespace, "python3", "-c", code, timeout=timeout + 5).stdout.startswith("open")


def iperf3_server(state: TestbedState, namespace: str, port: int) -> Path:
    """A one-shot iperf3 server, daemonised with a pidfile recorded in the state."""
    pidfile = Path(state.directory) / f"iperf3-{namespace}-{port}.pid"
    state.add_daemon(Daemon("iperf3", str(pidfile), str(pidfile), namespace))  # recorded first: a crash
    netns(namespace, "iperf3", "-s", "-1", "-D", "-p", str(port), "--pidfile", str(pidfile), check=True)
    deadline = time.monotonic() + 5
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    return pidfile


def iperf3_gbits(namespace: str, address: str, port: int, seconds: int = 2) -> tuple[float | None, str]:
    result = netns(namespace, "iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J",
                   "--connect-timeout", "3000", timeout=seconds + 20)
    try:
        data = json.loads(result.stdout)
        return data["end"]["sum_received"]["bits_per_second"] / 1e9, ""
    except (ValueError, KeyError):
        return None, result.stdout[-300:] + result.stderr[-300:]


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_request(sender_mac: str, sender_ip: str, target_ip: str, vlan: int | None = None) -> bytes:
    """A broadcast ARP who-has frame (optionally 802.1Q tagged)."""
    tag = b"" if vlan is None else b"\x81\x00" + vlan.to_bytes(2, "big")
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac_bytes(sender_mac) + ipaddress.IPv4Address(sender_ip).packed
           + b"\x00" * 6 + ipaddress.IPv4Address(target_ip).packed)
    return b"\xff" * 6 + mac_bytes(sender_mac) + tag + b"\x08\x06" + arp


def send_frame(namespace: str, interface: str, frame: bytes) -> None:
    code = ("import socket,sys\ns=socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            f"s.bind(('{interface}', 0))\ns.send(bytes.fromhex('{frame.hex()}'))")
    netns(namespace, "python3", "-c", code, check=True)


def send_gre(namespace: str, destination: str, key: int, inner: bytes) -> None:
    """A GRE packet with a key carrying an Ethernet frame, from a raw IP socket."""
    header = b"\x20\x00\x65\x58" + key.to_bytes(4, "big")  # K bit; Transparent Ethernet Bridging
    family = "AF_INET6" if ":" in destination else "AF_INET"
    code = (f"import socket\ns=socket.socket(socket.{family}, socket.SOCK_RAW, 47)\n"
            f"s.sendto(bytes.fromhex('{(header + inner).hex()}'), ('{destination}', 0))")
    netns(namespace, "python3", "-c", code, check=True)
