"""The per-host agent: owns br-tun (and br-int's defaults) through the database and OpenFlow.

Like Neutron's Open vSwitch agent, one runs per host.  Everything it does
is a reconcile: compute what should be, read what is, change only the
difference.  A cold start, a restart over a programmed switch, a
reconnect, a repaired table and a port that appears are the same operation.

Threads: os-ken's event handlers and the control socket only hand work
over (they never touch a switch); one worker thread (controller.worker)
does the database work, the reconciles and config changes, one at a time,
so two changes to the same switch never interleave.

What a config change (controller.changes) may ask of the agent is the
section "the interface a config change uses" below; nothing outside the
agent assigns its state.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from controller import dbplan
from controller.canary import Canary
from controller.changes import Reconciled
from controller.dbsync import DatabaseSettings, DatabaseSync
from controller.desired import DesiredBrTun
from controller.metrics import Metrics
from controller.running import Origin, RunningConfig
from controller.sessions import Sessions
from controller.switch import SwitchSession, SwitchTimeout
from controller.takeover import Takeover
from controller.worker import Worker
from flows import br_int
from flows.config import Config
from flows.diff import Diff, Kind, diff
from flows.flow import Flow
from flows.model import BridgeModel

LOG = logging.getLogger("brtun.agent")
RETRY_SECONDS = 5.0  # after the switch refused a change


@dataclass(frozen=True)
class AgentSettings:
    config: Config
    host: str
    ovsdb: str  # e.g. unix:/var/run/openvswitch/db.sock
    controller: str  # the target switches connect to, e.g. tcp:127.0.0.1:6653
    datapath_type: str  # netdev | system
    poll_interval: float = 0.25  # how often the worker looks at the database replica
    audit_interval: float = 1.0  # how often each table's flow count is checked (the canary)
    config_path: str | None = None
    config_text: str = ""
    takeover: bool = False  # take over another agent's flows (brtun run --takeover)
    takeover_cookies: frozenset[int] | None = None  # whose; None: every cookie found at the first read


@dataclass
class Counters:
    reconciles: int = 0
    flow_mods: int = 0
    openflow_errors: int = 0
    db_transactions: int = 0
    repairs: int = 0


class Pending:
    """The bridges the worker reconciles at its next round: marked by events (a connection, a
    port, the canary, a switch that did not answer) or due again after a refusal."""

    def __init__(self) -> None:
        self._marked: set[str] = set()
        self._retry_at: dict[str, float] = {}  # bridge -> when to try a refused change again

    def mark(self, bridge: str) -> None:
        self._marked.add(bridge)

    def retry(self, bridge: str, after: float) -> None:
        self._retry_at[bridge] = time.monotonic() + after

    def waiting(self, bridge: str) -> bool:
        """Marked or waiting to retry: the canary need not count it."""
        return bridge in self._marked or bridge in self._retry_at

    def release(self, now: float) -> None:
        """Retries whose time has come are marked."""
        for bridge, when in list(self._retry_at.items()):
            if when <= now:
                del self._retry_at[bridge]
                self._marked.add(bridge)

    def take(self) -> Iterator[str]:
        """Each marked bridge in turn, unmarked as it is taken (its reconcile may mark it again)."""
        for bridge in sorted(self._marked):
            self._marked.discard(bridge)
            yield bridge


class Agent:
    """One host's agent.  It owns the reconcile and the order of the worker's round; each part of
    its state has a class of its own: the running config and its origin (RunningConfig), the
    bridges' sessions (Sessions), the database side (DatabaseSync), the desired br-tun
    (DesiredBrTun), the bridges due a reconcile (Pending), the canary (Canary) and the worker
    (Worker)."""

    def __init__(self, settings: AgentSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.counters = Counters()
        host = settings.config.host(settings.host)
        self._config = RunningConfig(settings.config, Origin(settings.config_text, settings.config_path),
                                      host.name)
        self._sessions = Sessions({host.datapath_id: dbplan.BR_TUN, host.br_int_datapath_id: dbplan.BR_INT})
        self._database = DatabaseSync(DatabaseSettings(settings.ovsdb, host.name, settings.controller,
                                                       settings.datapath_type))
        self._br_tun = DesiredBrTun(host.name)  # kept between reconciles, with each flow's bytes
        self._pending = Pending()
        self._canary = Canary(settings.audit_interval)
        self._worker = Worker(self._round, settings.poll_interval)
        self._takeover = Takeover(settings.takeover_cookies, settings.takeover)

    # ----- lifecycle ----------------------------------------------------
    def start(self) -> None:
        host = self.config.host(self.host_name)
        LOG.info("brtun agent for host %s: br-tun datapath %#x, br-int %#x, controller %s, "
                 "database %s, %s datapath", host.name, host.datapath_id, host.br_int_datapath_id,
                 self.settings.controller, self.settings.ovsdb, self.settings.datapath_type)
        self._database.open()
        current = dbplan.tagged_vlans(self.config, self.host_name, self._database.observe())
        if self._config.keep_local_vlans(current):
            LOG.info("keeping the local VLANs br-int's ports carry: %s",
                     ", ".join(f"{n}={v}" for n, v in sorted(current.items())))
        # os-ken listens by now (its server started while the database opened).  A bridge that lost
        # our predecessor would wait out the switch's reconnect backoff (up to 8 s): ask it to
        # connect at once, before the desired flows are built, so that its connection is waiting
        # when they are.
        waiting = [bridge for bridge in (dbplan.BR_TUN, dbplan.BR_INT) if not self.connected(bridge)]
        asked = self._database.connect_now(waiting) if waiting else []
        if asked:
            LOG.info("asked the switch to connect %s now", " and ".join(asked))
        self.sync_database()
        self._worker.start()

    def stop(self) -> None:
        """Leave every flow and port in place: the switch keeps forwarding without us."""
        self._worker.stop()
        self._database.close()
        LOG.info("brtun agent for host %s stopped; flows left in place", self.host_name)

    # ----- events from os-ken (never block here) --------------------------
    def switch_connected(self, datapath: Any) -> None:
        bridge = self._sessions.connect(datapath)
        if bridge is None:
            LOG.warning("a switch with datapath ID %#x connected; it is not this host's br-tun or "
                        "br-int: ignored", datapath.id)
            return
        LOG.info("%s connected (datapath ID %#x)", bridge, datapath.id)
        self.metrics.connections.labels(bridge).inc()
        self.metrics.openflow_errors.labels(bridge).inc(0)  # shown as 0 from the start
        self.metrics.connected.labels(bridge).set(1)
        self._mark(bridge)

    def switch_disconnected(self, datapath: Any) -> None:
        bridge = self._sessions.disconnect(datapath)
        if bridge is not None:
            self.metrics.connected.labels(bridge).set(0)
            LOG.warning("%s disconnected; its flows stay installed (fail_mode=secure)", bridge)

    def port_changed(self, datapath: Any, msg: Any) -> None:
        if self._sessions.bridge_of(datapath) == dbplan.BR_TUN:
            name = msg.desc.name.decode() if isinstance(msg.desc.name, bytes) else msg.desc.name
            LOG.info("br-tun port %s %s (ofport %s)", name, _PORT_REASONS.get(msg.reason, msg.reason),
                     msg.desc.port_no)
            self._database.look_again()
            self._worker.wake()

    def session_for(self, datapath: Any) -> SwitchSession | None:
        return self._sessions.session_for(datapath)

    def _mark(self, bridge: str) -> None:
        self._pending.mark(bridge)
        self._worker.wake()

    # ----- work from other threads ------------------------------------------
    def call(self, work: Callable[[], Any], timeout: float = 120) -> Any:
        """Run `work` on the worker (between two rounds) and return its result."""
        return self._worker.call(work, timeout)

    def post(self, work: Callable[[], Any]) -> None:
        """Queue `work` for the worker without waiting (signal handlers use this)."""
        self._worker.post(work)

    # ----- the worker's round -----------------------------------------------
    def _round(self) -> None:
        if self._database.changed:
            self.sync_database()
        now = time.monotonic()
        self._pending.release(now)
        if self._canary.due(now):
            self.audit()
        for bridge in self._pending.take():
            self.reconcile(bridge)

    def audit(self) -> None:
        """The canary: count our flows in each table; a table that lost any (wiped by hand,
        a restarted switch that reconnected before we noticed) is repaired at once."""
        for bridge, tables in self._canary.watched():
            session = self._sessions.get(bridge)
            if session is None or self._pending.waiting(bridge):
                continue
            try:
                counts = session.table_counts(tables, self.config.cookie)
            except (SwitchTimeout, RuntimeError) as error:
                LOG.warning("%s: could not count flows: %s", bridge, error)
                continue
            drift = self._canary.drift(bridge, counts)
            if drift is not None:
                detail, reason = drift
                LOG.warning("%s: %s (canary): repairing", bridge, detail)
                self.counters.repairs += 1
                self.metrics.repairs.labels(bridge, reason).inc()
                self._pending.mark(bridge)

    # ----- the interface a config change uses (controller.changes) ----------
    @property
    def host_name(self) -> str:
        return self.settings.host

    @property
    def config(self) -> Config:
        """What the switches are made to hold (this host's local VLANs pinned)."""
        return self._config.config

    @property
    def origin(self) -> Origin:
        """Where the running config came from (text, file, edits)."""
        return self._config.origin

    def use(self, config: Config) -> None:
        """Make the switches hold `config` from now on (a step of a change, or going back);
        the origin stays until `adopt`."""
        self._config.use(config)

    def adopt(self, config: Config, origin: Origin) -> None:
        """A change is carried out: `config`, from `origin`, is the running config."""
        self._config.adopt(config, origin)

    def count_change(self, outcome: str) -> None:
        """A config change asked for: applied, rejected, refused (by the switch) or failed."""
        self.metrics.config_changes.labels(outcome).inc()

    def connected(self, bridge: str) -> bool:
        return self._sessions.get(bridge) is not None

    def pipeline(self, config: Config | None = None) -> tuple[BridgeModel, tuple[Flow, ...]]:
        """br-tun's model and flows for a config and the ofports the switch reports.

        Computed once per (config, ofports): configs are immutable values, and a change
        asks for the same pipelines several times (dry run, steps, reconciles)."""
        return self._br_tun.pipeline(config or self.config, self._database.ofports)

    def desired(self, bridge: str, config: Config | None = None) -> tuple[Flow, ...]:
        config = config or self.config
        if bridge == dbplan.BR_INT:
            return br_int.build(config.cookie)
        return self.pipeline(config)[1]

    def database_plan(self, config: Config | None = None) -> dbplan.Plan:
        """What the database needs for a config (computed once per config and database snapshot)."""
        return self._database.plan(config or self.config)

    def sync_database(self, config: Config | None = None, only: tuple[type, ...] | None = None) -> None:
        """Bridges, patch and tunnel ports, VLAN tags: make the database match the config.

        `only` limits the operations to some kinds (a config change orders them)."""
        synced = self._database.sync(config or self.config, only)
        if synced.operations:
            self.counters.db_transactions += 1
        if synced.ofports_changed:
            self._mark(dbplan.BR_TUN)
            self.desired(dbplan.BR_TUN)  # built and encoded now, before the switch asks

    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None) -> Reconciled | None:
        """Read back, diff, send only the difference in one bundle, confirm with a barrier.

        Returns None when the bridge is not connected or the switch did not answer."""
        session = self._sessions.get(bridge)
        if session is None:
            return None
        started = time.monotonic()
        if desired is None:
            desired = self.desired(bridge)
        try:
            installed = session.read_flows()
        except SwitchTimeout as error:
            LOG.warning("%s; will retry", error)
            self._mark(bridge)
            return None
        result = self._diff(bridge, desired, installed)
        self.counters.reconciles += 1
        if result.taken:
            replaced = sum(1 for change in result.changes if change.kind is Kind.ADD and change.old is not None)
            LOG.warning("%s: taking over %d flows: %d replaced in place, %d deleted; %d learned kept", bridge,
                        len(result.taken), replaced, len(result.taken) - replaced, len(result.learned))
        for desired_flow, foreign in result.conflicts:
            LOG.warning("%s: a foreign flow (cookie %#x) holds the place of ours; left alone: %s",
                        bridge, foreign.cookie, desired_flow.render())
        summary = (f"{bridge}: read {len(installed)} flows ({len(result.learned)} learned, "
                   f"{len(result.foreign)} foreign)")
        self._record(bridge, desired, installed, result)
        if not result.changes:
            seconds = time.monotonic() - started
            self.metrics.reconcile_seconds.labels(bridge).observe(seconds)
            LOG.info("%s: in sync, nothing sent (%.3f s)", summary, seconds)
            return Reconciled(result)
        if LOG.isEnabledFor(logging.DEBUG):  # rendering 50,000 changes costs a second
            for change in result.changes:
                LOG.debug("%s: %s", bridge, change.render())
        try:
            sent = session.send_changes(result.changes)
        except SwitchTimeout as error:
            # An open bundle dies with its connection: the switch has all of it or none, and
            # the next reconcile (on reconnect) reads back and sends whatever is missing.
            LOG.warning("%s; the whole difference is sent again when it answers", error)
            self._mark(bridge)
            return None
        self.counters.flow_mods += sent.sent
        for kind in Kind:
            self.metrics.flow_mods.labels(bridge, kind.value).inc(len(result.of_kind(kind)))
        self._count_errors(bridge, session)
        counts = ", ".join(f"{len(result.of_kind(kind))} {_PLURAL[kind]}" for kind in Kind)
        seconds = time.monotonic() - started
        self.metrics.reconcile_seconds.labels(bridge).observe(seconds)
        if sent.ok:
            LOG.info("%s: sent %s in one bundle; barrier confirmed (%.3f s)", summary, counts, seconds)
            return Reconciled(result)
        LOG.error("%s: the bundle of %s was refused (%d errors); the switch is unchanged; "
                  "retrying in %.0f s", summary, counts, len(sent.errors), RETRY_SECONDS)
        self._canary.forget(bridge)
        self._pending.retry(bridge, RETRY_SECONDS)
        return Reconciled(result, tuple(sent.errors))

    def _diff(self, bridge: str, desired: tuple[Flow, ...], installed: Sequence[Flow]) -> Diff:
        """flows.diff, with the cookies this agent takes over (none unless --takeover)."""
        result = diff(desired, installed, self.config.cookie)
        takeover = self._takeover.cookies(bridge, result.foreign)
        if takeover and any(flow.cookie in takeover for flow in result.foreign):
            result = diff(desired, installed, self.config.cookie, takeover)
        return result

    def _count_errors(self, bridge: str, session: SwitchSession) -> None:
        new = self._sessions.new_errors(bridge, session)
        self.counters.openflow_errors += new
        if new:
            self.metrics.openflow_errors.labels(bridge).inc(new)

    def _record(self, bridge: str, desired: tuple[Flow, ...], installed: Sequence[Flow], result: Diff) -> None:
        """What the audit expects afterwards, and the figures `state` and the metrics show."""
        self._canary.expect(bridge, desired, {wanted.key for wanted, _ in result.conflicts})
        ours = len(installed) - len(result.foreign)  # counted, not decoded: a read-back stays lazy
        self.metrics.flows_desired.labels(bridge).set(len(desired))
        self.metrics.flows_installed.labels(bridge, "ours").set(ours - len(result.learned))
        self.metrics.flows_installed.labels(bridge, "learned").set(len(result.learned))
        self.metrics.flows_installed.labels(bridge, "foreign").set(len(result.foreign))
        if bridge == dbplan.BR_TUN:
            by_vlan = collections.Counter(f.match.get("vlan_tci").value & 0xFFF for f in result.learned
                                          if f.match.get("vlan_tci") is not None)
            for name, vlan in self._config.local_vlans().items():
                self.metrics.learned_macs.labels(name).set(by_vlan.get(vlan, 0))

    def state(self) -> dict[str, Any]:
        """What the agent holds and what the switches hold now (read back, not remembered)."""
        bridges: dict[str, Any] = {}
        for name in (dbplan.BR_TUN, dbplan.BR_INT):
            session = self._sessions.get(name)
            figures: dict[str, Any] = {"connected": session is not None}
            if session is not None:
                desired = self.desired(name)
                installed = session.read_flows()
                result = self._diff(name, desired, installed)
                self._record(name, desired, installed, result)
                figures.update(desired=len(desired), installed=len(installed), learned=len(result.learned),
                               foreign=len(result.foreign), in_sync=result.in_sync)
            bridges[name] = figures
        origin = self.origin
        return {"host": self.host_name, "config": {"path": origin.path, "edits": list(origin.edits)},
                "local_vlans": self._config.local_vlans(), "bridges": bridges, "counters": vars(self.counters).copy()}


_PORT_REASONS = {0: "added", 1: "deleted", 2: "modified"}
_PLURAL = {Kind.ADD: "adds", Kind.MODIFY: "modifies", Kind.DELETE: "deletes"}
