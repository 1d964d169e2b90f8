"""One host's desired br-tun, kept by the agent while the config and the switch's ofports stay.

flows.pipeline builds flows from a model and keeps nothing.  Keeping what it
built between reconciles, and keeping Python's garbage collector away from
it, is a choice about this process's memory, so it is the agent's and lives
here: `brtun render`, the tests and the inspection commands build flows
without touching the collector.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Mapping

from flows import collector
from flows.config import Config
from flows.flow import Flow
from flows.model import BridgeModel, build_bridge
from flows.ofp import Unsupported
from flows.pipeline import build
from flows.template import ShapedFlow

Key = tuple[int, tuple[tuple[str, int], ...]]


class DesiredBrTun:
    """One host's desired br-tun, rebuilt only when the config or the switch's ofports change.

    The same config and ofports always give the same flows, so the agent
    keeps them, with each flow's wire encoding (`Flow.encoded`), from one
    reconcile to the next: a reconnect or a restart's read-back then costs
    a comparison of bytes, not a rebuild (bench/bench_agent.py, P2).

    At 50,000 flows that is about a million small objects that live as long
    as the config does.  Python's collector can free none of them, yet its
    full collections walk them all, again and again while they are built and
    on every later read-back: so they are built with it paused, then frozen
    (`gc.freeze`: never walked again; reference counting still frees them
    when a new config replaces them).  That halves the build and takes 0.6 s
    off a 50k-flow read-back.  Freezing is process-wide: only the agent's
    process, which holds one host's pipeline for its whole life, does it.
    """

    KEEP = 8  # a config change asks for the old and the new pipeline, and its steps between

    def __init__(self, host: str) -> None:
        self._host = host
        self._built: dict[Key, tuple[Config, BridgeModel, tuple[Flow, ...]]] = {}

    def flows(self, config: Config, ofports: Mapping[str, int]) -> tuple[Flow, ...]:
        return self.pipeline(config, ofports)[1]

    def pipeline(self, config: Config, ofports: Mapping[str, int]) -> tuple[BridgeModel, tuple[Flow, ...]]:
        """The model and its flows; configs are immutable values, so identity is the key."""
        key = (id(config), tuple(sorted(ofports.items())))
        hit = self._built.get(key)
        if hit is not None and hit[0] is config:  # the id of a config since freed may be reused
            return hit[1], hit[2]
        with collector.paused():
            model = build_bridge(config, self._host, observed_ofports=ofports)
            flows = build(model)
            for flow in flows:
                if type(flow) is ShapedFlow:
                    continue  # keeps no bytes: they are made when asked (flows.template)
                with contextlib.suppress(Unsupported):  # such a flow is compared as a value
                    flow.encoded  # noqa: B018  (computed now, while no switch waits)
        gc.freeze()
        if len(self._built) >= self.KEEP:
            self._built.clear()
        self._built[key] = (config, model, flows)
        return model, flows
