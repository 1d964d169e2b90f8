"""Taking over a br-tun another agent programmed (Neutron's): whose flows become brtun's.

`brtun run --takeover` names the cookies (Neutron's agent picks a random one
at each start), or takes every cookie it finds on the bridge at its first
read-back.  The set is fixed per bridge at that first read, so a flow
someone adds later under yet another cookie stays foreign and untouched.
What a taken-over flow becomes is flows.diff's rule: replaced in place where
a desired flow belongs, kept when learned, deleted otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flows.flow import Flow

LOG = logging.getLogger("brtun.agent")


class Takeover:
    def __init__(self, cookies: frozenset[int] | None, enabled: bool) -> None:
        self._named = cookies  # None: every cookie found at the first read-back
        self._enabled = enabled
        self._fixed: dict[str, frozenset[int]] = {}

    def cookies(self, bridge: str, foreign: Iterable[Flow]) -> frozenset[int]:
        """The cookies to take over on this bridge; fixed at the bridge's first read-back."""
        if not self._enabled:
            return frozenset()
        if bridge not in self._fixed:
            found = frozenset(flow.cookie for flow in foreign)
            chosen = found if self._named is None else self._named
            self._fixed[bridge] = chosen
            if chosen & found:
                LOG.warning("%s: taking over the flows of cookie %s", bridge,
                            ", ".join(f"{cookie:#x}" for cookie in sorted(chosen & found)))
        return self._fixed[bridge]


def parse_cookies(text: str) -> frozenset[int] | None:
    """`all` -> None; `0x1,0x2` -> {1, 2}."""
    if text == "all":
        return None
    cookies = set()
    for part in (piece.strip() for piece in text.split(",")):
        try:
            number = int(part, 0)
        except ValueError:
            raise ValueError(f"{part!r} is not a cookie (a number such as 0x8a1b2c3d4e5f6071, or all)") from None
        if not 0 < number < 2**64 - 1:
            raise ValueError(f"{part} is not a cookie (1..2^64-2)")
        cookies.add(number)
    return frozenset(cookies)
