"""Log lines a hostile peer can cause, at most one per kind every few seconds.

A client that fails a thousand times a second (a refused fake switch, a malformed request, an
accept with no file descriptor left) must not become a thousand log lines a second: the first
of each kind is logged, the rest are counted and the count goes out with the next line.
"""

from __future__ import annotations

import logging
import time

SECONDS = 10.0


class Throttle:
    def __init__(self, logger: logging.Logger, seconds: float = SECONDS) -> None:
        self._logger = logger
        self._seconds = seconds
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def log(self, key: object, level: int, message: str, *args: object) -> bool:
        """Log `message % args` unless a line of this `key` went out less than `seconds` ago
        (then count it); True if it was logged."""
        now = time.monotonic()
        if now - self._last.get(key, -self._seconds) < self._seconds:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        suffix = f" ({held} more like it in the last {now - self._last[key]:.0f} s)" if held else ""
        self._last[key] = now
        self._logger.log(level, message + suffix, *args)
        return True
