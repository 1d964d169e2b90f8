"""The canary: how many of our flows each table should hold, and when to count them again.

Reading back 50,000 flows to notice a wiped table would cost the switch a
second; asking for each table's count of our cookie costs it almost
nothing.  A table that holds fewer of our flows than the last reconcile
left there (wiped by hand, a restarted switch that reconnected before we
noticed) or more (a flow added behind our back) is repaired at once.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping

from flows.flow import Flow
from flows.tables import UCAST_TO_TUN


class Canary:
    """Each bridge's expected flow count per table, and the audit's schedule."""

    def __init__(self, interval: float) -> None:
        self._interval = interval  # seconds between two audits
        self._next = 0.0
        self._expected: dict[str, collections.Counter[int]] = {}

    def expect(self, bridge: str, desired: Iterable[Flow], held: Collection[object]) -> None:
        """After a reconcile: `desired` is installed, except the flows whose place a foreign flow `held`."""
        self._expected[bridge] = collections.Counter(f.table for f in desired if f.key not in held)

    def forget(self, bridge: str) -> None:
        """The switch refused the last change: nothing is known to expect until the retry."""
        self._expected.pop(bridge, None)

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self._interval
        return True

    def watched(self) -> list[tuple[str, list[int]]]:
        """The bridges to count, each with the tables to count in it."""
        return [(bridge, sorted(expected)) for bridge, expected in self._expected.items()]

    def drift(self, bridge: str, counts: Mapping[int, int]) -> tuple[str, str] | None:
        """None if `counts` (table -> our flows) is as expected; else (what differs, "wiped" or "changed").

        Table 20 may hold more: the switch learns MACs into it with our cookie."""
        expected = self._expected.get(bridge, collections.Counter())
        short = {t: (counts.get(t, 0), n) for t, n in expected.items()
                 if counts.get(t, 0) < n or (counts.get(t, 0) > n and t != UCAST_TO_TUN)}
        if not short:
            return None
        detail = ", ".join(f"table {t} holds {have} of our flows, {want} expected"
                           for t, (have, want) in sorted(short.items()))
        return detail, "wiped" if all(have == 0 for have, _ in short.values()) else "changed"
