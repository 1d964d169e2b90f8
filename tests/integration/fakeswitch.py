"""A fake OpenFlow 1.3 switch that claims a datapath ID: the attacker of issue 18, attack 1.

Standard library only: the tests run it with the system's Python as any user (`nobody`),
inside a host's namespace, from its source text (`python3 -I -c SOURCE ...`), so it needs
nothing of the project and no file it could not read.

    fakeswitch TARGET DPID SECONDS [--mutate SEED RATE]

TARGET is unix:PATH or HOST:PORT.  Until SECONDS pass it connects (again and again: "before
the real switch connects" means it is already trying when the agent starts), says HELLO,
answers FEATURES_REQUEST with DPID, echoes, and answers port-desc, flow-stats, aggregate and
barrier requests as an empty switch would.  With --mutate, each answer is, with probability RATE,
first mangled by a seeded random byte mutation, and now and then a message of its own is sent
(the fuzz suite's hostile peer); a connection the agent leaves idle for IDLE seconds is closed
and made again.  It prints one JSON summary: each attempt's outcome and what the agent asked of it.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time

HEADER = struct.Struct("!BBHI")
OFP13 = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, FEATURES_REQUEST, FEATURES_REPLY = 0, 1, 2, 3, 5, 6
FLOW_MOD, MULTIPART_REQUEST, MULTIPART_REPLY, BARRIER_REQUEST, BARRIER_REPLY = 14, 18, 19, 20, 21
EXPERIMENTER = 4
MP_DESC, MP_FLOW, MP_AGGREGATE, MP_PORT_DESC = 0, 1, 2, 13
IDLE = 3.0  # seconds without a word from the agent before a mutating fake connects again


def connect(target: str) -> socket.socket:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        sock.connect(target[5:])
        return sock
    host, _, port = target.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=2)


def message(kind: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(OFP13, kind, 8 + len(body), xid) + body


def answer(kind: int, xid: int, body: bytes, dpid: int) -> bytes | None:
    """What an empty switch answers to the agent's message, if anything."""
    if kind == ECHO_REQUEST:
        return message(ECHO_REPLY, xid, body)
    if kind == FEATURES_REQUEST:
        return message(FEATURES_REPLY, xid, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0x4F, 0))
    if kind == BARRIER_REQUEST:
        return message(BARRIER_REPLY, xid)
    if kind == MULTIPART_REQUEST and len(body) >= 4:
        (part,) = struct.unpack_from("!H", body)
        if part == MP_AGGREGATE:
            return message(MULTIPART_REPLY, xid, struct.pack("!HH4xQQI4x", part, 0, 0, 0, 0))
        if part == MP_DESC:
            return message(MULTIPART_REPLY, xid, struct.pack("!HH4x", part, 0) + bytes(4 * 256 + 32))
        return message(MULTIPART_REPLY, xid, struct.pack("!HH4x", part, 0))
    return None


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of a few byte mutations, the header's length kept sometimes and broken sometimes."""
    data = bytearray(data)
    choice = rng.randrange(6)
    if choice == 0 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        if rng.random() < 0.5:
            struct.pack_into("!H", data, 2, min(len(data), 0xFFFF))
    elif choice == 2 and len(data) > 8:
        del data[rng.randrange(8, len(data)):]
        if rng.random() < 0.5:
            struct.pack_into("!H", data, 2, len(data))
    elif choice == 3:
        struct.pack_into("!H", data, 2, rng.choice([0, 1, 7, 8, 9, 0xFFFF, rng.randrange(0x10000)]))
    elif choice == 4:
        data[1] = rng.randrange(40)
    else:
        data = bytearray(HEADER.pack(OFP13, rng.randrange(40), 8 + 64, rng.randrange(1 << 32))
                         + bytes(rng.randrange(256) for _ in range(64)))
    return bytes(data)


def session(sock: socket.socket, dpid: int, deadline: float, seen: dict[str, int],
            rng: random.Random | None, rate: float) -> str:
    """Talk to the agent until it closes the connection or the time is up; how it ended."""
    sock.sendall(message(HELLO, 1))
    buf = b""
    heard = time.monotonic()
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if rng is not None and time.monotonic() - heard > IDLE:
                return "idle"
            if rng is not None and rng.random() < 0.3:  # something of its own, unasked
                try:
                    sock.sendall(mutate(message(rng.choice([ECHO_REQUEST, FEATURES_REPLY, MULTIPART_REPLY, 12]),
                                                rng.randrange(1 << 32), bytes(rng.randrange(80))), rng))
                    seen["sent unasked"] = seen.get("sent unasked", 0) + 1
                except OSError as error:
                    return f"reset: {error.strerror}"
            continue
        except OSError as error:
            return f"reset: {error.strerror}"
        if not chunk:
            return "closed by the agent"
        heard = time.monotonic()
        buf += chunk
        while len(buf) >= 8:
            _, kind, length, xid = HEADER.unpack_from(buf)
            if length < 8 or len(buf) < length:
                break
            body, buf = buf[8:length], buf[length:]
            name = {HELLO: "hello", FEATURES_REQUEST: "features_request", FLOW_MOD: "flow_mod",
                    MULTIPART_REQUEST: "multipart_request", BARRIER_REQUEST: "barrier_request",
                    EXPERIMENTER: "experimenter", ECHO_REQUEST: "echo_request"}.get(kind, f"type_{kind}")
            seen[name] = seen.get(name, 0) + 1
            reply = answer(kind, xid, body, dpid)
            if reply is not None:
                if rng is not None and rng.random() < rate:
                    reply = mutate(reply, rng)
                    seen["mutated"] = seen.get("mutated", 0) + 1
                try:
                    sock.sendall(reply)
                except OSError as error:
                    return f"reset: {error.strerror}"
    return "time up"


def main(argv: list[str]) -> int:
    target, dpid, seconds = argv[0], int(argv[1], 0), float(argv[2])
    rng = random.Random(int(argv[4])) if len(argv) > 5 and argv[3] == "--mutate" else None
    rate = float(argv[5]) if rng is not None else 0.0
    deadline = time.monotonic() + seconds
    attempts: dict[str, int] = {}
    seen: dict[str, int] = {}
    endings: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            sock = connect(target)
        except OSError as error:
            key = error.__class__.__name__ if error.errno is None else f"errno {error.errno} ({error.strerror})"
            attempts[key] = attempts.get(key, 0) + 1
            time.sleep(0.02)
            continue
        attempts["connected"] = attempts.get("connected", 0) + 1
        with sock:
            ending = session(sock, dpid, deadline, seen, rng, rate)
        endings[ending] = endings.get(ending, 0) + 1
        time.sleep(0.02)
    print(json.dumps({"attempts": attempts, "seen": seen, "endings": endings}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
