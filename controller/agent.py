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
from controller.throttle import Throttle
from controller.worker import Worker
from flows import br_int
from flows.config import Config
from flows.diff import Diff, Kind, diff
from flows.flow import Flow
from flows.model import BridgeModel
from flows.wire import WireError

LOG = logging.getLogger("brtun.agent")
RETRY_SECONDS = 5.0  # after the switch refused a change
# A port deleted on one host may still send for a moment, until its own agent parks it on the dead VLAN:
# br-tun is read again this long after a change forgot MACs, and learned flows of them are deleted again.
FORGET_AGAIN = (1.0, 3.0)


@dataclass(frozen=True)
class AgentSettings:
    config: Config
    host: str
    ovsdb: str  # e.g. unix:/var/run/openvswitch/db.sock
    controller: str  # the target switches connect to, e.g. tcp:127.0.0.1:6653
    datapath_type: str  # netdev | system
    poll_interval: float = 0.25  # how often the worker looks at the database replica
    audit_interval: float = 1.0  # how often the canary checks each bridge (controller.canary)
    config_path: str | None = None
    config_text: str = ""
    takeover: bool = False  # take over another agent's flows (brtun run --takeover)
    takeover_cookies: frozenset[int] | None = None  # whose; None: every cookie found at the first read
    neutron: str | None = None  # the config comes from Neutron at this transport (controller.neutronsource)


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
        self._forget: list[tuple[float, frozenset[tuple[int, int]]]] = []  # (when, learned flows to delete again)

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

    def forget_again(self, forget: frozenset[tuple[int, int]], now: float) -> None:
        """Learned flows of these (VLAN, MAC) are deleted again at FORGET_AGAIN after now."""
        self._forget.extend((now + delay, forget) for delay in FORGET_AGAIN)

    def forgets_due(self, now: float) -> frozenset[tuple[int, int]]:
        due = [entry for entry in self._forget if entry[0] <= now]
        self._forget = [entry for entry in self._forget if entry[0] > now]
        return frozenset().union(*(forget for _, forget in due))

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
        self._config = RunningConfig(settings.config, Origin(settings.config_text, settings.config_path,
                                                             neutron=settings.neutron), host.name)
        self._sessions = Sessions({host.datapath_id: dbplan.BR_TUN, host.br_int_datapath_id: dbplan.BR_INT})
        self._database = DatabaseSync(DatabaseSettings(settings.ovsdb, host.name, settings.controller,
                                                       settings.datapath_type))
        self._br_tun = DesiredBrTun(host.name)  # kept between reconciles, with each flow's bytes
        self._pending = Pending()
        self._canary = Canary(settings.audit_interval)
        self._worker = Worker(self._round, settings.poll_interval)
        self._takeover = Takeover(settings.takeover_cookies, settings.takeover)
        self._throttle = Throttle(LOG)  # what a hostile peer can make us log, at most a line per kind every 10 s
        self._vif_watch: Callable[[dict[str, str]], None] | None = None
        self._source_info: Callable[[], dict[str, Any]] | None = None
        self._vifs_told: dict[str, str] | None = None

    # ----- lifecycle ----------------------------------------------------
    def start(self) -> None:
        host = self.config.host(self.host_name)
        LOG.info("brtun agent for host %s: br-tun datapath %#x, br-int %#x, controller %s, "
                 "database %s, %s datapath", host.name, host.datapath_id, host.br_int_datapath_id,
                 self.settings.controller, self.settings.ovsdb, self.settings.datapath_type)
        self.open()
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
        self._tell_vifs()
        self._worker.start()

    def open(self) -> None:
        """Connect to the switch database (once): `vifs` can be read before the agent starts."""
        if not self._database.opened:
            self._database.open()

    def watch_vifs(self, callback: Callable[[dict[str, str]], None]) -> None:
        """Call `callback(vifs)` (on the worker) whenever the VIFs on br-int change: the Neutron source
        asks Neutron about each port Nova plugs, as Neutron's agent does."""
        self._vif_watch = callback
        self._vifs_told = None
        self._tell_vifs()

    def describe_source(self, info: Callable[[], dict[str, Any]]) -> None:
        """`state` also shows what the config's source says of itself (the Neutron source's counters)."""
        self._source_info = info

    def vifs(self) -> dict[str, str]:
        """The VIFs on br-int: Neutron port ID (external_ids:iface-id, as Nova sets it) -> port name."""
        return dbplan.vifs(self._database.observe())

    def _tell_vifs(self) -> None:
        if self._vif_watch is None:
            return
        vifs = self.vifs()
        if vifs != self._vifs_told:
            self._vifs_told = vifs
            self._vif_watch(vifs)

    def stop(self) -> None:
        """Leave every flow and port in place: the switch keeps forwarding without us."""
        self._worker.stop()
        self._database.close()
        LOG.info("brtun agent for host %s stopped; flows left in place", self.host_name)

    # ----- events from os-ken (never block here) --------------------------
    def switch_connected(self, datapath: Any) -> None:
        bridge, accepted = self._sessions.connect(datapath)
        if bridge is None:  # closed: it would hold one of the listener's few connections for nothing
            self._throttle.log("stranger", logging.WARNING, "a switch with datapath ID %#x connected; it is not this "
                               "host's br-tun or br-int: closed", datapath.id)
            datapath.close()
            return
        if not accepted:  # the established connection stays: a claim is not a proof
            self._throttle.log(("conflict", bridge), logging.WARNING, "conflict: a second connection (from %s) "
                               "claims %s's datapath ID %#x while %s is connected; refused, %s stays on its "
                               "established connection", getattr(datapath, "address", "?"), bridge, datapath.id,
                               bridge, bridge)
            self.metrics.conflicts.labels(bridge).inc()
            datapath.close()
            return
        LOG.info("%s connected (datapath ID %#x)", bridge, datapath.id)
        self.metrics.connections.labels(bridge).inc()
        self.metrics.openflow_errors.labels(bridge).inc(0)  # shown as 0 from the start
        self.metrics.conflicts.labels(bridge).inc(0)
        self.metrics.connected.labels(bridge).set(1)
        self._mark(bridge)

    def switch_disconnected(self, datapath: Any) -> None:
        bridge = self._sessions.disconnect(datapath)
        if bridge is not None:
            self.metrics.connected.labels(bridge).set(0)
            LOG.warning("%s disconnected; its flows stay installed (fail_mode=secure)", bridge)

    def port_changed(self, datapath: Any, msg: Any) -> None:
        if self._sessions.bridge_of(datapath) == dbplan.BR_TUN:
            name = msg.desc.name.decode(errors="replace") if isinstance(msg.desc.name, bytes) else msg.desc.name
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
            self._tell_vifs()
        now = time.monotonic()
        self._pending.release(now)
        if self._canary.due(now):
            self.audit()
        forget = self._pending.forgets_due(now)
        if forget:
            self.reconcile(dbplan.BR_TUN, forget=forget, again=True)
        for bridge in self._pending.take():
            self.reconcile(bridge)

    def audit(self) -> None:
        """The canary (controller.canary): each bridge read back and compared with what the last
        reconcile left there, by content, as often as that costs at most 5% of the time; in between
        each table's count of our flows.  A difference is repaired at once."""
        for bridge, tables in self._canary.watched():
            session = self._sessions.get(bridge)
            if session is None or self._pending.waiting(bridge):
                continue
            started = time.monotonic()
            try:
                if self._canary.content_due(bridge, started):
                    drift = self._canary.content_drift(bridge, session.read_flows().contents(), self.config.cookie)
                    self._canary.checked(bridge, started, time.monotonic())
                else:
                    drift = self._canary.drift(bridge, session.table_counts(tables, self.config.cookie))
            except WireError as error:
                self._unreadable(bridge, session, error)
                continue
            except (SwitchTimeout, RuntimeError) as error:
                LOG.warning("%s: the canary could not read the switch: %s", bridge, error)
                continue
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

    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None,
                  forget: frozenset[tuple[int, int]] = frozenset(), again: bool = False) -> Reconciled | None:
        """Read back, diff, send only the difference in one bundle, confirm with a barrier.

        `forget`: learned flows of these (VLAN, MAC) go too (flows.diff.diff), now and at FORGET_AGAIN
        (`again`: this is such a later time).  Returns None when the bridge is not connected or the switch
        did not answer."""
        session = self._sessions.get(bridge)
        if forget and not again:
            self._pending.forget_again(forget, time.monotonic())
        if session is None:
            return None
        started = time.monotonic()
        if desired is None:
            desired = self.desired(bridge)
        try:
            installed = session.read_flows()
            result = self._diff(bridge, desired, installed, forget)
        except SwitchTimeout as error:
            LOG.warning("%s; will retry", error)
            self._mark(bridge)
            return None
        except WireError as error:
            self._unreadable(bridge, session, error)
            return None
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

    def _diff(self, bridge: str, desired: tuple[Flow, ...], installed: Sequence[Flow],
              forget: frozenset[tuple[int, int]] = frozenset()) -> Diff:
        """flows.diff, with the cookies this agent takes over (none unless --takeover)."""
        result = diff(desired, installed, self.config.cookie, forget=forget)
        takeover = self._takeover.cookies(bridge, result.foreign)
        if takeover and any(flow.cookie in takeover for flow in result.foreign):
            result = diff(desired, installed, self.config.cookie, takeover, forget)
        return result

    def _unreadable(self, bridge: str, session: SwitchSession, error: WireError) -> None:
        """The switch sent flow statistics that are not OpenFlow: no switch of ours does that."""
        self._throttle.log(("unreadable", bridge), logging.ERROR, "%s sent flow statistics brtun cannot read (%s); "
                           "closing its connection", bridge, error)
        session.datapath.close()

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
                try:
                    installed = session.read_flows()
                    result = self._diff(name, desired, installed)
                except (SwitchTimeout, WireError) as error:
                    figures["error"] = f"cannot read its flows: {error}"
                    bridges[name] = figures
                    continue
                self._record(name, desired, installed, result)
                figures.update(desired=len(desired), installed=len(installed), learned=len(result.learned),
                               foreign=len(result.foreign), in_sync=result.in_sync)
            bridges[name] = figures
        origin = self.origin
        result = {"host": self.host_name, "config": {"path": origin.path, "edits": list(origin.edits),
                                                     "neutron": origin.neutron},
                  "local_vlans": self._config.local_vlans(), "bridges": bridges,
                  "counters": vars(self.counters).copy()}
        if self._source_info is not None:
            result["neutron"] = self._source_info()
        return result


_PORT_REASONS = {0: "added", 1: "deleted", 2: "modified"}
_PLURAL = {Kind.ADD: "adds", Kind.MODIFY: "modifies", Kind.DELETE: "deletes"}
