"""The fuzz suite (issue 18, deliverable 6): mutated configs, control requests and OpenFlow bytes.

Each target is bounded in count (hypothesis's max_examples), in time (a watchdog per input: an
input that takes longer than WATCHDOG seconds fails the test as a hang) and in memory (an input may
add MEMORY bytes of address space, then it fails with MemoryError); every outcome must be a
success or the module's own clear error, never another exception.  How many inputs each target
tried is printed at the end of the run (and CI's log keeps it).
"""

from __future__ import annotations

import collections
import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.integration.conftest import agent, private_ovs  # noqa: F401 (fixtures, for the live targets)

WATCHDOG = 5.0  # seconds one input may take
MEMORY = 1 << 30  # bytes of address space one input may add (a MemoryError beyond, not the machine's memory)
TRIED: collections.Counter[str] = collections.Counter()  # target -> inputs tried
OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


class Hang(AssertionError):
    pass


@contextlib.contextmanager
def bounded(target: str, seconds: float = WATCHDOG) -> Iterator[None]:
    """One input of `target`: counted, and failed as a hang if it takes longer than `seconds`."""
    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"{target}: one input took longer than {seconds} s")

    TRIED[target] += 1
    previous = signal.signal(signal.SIGALRM, alarm)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    room = _address_space() + MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (room if limits[1] == resource.RLIM_INFINITY else min(room, limits[1]),
                                            limits[1]))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, limits)
        signal.signal(signal.SIGALRM, previous)


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def outcome(target: str, what: str) -> None:
    OUTCOMES[target][what] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    terminalreporter.write_sep("-", "fuzz")
    for target, count in TRIED.items():
        seen = ", ".join(f"{n} {what}" for what, n in OUTCOMES[target].most_common())
        terminalreporter.write_line(f"{target}: {count:,} inputs ({seen})")
    terminalreporter.write_line(f"{sum(TRIED.values()):,} inputs in all; each a success or a clear error")
