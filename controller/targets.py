"""The agent's controller target in two spellings, so the switch can be made to connect at once.

A restarted agent otherwise waits for the switch: ovs-vswitchd retries a
lost controller after 1, 2, 4 and then every 8 s, and nothing cuts that
wait short (`ovs-appctl bridge/reconnect` ignores a connection in backoff).
A *new* target, though, is connected to at once.  `tcp:127.0.0.1:6653` and
`tcp:[127.0.0.1]:6653` name the same listener (as `unix:/run/x/s.sock` and
`unix:/run/x/./s.sock` name the same socket), so the agent swaps the
bridge's Controller row to the other spelling of its own target: the switch
connects within milliseconds, and since the bridge has a controller before
and after that one transaction, Open vSwitch keeps its flows (it flushes
them only when a bridge gains its first controller or loses its last).
Pure: no database here.
"""

from __future__ import annotations

DEFAULT_PORT = 6653  # what Open vSwitch uses when a tcp/ssl target names no port


def other_spelling(target: str) -> str | None:
    """The same listener written differently, or None when there is no second spelling."""
    scheme, _, rest = target.partition(":")
    if scheme == "unix" and rest:  # the same socket file, through `.` (brtun's default listener)
        directory, slash, name = rest.rpartition("/")
        if not slash:
            return f"unix:./{rest}"
        if directory == ".":
            return f"unix:{name}"
        if directory.endswith("/."):
            return f"unix:{directory[:-2]}/{name}"
        return f"unix:{directory}/./{name}"
    if scheme not in ("tcp", "ssl") or not rest:
        return None
    if rest.startswith("["):  # [host]:port or [host]
        host, _, port = rest[1:].partition("]")
        port = port.removeprefix(":")
        if not port:
            return f"{scheme}:[{host}]:{DEFAULT_PORT}"
        if ":" in host:  # IPv6 keeps its brackets; only the port can go
            return f"{scheme}:[{host}]" if port == str(DEFAULT_PORT) else None
        return f"{scheme}:{host}:{port}"
    host, _, port = rest.rpartition(":")
    if not host:  # tcp:HOST, the default port
        return f"{scheme}:[{rest}]:{DEFAULT_PORT}"
    return f"{scheme}:[{host}]:{port}"


def spellings(target: str) -> tuple[str, ...]:
    """Every spelling of the agent's target that counts as its own."""
    other = other_spelling(target)
    return (target,) if other is None else (target, other)
