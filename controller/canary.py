"""The canary: what each bridge should hold, checked by content, and when to check again.

After each reconcile the canary knows exactly which of our flows the switch
holds: each desired flow's table, priority, timeouts, cookie and the raw
bytes of its match and instructions, as one byte string (flows.wire
`content_key`), the flows a foreign flow holds the place of left out.  An
audit reads the bridge back and compares each entry's same bytes (its
counters left out), without decoding a single entry:

- a key we expect that the switch does not report: a flow was deleted, or
  changed in place (its actions differ, so its key does), in any table,
  learned flows beside it or not;
- an entry with our cookie whose key we do not expect, and that is not a
  learned flow (table 20, priority 1, a hard timeout): a flow added, or
  changed, behind our back.

Either is repaired at once (the bridge is reconciled: read back, diff, one
bundle).  Learned flows and other cookies' flows are not the canary's.

Reading a bridge back costs the switch about 4 us a flow.  So a bridge's
content is checked every `interval` seconds while that costs at most DUTY
of the time (at 10,000 flows: every second), else as often as DUTY allows
(at 100,000 flows: about every 12 s); in between, each table's count of our
flows (one aggregate request per table, no flow read) still catches a wiped
table within `interval`.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping

from flows.flow import Flow
from flows.ofp import Unsupported
from flows.tables import PRIORITY_ENTRY, UCAST_TO_TUN
from flows.wire import CONTENT_HEAD, content_key

DUTY = 0.05  # the most of the time content checks may take, per bridge


class Canary:
    """Each bridge's expected content and flow count per table, and the audits' schedule."""

    def __init__(self, interval: float, duty: float = DUTY) -> None:
        self._interval = interval  # seconds between two audits
        self._duty = duty
        self._next = 0.0
        self._expected: dict[str, collections.Counter[int]] = {}
        # content hash -> table; None: a flow flows.wire cannot encode
        self._keys: dict[str, dict[int, int] | None] = {}
        self._next_content: dict[str, float] = {}
        self.last_content_seconds: dict[str, float] = {}

    def expect(self, bridge: str, desired: Iterable[Flow], held: Collection[object]) -> None:
        """After a reconcile: `desired` is installed, except the flows whose place a foreign flow `held`."""
        installed = [f for f in desired if f.key not in held] if held else list(desired)
        self._expected[bridge] = collections.Counter(f.table for f in installed)
        try:
            # Each content's hash (Python's, seeded per process) and table, not the content itself:
            # a hundred thousand byte strings would cost the agent ~2 MiB per 10,000 flows for as long
            # as it runs; two different contents hashing alike is a chance of about n^2 / 2^64.
            self._keys[bridge] = {hash(content_key(f.encoded.key)): f.table for f in installed}
        except (Unsupported, KeyError):
            self._keys[bridge] = None

    def forget(self, bridge: str) -> None:
        """The switch refused the last change: nothing is known to expect until the retry."""
        self._expected.pop(bridge, None)
        self._keys.pop(bridge, None)

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self._interval
        return True

    def watched(self) -> list[tuple[str, list[int]]]:
        """The bridges to audit, each with the tables to count in it."""
        return [(bridge, sorted(expected)) for bridge, expected in self._expected.items()]

    # ----- content ----------------------------------------------------------------
    def content_due(self, bridge: str, now: float) -> bool:
        return self._keys.get(bridge) is not None and now >= self._next_content.get(bridge, 0.0)

    def checked(self, bridge: str, started: float, finished: float) -> None:
        """A content check took from `started` to `finished`: the next one when DUTY allows."""
        took = finished - started
        self.last_content_seconds[bridge] = took
        self._next_content[bridge] = started + max(self._interval, took / self._duty) - self._interval / 2

    def content_drift(self, bridge: str, installed: Iterable[bytes], cookie: int) -> tuple[str, str] | None:
        """None if the switch holds exactly the flows of ours we expect (learned ones aside); else
        (what differs, per table, and "wiped" or "changed").  `installed`: each entry's
        flows.wire `entry_content`."""
        expected = self._keys.get(bridge)
        if expected is None:
            return None
        found: set[int] = set()
        extra: collections.Counter[int] = collections.Counter()
        for content in installed:
            digest = hash(content)
            if digest in expected:
                found.add(digest)
                continue
            table, priority, _idle, hard_timeout, flow_cookie = CONTENT_HEAD.unpack_from(content)
            if flow_cookie != cookie or (table == UCAST_TO_TUN and priority == PRIORITY_ENTRY and hard_timeout):
                continue  # another's flow, or one the switch learned
            extra[table] += 1
        if len(found) == len(expected) and not extra:
            return None
        missing = collections.Counter(table for digest, table in expected.items() if digest not in found)
        tables = sorted(set(missing) | set(extra))
        detail = ", ".join(
            f"table {t}: " + " and ".join(part for part in (
                f"{missing[t]} of our flows missing or changed" if missing[t] else "",
                f"{extra[t]} flows with our cookie that we did not write" if extra[t] else "") if part)
            for t in tables)
        wiped = not extra and all(missing[t] == self._expected.get(bridge, {}).get(t, 0) for t in tables)
        return f"content: {detail}", "wiped" if wiped else "changed"

    # ----- counts -------------------------------------------------------------------
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
