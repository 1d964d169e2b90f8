"""The agent and the `brtun` commands: the top layer.

The per-host agent (`brtun run`: the os-ken app, the switch sessions, the
switch database, config changes, the control socket, metrics) and the
commands that inspect and change running agents and testbeds (`flows`,
`diff`, `trace`, `replay`, `apply`, `state`, `edit`).  `cli` is the `brtun`
entry point; it also registers mininet_topos's testbed commands.  Sockets,
processes and switches are driven from here; configs are read through
flows.config.load_config, the one loader of the pure layer.

May import: flows, ovshost, mininet_topos (what it needs of a testbed: its
spec and commands; Mininet itself loads only in the commands that build
one) and the agent's libraries (os-ken, eventlet, ovsdbapp,
prometheus_client), which no lower layer imports.
"""
