"""Where the agent's switches connect, and who may: the OpenFlow listener, in os-ken's place.

A switch says which bridge it is (its datapath ID, in FEATURES_REPLY); it
does not prove it.  So brtun decides who may be a switch *before* the
OpenFlow handshake, from what the kernel knows about the peer:

- The default listener is a unix socket (`unix:PATH`; Open vSwitch connects
  to a controller target `unix:PATH` as it does to `tcp:`), created mode 0600
  by root: no other local user can even connect, in any network namespace,
  and the kernel reports the peer's user (SO_PEERCRED).
- On TCP (`--listen HOST:PORT`, for compatibility), the peer of a connection
  from this host is found in /proc/net/tcp, which gives the user that owns
  its socket; a peer that is not on this host is accepted only with TLS (its
  certificate then speaks for it).
- Either way only root and the agent's own user may be a switch: whoever
  else connects is refused before a byte of OpenFlow, logged and counted
  (`brtun_openflow_refused_total`).  Root could program the switch directly
  anyway.

A connection that passes is handed to os-ken's own connection handler, as
os-ken's listener would (on a unix socket, without os-ken's TCP_NODELAY,
which only TCP has).  The agent (controller.sessions) then keeps the first
connection of each bridge: a second one claiming the same datapath ID never
displaces it.

The accept loop itself cannot be stopped by its clients: at most
MAX_CONNECTIONS are open at once (the rest wait in the kernel's backlog), a
TLS handshake has HANDSHAKE_SECONDS, a failed accept (no file descriptor
left) is logged and retried.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from os_ken.lib import hub

from controller.endpoints import Listen, Tls
from controller.throttle import Throttle

LOG = logging.getLogger("brtun.listener")
MAX_CONNECTIONS = 16  # two bridges, their reconnects, and room to refuse strangers
BACKLOG = 32
HANDSHAKE_SECONDS = 5.0
RETRY = (0.05, 2.0)  # first and longest pause after a failed accept
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a connection, as far as the kernel says."""

    address: str  # for log lines
    uid: int | None  # None: not a process of this host (or gone already)
    pid: int | None = None

    def describe(self) -> str:
        who = "a peer not on this host" if self.uid is None else f"uid {self.uid}"
        return f"{who}{f' (pid {self.pid})' if self.pid else ''} at {self.address}"


class _UnixSocket:
    """A unix socket as os-ken's Datapath expects a TCP one: TCP options are not set on it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if level != socket.IPPROTO_TCP:
            self._sock.setsockopt(level, option, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Refusals:
    """How many connections were refused, by reason; logged through a Throttle."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._throttle = Throttle(LOG)

    def refuse(self, reason: str, text: str) -> None:
        self._count(reason)
        self._throttle.log(reason, logging.WARNING, "%s", text)


class OpenFlowListener:
    """Binds at once (so that a listener that cannot start stops the agent), serves when called
    (os-ken's OFPHandler spawns its controller object; `install` makes it this one)."""

    def __init__(self, listen: Listen, tls: Tls | None, count_refusal: Callable[[str], None]) -> None:
        self.listen = listen
        self.tls = tls
        self.allowed_uids = frozenset({0, os.geteuid()})
        self.refusals = Refusals(count_refusal)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)  # green under eventlet (controller.hub)
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None
        self._throttle = Throttle(LOG)

    # ----- setting up --------------------------------------------------------------
    def bind(self) -> None:
        if self.listen.kind == "unix":
            self._sock = _bind_unix(self.listen.path)
        else:
            family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.listen.host, self.listen.port))
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._sock.listen(BACKLOG)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3
            context.load_cert_chain(self.tls.certificate, self.tls.private_key)
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.tls.ca_certificate)
            self._ssl = context

    def install(self) -> None:
        """Be the listener os-ken's OFPHandler starts, instead of its own (TCP only, no checks)."""
        from os_ken.controller import ofp_handler

        ofp_handler.OpenFlowController = lambda: self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            if self.listen.kind == "unix":
                _unlink_socket(self.listen.path)

    # ----- serving ---------------------------------------------------------------
    def __call__(self) -> None:
        pause = RETRY[0]
        while self._sock is not None:
            self._slots.acquire()
            try:
                conn, address = self._sock.accept()
            except OSError as error:
                self._slots.release()
                if self._sock is None:
                    return
                self._accept_failed(error, pause)
                hub.sleep(pause)
                pause = min(pause * 2, RETRY[1])
                continue
            except BaseException:
                self._slots.release()
                raise
            pause = RETRY[0]
            hub.spawn(self._serve, conn, address)

    def _accept_failed(self, error: OSError, pause: float) -> None:
        number = error.errno or 0
        self._throttle.log(("accept", number), logging.ERROR, "OpenFlow listener: cannot accept a connection "
                           "(%s: %s); retrying in %.2f s", errno.errorcode.get(number, str(number)),
                           error.strerror or error, pause)

    def _serve(self, conn: socket.socket, address: Any) -> None:
        from os_ken.controller.controller import datapath_connection_factory

        try:
            peer = self.peer(conn, address)
            if peer.uid is None and self._ssl is None:
                self.refusals.refuse("unproven", f"refused an OpenFlow connection from {peer.describe()}: without "
                                     "TLS only a switch on this host, running as root, may connect")
                conn.close()
                return
            if peer.uid is not None and peer.uid not in self.allowed_uids:
                self.refusals.refuse("user", f"refused an OpenFlow connection from {peer.describe()}: only root "
                                     f"and uid {os.geteuid()} (this agent's user) may be a switch")
                conn.close()
                return
            sock: Any = conn
            if self._ssl is not None:
                sock = self._handshake(conn, peer)
                if sock is None:
                    return
            elif self.listen.kind == "unix":
                sock = _UnixSocket(conn)
            try:
                datapath_connection_factory(sock, peer.address)
            except Exception as error:  # a malformed message from the peer ends its connection, not the agent
                LOG.warning("OpenFlow connection from %s ended: %s: %s", peer.describe(), type(error).__name__,
                            str(error)[:200])
        except Exception:
            LOG.exception("OpenFlow connection failed")
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            self._slots.release()

    def _handshake(self, conn: socket.socket, peer: Peer) -> Any:
        assert self._ssl is not None
        try:
            conn.settimeout(HANDSHAKE_SECONDS)
            sock = self._ssl.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            sock.do_handshake()
            return sock
        except (ssl.SSLError, OSError) as error:
            self.refusals.refuse("tls", f"a switch failed the TLS handshake (connection refused): "
                                 f"{type(error).__module__}.{type(error).__name__}: {error} ({peer.describe()})")
            conn.close()
            return None

    def peer(self, conn: socket.socket, address: Any) -> Peer:
        """The kernel's word on who connected: SO_PEERCRED on a unix socket, /proc/net/tcp on TCP."""
        if self.listen.kind == "unix":
            pid, uid, _gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
            return Peer(f"unix:{self.listen.path}", uid, pid)
        host, port = address[0], address[1]
        local = conn.getsockname()
        return Peer(f"{host}:{port}", tcp_owner((host, port), (local[0], local[1])))


def tcp_owner(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid that owns the socket at `peer` connected to `local`, if it is a socket of this host
    (of this network namespace: /proc/net is the reader's); None otherwise."""
    want = (_proc_address(peer), _proc_address(local))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if len(fields) > 7 and (fields[1], fields[2]) == want:
                        return int(fields[7])
        except OSError:
            continue
    return None


def _proc_address(address: tuple[str, int]) -> str:
    """An address as /proc/net/tcp{,6} writes it: the IP's 32-bit words in host order, hex; the port, hex."""
    host, port = address
    if ":" in host:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, host))
        return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
    return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def _bind_unix(path: str) -> socket.socket:
    """A unix socket at `path`, mode 0600 (root's): a stale one left by a killed agent is replaced,
    one another agent answers on is not."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody listens: left by an agent that was killed
            else:
                raise OSError(errno.EADDRINUSE, f"{path}: another agent is listening for OpenFlow here")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return sock


def _unlink_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
