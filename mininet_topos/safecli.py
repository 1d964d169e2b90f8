"""Mininet's CLI without the commands that kill processes by name.

Mininet's `iperf` helper runs `killall -9 iperf` and its xterm teardown
runs `pkill -9 -f`: across the whole machine, not just this testbed.
"""

from __future__ import annotations

from mininet.cli import CLI
from mininet.log import error


class SafeCLI(CLI):  # type: ignore[misc]
    prompt = "brtun> "

    def do_iperf(self, _line: str) -> None:
        """Disabled: Mininet's iperf kills every iperf on the machine. Use iperf3 in the VMs:
        vm2 iperf3 -s -1 -D -p 22 ; vm1 iperf3 -c 10.0.0.4 -p 22 (the security group admits tcp/22)"""
        error("iperf is disabled here (Mininet's helper runs killall); run iperf3 in the VMs, e.g.\n"
              "  vm2 iperf3 -s -1 -D -p 22\n  vm1 iperf3 -c 10.0.0.4 -p 22 -t 3\n")

    do_iperfudp = do_iperf

    def do_xterm(self, _line: str) -> None:
        """Disabled: Mininet tears xterms down with pkill -9 -f."""
        error("xterm is disabled here (Mininet tears it down with pkill -9 -f); use `ip netns exec NAME bash`\n")

    do_x = do_xterm
    do_gterm = do_xterm
