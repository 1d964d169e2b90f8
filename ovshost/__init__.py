"""The processes of a host and the files that find them, without Mininet.

A private Open vSwitch in its own network namespace (`privateovs`), the
datapath choice (`datapath`), a brtun agent process (`agentproc`), pidfiles
and stopping by PID (`pids`), a running testbed's state directory
(`state`), and a scratch br-tun for live replays (`scratch`).

May import: flows (and the standard library). Never controller,
mininet_topos or Mininet: both the agent's tools (controller/) and the
testbeds (mininet_topos/) build on this package.
"""
