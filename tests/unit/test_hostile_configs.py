"""Config files made to hang, exhaust or crash the loader: each is a clear error, quickly, from the
real `brtun check` (a subprocess, so a crash or a hang shows as one), and a 2,000-host config checks
in under 2 s (issue 18, attack 4)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from flows import yamlsource
from flows.config import InvalidConfig, parse_config
from tests.conftest import CONFIGS, PROJECT

EXAMPLE = (CONFIGS / "example.yaml").read_text()
SECONDS = 10  # a command that takes longer has hung, as far as this test is concerned


def laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each anchor a list of `width` aliases of the one before."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def indented(depth: int) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "x\n"


def junk(size: int, seed: int, alphabet: range = range(256)) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.choice(alphabet) for _ in range(size))


# (name, the file's bytes, a piece of the one error line)
HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    ("billion laughs", lambda: laughs().encode(), 'aliases expand to more than 1,000,000 values (a "billion laughs"?)'),
    ("billion laughs in a field", lambda: (EXAMPLE + "testbed:\n  " + laughs().replace("\n", "\n  ")).encode(),
     'aliases expand to more than 1,000,000 values (a "billion laughs"?)'),
    ("alias inside its anchor", lambda: b"a: &a [*a]\n", "an alias refers to a collection it is inside of"),
    ("mapping alias inside its anchor", lambda: b"a: &a {b: *a}\n", "an alias refers to a collection it is inside of"),
    ("merge key of itself", lambda: b"a: &a {<<: *a}\n", "an alias refers to a collection it is inside of"),
    ("alias chain nested deeper than allowed",
     lambda: ("a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [[[*a{i - 1}]]]\n" for i in range(1, 40))).encode(),
     "aliases nest more than 32 deep"),
    ("UTF-16 with a byte-order mark", lambda: EXAMPLE.encode("utf-16"), "UTF-16 byte-order mark"),
    ("UTF-16 without one", lambda: EXAMPLE.encode("utf-16-le"), "not UTF-8 text but UTF-16 or UTF-32 text"),
    ("UTF-32", lambda: EXAMPLE.encode("utf-32"), "UTF-32 byte-order mark"),
    ("Latin-1", lambda: ("# réseau de test\n" + EXAMPLE).encode("latin-1"), "not UTF-8 text: byte 0xe9"),
    ("binary junk", lambda: junk(65536, 1), "not UTF-8 text but binary data"),
    ("binary junk without NUL", lambda: junk(65536, 2, range(1, 256)), "not UTF-8 text"),
    ("control characters", lambda: b"networks: \x01\x02\x03\n", "not valid YAML"),
    ("flow nesting 1,000 deep", lambda: b"networks: " + b"[" * 1000 + b"]" * 1000, "nested more than 32 deep"),
    ("flow nesting 5,000 deep", lambda: b"networks: " + b"{a: " * 5000 + b"}" * 5000, "nested more than 32 deep"),
    ("100,000 [", lambda: b"[" * 100_000, "nested more than 32 deep"),
    ("block nesting 1,000 deep", lambda: indented(1000).encode(), "nested more than 32 deep"),
    ("compact sequences 3,000 deep", lambda: b"- " * 3000 + b"x\n", "nested more than 32 deep"),
    ("an integer of 4,301 digits", lambda: EXAMPLE.replace("segmentation_id: 1001", "segmentation_id: "
                                                           + "7" * 4301).encode(),
     "networks.net1.segmentation_id: a number of 4,301 digits is outside 1..4294967295"),
    ("an integer of 100,000 digits", lambda: EXAMPLE.replace("arp_responder: true}", "arp_responder: true, "
                                                             "learn_hard_timeout: " + "9" * 100_000 + "}").encode(),
     "options.learn_hard_timeout: a number of 100,000 digits is outside 1..65535"),
    ("a hexadecimal datapath ID of 50,000 digits",
     lambda: EXAMPLE.replace("datapath_id: 0xb01", 'datapath_id: "0x' + "f" * 50_000 + '"').encode(),
     "a hexadecimal number of 50,000 digits is outside 0x1..0xffffffffffffffff"),
    ("an integer key of 1,000 digits", lambda: EXAMPLE.replace("  net1:", "  " + "1" * 1000 + ":", 1).encode(),
     "a name is 1-64 letters"),
    ("an integer key of 10,000 digits", lambda: EXAMPLE.replace("  net1:", "  " + "1" * 10_000 + ":", 1).encode(),
     "not valid YAML"),  # YAML allows 1,024 characters for a key written without '?'

    ("an impossible date", lambda: b"networks: 2001-13-45\n", "YAML cannot read '2001-13-45'"),
    ("more than a million values", lambda: b"networks: [" + b"1," * 1_100_000 + b"1]\n",
     "more than 1,000,000 values"),
    ("10 MB", lambda: EXAMPLE.encode() + b"#" * (10 << 20), "10.0 MiB is more than a config may be (8 MiB)"),
]


@pytest.mark.parametrize(("name", "make", "message"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_config_is_one_clear_error_quickly(tmp_path: Path, name: str, make: Callable[[], bytes],
                                                     message: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(make())
    result, seconds, peak = check(path)
    print(f"{name}: exit {result.returncode} in {seconds:.2f} s, peak RSS {peak:.0f} MiB: "
          f"{result.stderr.splitlines()[0][:160] if result.stderr else ''}")
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert message in result.stderr, result.stderr[:2000]
    assert result.stderr.rstrip().endswith("nothing applied")
    assert seconds < 5, f"{name}: {seconds:.1f} s"
    assert peak < 200, f"{name}: {peak:.0f} MiB"


# The command runs under a small launcher that reaps it: a child forked from this (large) test process
# would count this process's pages in its own peak RSS until it execs.
_LAUNCHER = """
import os, resource, subprocess, sys
def bounded():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
child = subprocess.Popen(sys.argv[2:], preexec_fn=bounded)
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def check(path: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """`brtun check PATH` with at most 1 GiB of address space: its result, seconds and peak RSS (MiB),
    the peak measured by the launcher that reaped it (os.wait4), so that its own resource use is known."""
    out, err, peak = path.with_suffix(".out"), path.with_suffix(".err"), path.with_suffix(".peak")
    started = time.monotonic()
    argv = [sys.executable, "-c", _LAUNCHER, str(peak), sys.executable, "-m", "controller.cli", "check", str(path)]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=PROJECT, start_new_session=True)
    try:
        process.wait(timeout=SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # the launcher's own group: it and the command, nothing else
        process.wait()
        raise AssertionError(f"brtun check {path} still running after {SECONDS} s") from None
    seconds = time.monotonic() - started
    return (subprocess.CompletedProcess(argv, process.returncode, out.read_text(), err.read_text()),
            seconds, int(peak.read_text()) / 1024)


def test_the_limits_hold_in_process_too() -> None:
    """parse_config, as the agent's parser child and `brtun apply` call it: InvalidConfig, never
    another exception (RecursionError, MemoryError, ValueError from int())."""
    for name, make, message in HOSTILE:
        data = make()
        try:
            text = yamlsource.decode(data)
        except yamlsource.YamlError as error:
            assert message in str(error) or "MiB" in message, (name, error)
            continue
        with pytest.raises(InvalidConfig) as caught:
            parse_config(text)
        assert any(message in str(error) for error in caught.value.errors), (name, caught.value)


def test_aliases_that_stay_small_are_read_as_before() -> None:
    text = EXAMPLE + "testbed:\n  roles: &roles {compute1: compute, compute2: compute}\n  copy: *roles\n"
    config = parse_config(text)
    assert config.testbed["copy"] == config.testbed["roles"]


def test_a_utf8_byte_order_mark_is_harmless() -> None:
    assert parse_config(yamlsource.decode(b"\xef\xbb\xbf" + EXAMPLE.encode())).host_names


def test_a_2000_host_config_checks_in_under_2_seconds() -> None:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        import bigconfig
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    text = yaml.safe_dump(bigconfig.cloud(2000), default_flow_style=None, sort_keys=False, width=200)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        config = parse_config(text)
        runs.append(time.perf_counter() - started)
    print(f"2,000 hosts, 20,000 ports, 200 networks ({len(text) / 1e6:.1f} MB): parse and validate "
          f"{min(runs):.2f} s (best of 3; runs {', '.join(f'{r:.2f}' for r in runs)})")
    assert len(config.hosts) == 2000 and sum(len(h.ports) for h in config.hosts) == 20000
    assert min(runs) < 2.0


def test_2000_hosts_that_collide_or_pin_ofports_check_in_bounded_time() -> None:
    """Every endpoint with the same low 12 bits (every preferred ofport taken), then every host with
    an explicit ofport (each checked against the others): still linear in the hosts."""
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        import bigconfig
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    data = bigconfig.cloud(2000)
    for index, host in enumerate(data["hosts"].values()):
        host["local_ip"] = f"10.{index >> 4 & 0xFF}.{(index & 0xF) << 4}.1"  # each x.y.z.1 with z a multiple of 16
    for pinned in (False, True):
        if pinned:
            for host in data["hosts"].values():
                host["ofports"] = {"patch-int": 1, "gre-0b000001": 7}  # 11.0.0.1 is no host: wrong on each
        text = yaml.safe_dump(data, default_flow_style=None, sort_keys=False, width=200)
        started = time.perf_counter()
        try:
            parse_config(text)
            errors = 0
        except InvalidConfig as error:
            errors = len(error.errors)
        seconds = time.perf_counter() - started
        print(f"2,000 hosts, {'each with explicit ofports' if pinned else 'every preferred ofport colliding'}: "
              f"{errors} errors in {seconds:.2f} s")
        assert errors == (2000 if pinned else 0)
        assert seconds < 5
