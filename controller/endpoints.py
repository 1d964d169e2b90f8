"""Where the agent's switches connect (`brtun run --listen`) and the TLS files that guard TCP.

Plain values, importable by every command without loading os-ken (controller.cli builds
`brtun run`'s options from them; controller.listener serves them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Listen:
    """Where the bridges connect: a unix socket (the default: only root can reach it) or TCP."""

    kind: str  # unix | tcp
    path: str = ""  # unix
    host: str = ""  # tcp
    port: int = 0  # tcp

    @classmethod
    def parse(cls, text: str) -> Listen:
        """`unix:PATH`, `HOST:PORT` or `tcp:HOST:PORT`; ValueError otherwise."""
        if text.startswith("unix:"):
            path = text.removeprefix("unix:")
            if not path.startswith("/") or len(path.encode()) > 107:
                raise ValueError(f"{text!r}: a unix socket needs an absolute path of at most 107 bytes")
            return cls("unix", path=path)
        host, colon, port = text.removeprefix("tcp:").rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not unix:PATH or HOST:PORT (e.g. 127.0.0.1:6653)")
        return cls("tcp", host=host, port=int(port))

    def target(self, tls: bool) -> str:
        """The controller target the bridges are given (Open vSwitch's notation)."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'ssl' if tls else 'tcp'}:{host}:{self.port}"


def default_listen(host: str) -> Listen:
    """`brtun run`'s default: a unix socket in /run/brtun, named after the host."""
    return Listen("unix", path=f"/run/brtun/openflow-{host}.sock")


@dataclass(frozen=True)
class Tls:
    """The agent's key and certificate, and the CA that must have signed the switch's."""

    private_key: str
    certificate: str
    ca_certificate: str

    def problems(self) -> list[str]:
        return [f"{what}: cannot read {path}" for what, path in
                (("--ssl-key", self.private_key), ("--ssl-cert", self.certificate),
                 ("--ssl-ca-cert", self.ca_certificate)) if not os.access(path, os.R_OK)]


