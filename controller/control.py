"""The agent's control socket: one JSON request per connection, one JSON reply.

A unix socket in the agent's run directory: file permissions guard it, and
unlike an abstract socket or a TCP port it is reachable from every network
namespace (the testbed's hosts are namespaces).  A request is one JSON object
on one line, at most MAX_REQUEST bytes; anything else gets an error reply and
changes nothing.  The client side (`request`) is what `brtun` uses.

Nothing a client does can take the socket away: at most MAX_CONNECTIONS are
served at once (the rest wait in the kernel's backlog, holding none of the
agent's file descriptors); a request must arrive whole within
REQUEST_SECONDS, however slowly its bytes trickle in, and its reply be taken
within REPLY_SECONDS; an accept that fails (no file descriptor left, say) is
logged and retried, never the end of the loop.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.throttle import Throttle

LOG = logging.getLogger("brtun.control")
MAX_REQUEST = 1 << 20  # a config of thousands of ports fits; a runaway client does not
MAX_CONNECTIONS = 32  # served at once; each may hold a request of MAX_REQUEST bytes
REQUEST_SECONDS = 10.0  # from accept to the request's last byte
REPLY_SECONDS = 30.0  # for the client to take its reply
BACKLOG = 64
ACCEPT_RETRY = (0.05, 2.0)  # first and longest pause after a failed accept
CONNECT_SECONDS = 10.0  # how long a client waits for room in a full backlog

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(RuntimeError):
    """The agent could not be reached, or answered with something that is not a reply."""


def decode_request(data: bytes) -> dict[str, Any]:
    """The request in `data`, or ValueError saying what is wrong with it."""
    if len(data) > MAX_REQUEST:
        raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    try:
        request = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("request is not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"request is not JSON: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise ValueError("request is nested too deeply to be one") from None
    if not isinstance(request, dict):
        raise ValueError(f"request must be a JSON object, not {type(request).__name__}")
    if not isinstance(request.get("op"), str):
        raise ValueError('request needs "op", a string')
    return request


class RequestTimeout(ValueError):
    pass


def _read_line(conn: socket.socket, deadline: float) -> bytes:
    """The request's line, all of it before `deadline` (time.monotonic), at most MAX_REQUEST bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout(f"no whole request in {REQUEST_SECONDS:.0f} s")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise RequestTimeout(f"no whole request in {REQUEST_SECONDS:.0f} s") from None
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    return b"".join(chunks)


class ControlServer:
    """Serves `handler` on a unix socket; each connection in its own hub thread, at most
    MAX_CONNECTIONS at once."""

    def __init__(self, path: str, handler: Handler, max_connections: int = MAX_CONNECTIONS) -> None:
        self.path = path
        self.handler = handler
        self._sock: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(max_connections)  # green under eventlet (controller.hub)
        self._throttle = Throttle(LOG)  # a client can make each kind of line, not a flood of them
        self.accept_errors = 0

    def start(self) -> None:
        from os_ken.lib import hub

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path):
            if _answers(self.path):
                raise ControlError(f"{self.path}: another agent is answering on this control socket")
            os.unlink(self.path)  # left by an agent that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # only root (the owner) may steer the agent
        try:
            sock.bind(self.path)
        finally:
            os.umask(old_umask)
        sock.listen(BACKLOG)
        self._sock = sock
        hub.spawn(self._accept_loop)
        LOG.info("control socket %s", self.path)

    def _accept_loop(self) -> None:
        from os_ken.lib import hub

        pause = ACCEPT_RETRY[0]
        while self._sock is not None:
            self._slots.acquire()  # a free slot first: beyond it, connections wait in the backlog
            try:
                conn, _ = self._sock.accept()
            except OSError as error:
                self._slots.release()
                if self._sock is None:
                    return  # stopped
                self._accept_failed(error, pause)
                hub.sleep(pause)
                pause = min(pause * 2, ACCEPT_RETRY[1])
                continue
            except BaseException:
                self._slots.release()
                raise
            pause = ACCEPT_RETRY[0]
            hub.spawn(self._serve, conn)

    def _accept_failed(self, error: OSError, pause: float) -> None:
        self.accept_errors += 1
        number = error.errno or 0
        self._throttle.log(("accept", number), logging.ERROR, "control socket: cannot accept a connection (%s: %s; "
                           "%d failures so far); retrying in %.2f s", errno.errorcode.get(number, str(number)),
                           error.strerror or error, self.accept_errors, pause)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                reply = self._answer(conn)
                try:
                    conn.settimeout(REPLY_SECONDS)
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    LOG.debug("control client went away before its reply")
        except Exception:  # nothing a client does may end the agent or leak the slot
            LOG.exception("control connection failed")
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> dict[str, Any]:
        try:
            request = decode_request(_read_line(conn, time.monotonic() + REQUEST_SECONDS))
        except (ValueError, OSError) as error:
            reply: dict[str, Any] = {"ok": False, "errors": [f"malformed request: {error}"]}
            self._malformed(reply["errors"][0])
            return reply
        try:
            return self.handler(request)
        except Exception as error:  # a bug must not take the agent down
            LOG.exception("control request %s failed", request.get("op"))
            return {"ok": False, "errors": [f"internal error: {error}"]}

    def _malformed(self, message: str) -> None:
        self._throttle.log("malformed", logging.WARNING, "control socket: %s", message[:300])

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            Path(self.path).unlink(missing_ok=True)


def _answers(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            probe.connect(path)
        return True
    except OSError:
        return False


def read_reply(sock: socket.socket) -> bytes:
    """Everything up to the reply's newline (or the agent closing the connection)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _connect(sock: socket.socket, path: str, timeout: float) -> None:
    """Connect, waiting while the agent's backlog is full (it is serving MAX_CONNECTIONS already)."""
    deadline = time.monotonic() + min(timeout, CONNECT_SECONDS)
    pause = 0.01
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise ControlError(f"{path}: the agent is busy (its connection backlog stayed full for "
                                   f"{min(timeout, CONNECT_SECONDS):.0f} s)") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def request(path: str | Path, payload: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Send one request to an agent and return its reply (raises ControlError)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            _connect(sock, str(path), timeout)
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = read_reply(sock)
    except OSError as error:
        raise _unreachable(path, error, timeout) from None
    return _reply(path, data)


def request_all(payloads: Mapping[str, tuple[str | Path, dict[str, Any]]],
                timeout: float = 120) -> dict[str, dict[str, Any] | ControlError]:
    """One request to each of many agents at once (name -> its socket and payload), from this
    thread: name -> its reply, or the ControlError that says why there is none.

    A change reaches ten agents in the time of the slowest, as with a thread per agent, without
    starting ten threads on a machine whose cores the agents themselves need: 0.5 ms of CPU per
    round to ten agents against 1.8 ms with a thread each (the agents' CPU is P3's floor)."""
    results: dict[str, dict[str, Any] | ControlError] = {}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for name, (path, payload) in payloads.items():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                _connect(sock, str(path), timeout)  # waits only while the agent's listen backlog is full
                sock.setblocking(False)
            except OSError as error:
                sock.close()
                results[name] = _unreachable(path, error, timeout)
                continue
            except ControlError as error:
                sock.close()
                results[name] = error
                continue
            out = json.dumps(payload).encode() + b"\n"
            selector.register(sock, selectors.EVENT_WRITE, _Exchange(name, path, out))
        while selector.get_map():
            ready = selector.select(deadline - time.monotonic())
            if not ready:
                for key in list(selector.get_map().values()):
                    exchange = key.data
                    results[exchange.name] = ControlError(f"{exchange.path}: no reply in {timeout:.0f} s")
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                break
            for key, _ in ready:
                exchange, sock = key.data, key.fileobj
                try:
                    done = exchange.step(sock, selector)
                except OSError as error:
                    results[exchange.name] = _unreachable(exchange.path, error, timeout)
                    done = True
                if done:
                    selector.unregister(sock)
                    sock.close()
                    if exchange.name not in results:
                        try:
                            results[exchange.name] = _reply(exchange.path, exchange.received)
                        except ControlError as error:
                            results[exchange.name] = error
    return {name: results[name] for name in payloads}


class _Exchange:
    """One request of `request_all`: the bytes still to send, then the reply as it arrives."""

    def __init__(self, name: str, path: str | Path, out: bytes) -> None:
        self.name, self.path, self._out, self.received = name, path, out, b""

    def step(self, sock: Any, selector: selectors.BaseSelector) -> bool:
        """Send or read what the socket allows; True once the reply is complete."""
        if self._out:
            self._out = self._out[sock.send(self._out):]
            if not self._out:
                selector.modify(sock, selectors.EVENT_READ, self)
            return False
        chunk = sock.recv(65536)
        self.received += chunk
        return not chunk or self.received.endswith(b"\n")


def _unreachable(path: str | Path, error: OSError, timeout: float) -> ControlError:
    if isinstance(error, FileNotFoundError):
        return ControlError(f"{path}: no control socket (is the agent running?)")
    if isinstance(error, ConnectionRefusedError):
        return ControlError(f"{path}: nobody answers (the agent is gone; its socket was left)")
    if isinstance(error, TimeoutError):
        return ControlError(f"{path}: no reply in {timeout:.0f} s")
    return ControlError(f"{path}: {error.strerror or error}")


def _reply(path: str | Path, data: bytes) -> dict[str, Any]:
    """The reply in `data`, or ControlError."""
    try:
        reply = json.loads(data)
    except json.JSONDecodeError:
        raise ControlError(f"{path}: the agent's reply is not JSON: {data[:200]!r}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError(f"{path}: not a reply: {data[:200]!r}")
    return reply
