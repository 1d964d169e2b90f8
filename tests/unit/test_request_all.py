"""`request_all`: one request to many agents from one thread, each reply or the reason there is none."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from controller.control import ControlError, request_all


def _serve(path: Path, answer: bytes | None, received: list[dict[str, object]]) -> threading.Thread:
    """A one-shot agent: reads one request line, answers `answer` (None: hangs up without a reply)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    data += conn.recv(65536)
                received.append(json.loads(data))
                if answer is not None:
                    conn.sendall(answer[:3])  # a reply may arrive in pieces
                    conn.sendall(answer[3:])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_each_agent_gets_its_own_payload_and_each_answer_or_failure_comes_back_by_name(tmp_path: Path) -> None:
    received: list[dict[str, object]] = []
    big = "x" * 300_000  # more than a socket buffer: sent in several writes
    threads = [_serve(tmp_path / "a.sock", b'{"ok": true, "n": 1}\n', received),
               _serve(tmp_path / "b.sock", None, received),
               _serve(tmp_path / "c.sock", b'{"ok": true, "n": 3}\n', received)]
    replies = request_all({"a": (tmp_path / "a.sock", {"op": "config", "config": big}),
                           "b": (tmp_path / "b.sock", {"op": "config"}),
                           "gone": (tmp_path / "gone.sock", {"op": "config"}),
                           "c": (tmp_path / "c.sock", {"op": "state"})}, timeout=10)
    for thread in threads:
        thread.join(5)
    assert list(replies) == ["a", "b", "gone", "c"]
    assert replies["a"] == {"ok": True, "n": 1} and replies["c"] == {"ok": True, "n": 3}
    assert isinstance(replies["b"], ControlError) and "not JSON" in str(replies["b"])
    assert isinstance(replies["gone"], ControlError) and "no control socket" in str(replies["gone"])
    assert sorted(r["op"] for r in received) == ["config", "config", "state"]
    assert any(r.get("config") == big for r in received)


def test_an_agent_that_never_answers_times_out_without_holding_up_the_others(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(1)
    received: list[dict[str, object]] = []
    _serve(tmp_path / "a.sock", b'{"ok": true}\n', received)
    with silent:
        replies = request_all({"silent": (tmp_path / "silent.sock", {"op": "state"}),
                               "a": (tmp_path / "a.sock", {"op": "state"})}, timeout=0.5)
    assert replies["a"] == {"ok": True}
    assert isinstance(replies["silent"], ControlError) and "no reply" in str(replies["silent"])
