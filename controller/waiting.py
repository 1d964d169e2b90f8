"""Flags to wait on with a timeout, on either os-ken hub.

os-ken 4.2's `hub.Event.wait(timeout)` ignores the timeout on the native
hub.  `threading.Event` does not: on the native hub it is a real thread
event, and after eventlet's full monkey-patching (controller.hub) it is a
green one, so a waiter wakes the moment the flag is set.

A flag set from a signal handler is different: the handler runs on the main
thread, in the middle of whatever that thread was doing, possibly inside the
very lock the event needs.  `PollingSignal` takes no lock: it is for the main
thread's own loop (the launcher), and is polled in short `hub.sleep` steps
(or `time.sleep` where no hub runs: `brtun run --no-switch` loads no os-ken).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FIRST_STEP = 0.0005  # seconds; doubles up to LAST_STEP, so a quick set is seen quickly
LAST_STEP = 0.01


class Signal:
    """Wakes its waiter at once; never set it from a signal handler of the waiting thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """True once set; False when `timeout` seconds pass first."""
        return self._event.wait(timeout)


class PollingSignal:
    """A lock-free flag for signal handlers; its waiter sees it within LAST_STEP."""

    def __init__(self, sleep: Callable[[float], object] | None = None) -> None:
        """`sleep`: how the waiter pauses; os-ken's hub.sleep unless given."""
        if sleep is None:
            from os_ken.lib import hub

            sleep = hub.sleep
        self._sleep = sleep
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        step = FIRST_STEP
        while not self._set:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._sleep(min(step, remaining))
            step = min(step * 2, LAST_STEP)
        return True
