"""A change target without a switch: `brtun run --neutron --no-switch` computes and reports only.

It is what controller.changes asks of an agent (`ChangeTarget`), kept in
memory: the pipeline is built by the same code (controller.desired,
flows.model, flows.pipeline) and every change goes through the same
`Change` with its checks and steps; only the switch is missing, so a
"reconcile" is the difference between the flows computed last and now.
The scale benchmark (bench/bench_neutron.py) runs most of its agents so.
"""

from __future__ import annotations

from controller import dbplan
from controller.changes import Reconciled
from controller.desired import DesiredBrTun
from controller.running import Origin
from flows import br_int
from flows.config import Config
from flows.diff import diff
from flows.flow import Flow
from flows.model import BridgeModel, requested_ofports


class ComputeOnly:
    """One host's br-tun and br-int as computed, with no switch behind them."""

    def __init__(self, config: Config, host: str, origin: Origin) -> None:
        self.host_name = host
        self._config = config
        self._origin = origin
        self._br_tun = DesiredBrTun(host)
        self.held: dict[str, tuple[Flow, ...]] = {bridge: self.desired(bridge, config)
                                                  for bridge in (dbplan.BR_TUN, dbplan.BR_INT)}
        self.outcomes: list[str] = []

    @property
    def config(self) -> Config:
        return self._config

    @property
    def origin(self) -> Origin:
        return self._origin

    def connected(self, bridge: str) -> bool:
        return True  # its own flows are always at hand

    def pipeline(self, config: Config | None = None) -> tuple[BridgeModel, tuple[Flow, ...]]:
        config = config or self._config
        return self._br_tun.pipeline(config, requested_ofports(config.host(self.host_name), config))

    def desired(self, bridge: str, config: Config | None = None) -> tuple[Flow, ...]:
        config = config or self._config
        return br_int.build(config.cookie) if bridge == dbplan.BR_INT else self.pipeline(config)[1]

    def database_plan(self, config: Config | None = None) -> dbplan.Plan:
        return dbplan.Plan((), ())  # no database

    def sync_database(self, config: Config | None = None, only: tuple[type, ...] | None = None) -> None:
        pass

    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None,
                  forget: frozenset[tuple[int, int]] = frozenset()) -> Reconciled:
        desired = desired if desired is not None else self.desired(bridge)
        result = diff(desired, self.held[bridge], self._config.cookie, forget=forget)
        self.held[bridge] = desired
        return Reconciled(result)

    def use(self, config: Config) -> None:
        self._config = config

    def adopt(self, config: Config, origin: Origin) -> None:
        self._config, self._origin = config, origin

    def count_change(self, outcome: str) -> None:
        self.outcomes.append(outcome)
