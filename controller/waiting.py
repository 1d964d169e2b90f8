"""A flag to wait on with a timeout, on either os-ken hub.

os-ken 4.2's `hub.Event.wait(timeout)` ignores the timeout on the native
hub (its Timeout cannot interrupt a blocking threading wait), so a waiter
would sleep until someone sets the event.  Waiting in short `hub.sleep`
steps works the same on eventlet (it yields) and on native threads.
"""

from __future__ import annotations

import time

from os_ken.lib import hub

FIRST_STEP = 0.0005  # seconds; doubles up to LAST_STEP, so a quick reply is seen quickly
LAST_STEP = 0.01


class Signal:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """True once set; False when `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        step = FIRST_STEP
        while not self._set:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            hub.sleep(min(step, remaining))
            step = min(step * 2, LAST_STEP)
        return True
