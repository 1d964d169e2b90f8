"""The agent's config parser: untrusted text read in a child process, bounded in time and memory.

A config sent over the control socket (`validate`, `apply`, `edit`) or read
on SIGHUP is text from outside.  flows.yamlsource bounds what it may ask of
YAML, but parsing is still CPU work, and the agent's hub runs the switches'
connections on the same thread: a megabyte of YAML would make both switches
wait (and drop the connection past their inactivity probe).  So the agent
hands the text to a child process (`python -m controller.sandbox`), waits
for its answer without holding the hub, and gets back the validated Config:

- the child's address space is limited to MEMORY bytes (RLIMIT_AS), so a
  parse that would need more fails inside the child (its stderr goes
  nowhere: what hostile text makes it say is not the agent's log);
- each request has SECONDS of wall time; a child that takes longer is
  killed (by its PID) and a fresh one started for the next request;
- the answer is unpickled with only the config's own classes allowed, so
  even a child that hostile input had taken over could not make the agent
  run anything.

The child stays up between requests (starting Python and importing the
config code costs about 100 ms; `brtun apply` to ten hosts takes 45), and
one request is served at a time.
"""

from __future__ import annotations

import collections
import gc
import io
import logging
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from flows import edits
from flows.checker import ConfigError
from flows.config import Config, InvalidConfig

LOG = logging.getLogger("brtun.sandbox")
SECONDS = 10.0  # wall time for one request
MEMORY = 1 << 30  # the child's address space
MAX_REPLY = 256 << 20  # a Config of 100,000 flows pickles to a few MiB
_FRAME = struct.Struct("!Q")
_CACHE = 4  # configs kept by their text: `validate` then `apply` of one text parses it once


class Refused(RuntimeError):
    """The text could not be read within the bounds (or the child failed); nothing was parsed."""


class _Unpickler(pickle.Unpickler):
    """Only the config's value classes, and the few standard ones a YAML value may be."""

    ALLOWED = {("flows.config", name) for name in ("Config", "Options", "Network", "Host", "Port")} | {
        ("flows.yamlsource", "HugeNumber"), ("datetime", "datetime"), ("datetime", "date"),
        ("datetime", "timezone"), ("datetime", "timedelta"), ("builtins", "set"), ("builtins", "frozenset")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the parser child sent {module}.{name}, which is not a config value")
        return super().find_class(module, name)


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


class Sandbox:
    """The parent's side: `parse` and `edit`, each bounded; safe to call from any hub thread."""

    def __init__(self, seconds: float = SECONDS, memory: int = MEMORY) -> None:
        self.seconds = seconds
        self.memory = memory
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # green under eventlet (controller.hub)
        self._cache: collections.OrderedDict[str, Config] = collections.OrderedDict()
        self.restarts = 0

    # ----- the requests --------------------------------------------------------
    def parse(self, text: str) -> Config:
        """The validated Config of `text`; InvalidConfig with its errors, or Refused."""
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        kind, value = self._ask(("parse", text))
        if kind == "invalid":
            raise InvalidConfig([ConfigError(*error) for error in value])
        if kind != "config" or not isinstance(value, Config):
            raise Refused(f"the parser child answered {kind!r}")
        self._cache[text] = value
        while len(self._cache) > _CACHE:
            self._cache.popitem(last=False)
        return value

    def edit(self, text: str, host: str, name: str, args: dict[str, Any]) -> str:
        """flows.edits.apply_edit, in the child; EditError for an edit that cannot apply."""
        kind, value = self._ask(("edit", text, host, name, args))
        if kind == "edit-error":
            raise edits.EditError(str(value))
        if kind != "text" or not isinstance(value, str):
            raise Refused(f"the parser child answered {kind!r}")
        return value

    def start(self) -> None:
        """Start the child now, so that the first request does not wait for Python to start."""
        with self._lock:
            self._running()

    def close(self) -> None:
        with self._lock:
            self._stop()

    # ----- the child -------------------------------------------------------------
    def _ask(self, request: tuple[Any, ...]) -> tuple[str, Any]:
        with self._lock:
            child = self._running()
            assert child.stdin is not None and child.stdout is not None
            deadline = time.monotonic() + self.seconds
            try:
                _send(child.stdin.fileno(), pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL), deadline)
                reply = _receive(child.stdout.fileno(), deadline)
            except TimeoutError:
                self._stop()
                raise Refused(f"reading it took longer than {self.seconds:g} s; refused") from None
            except (OSError, EOFError):
                try:
                    code = child.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    code = None
                self._stop()
                raise Refused(f"the parser child ended while reading it (exit {code}; it has "
                              f"{self.memory >> 20} MiB); refused") from None
            try:
                kind, value = _loads(reply)
            except Exception as error:
                self._stop()
                raise Refused(f"the parser child's answer is not a config: {error}") from None
            if kind == "memory":
                self._stop()  # a MemoryError may leave it in no state to go on
                raise Refused(f"reading it needs more than {self.memory >> 20} MiB; refused")
            return str(kind), value

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self._stop()
        self._child = subprocess.Popen([sys.executable, "-m", "controller.sandbox", str(self.memory)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       close_fds=True,
                                       start_new_session=True)  # a ^C at a terminal is the agent's
        assert self._child.stdin is not None and self._child.stdout is not None
        for stream in (self._child.stdin, self._child.stdout):
            os.set_blocking(stream.fileno(), False)
        self.restarts += 1
        return self._child

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)  # our own child, by its PID
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            LOG.error("the parser child %d did not go after SIGKILL", child.pid)


def _send(fd: int, payload: bytes, deadline: float) -> None:
    data = memoryview(_FRAME.pack(len(payload)) + payload)
    while data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        _, writable, _ = select.select([], [fd], [], remaining)
        if writable:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                continue


def _receive(fd: int, deadline: float) -> bytes:
    head = _read(fd, _FRAME.size, deadline)
    (length,) = _FRAME.unpack(head)
    if length > MAX_REPLY:
        raise OSError(f"an answer of {length} bytes")
    return _read(fd, length, deadline)


def _read(fd: int, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        try:
            chunk = os.read(fd, min(size, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the parser child closed its end")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# ----- the child's side ------------------------------------------------------------

def _serve(request: tuple[Any, ...]) -> tuple[str, Any]:
    from flows.config import parse_config

    kind = request[0]
    if kind == "parse":
        try:
            return "config", parse_config(request[1])
        except InvalidConfig as error:
            return "invalid", [(e.path, e.reason, e.line) for e in error.errors]
    if kind == "edit":
        _, text, host, name, args = request
        try:
            return "text", edits.apply_edit(text, host, name, args)
        except edits.EditError as error:
            return "edit-error", str(error)
    return "unknown", kind


def main(argv: list[str]) -> int:
    memory = int(argv[0]) if argv else MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return 0  # the agent closed its end
        request = pickle.loads(stdin.read(_FRAME.unpack(head)[0]))  # from the agent, our parent
        try:
            reply = pickle.dumps(_serve(request), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            request = None  # let go of what the parse held, then say so
            gc.collect()
            reply = pickle.dumps(("memory", None))
        except RecursionError:
            reply = pickle.dumps(("invalid", [("(file)", "nested too deeply to read", None)]))
        stdout.write(_FRAME.pack(len(reply)) + reply)
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
