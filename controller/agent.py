"""The per-host agent: owns br-tun (and br-int's defaults) through the database and OpenFlow.

Like Neutron's Open vSwitch agent, one runs per host.  Everything it does
is a reconcile: compute what should be, read what is, change only the
difference.  A cold start, a restart over a programmed switch, a
reconnect, a repaired table and a port that appears are the same operation.

Threads: os-ken's event handlers and the control socket only hand work
over (they never touch a switch); one worker thread does the database
work, the reconciles and config changes, one at a time, so two changes to
the same switch never interleave.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from os_ken.lib import hub

from controller import dbplan
from controller.desired import DesiredBrTun
from controller.metrics import Metrics
from controller.ovsdb import SwitchDatabase
from controller.switch import SwitchSession, SwitchTimeout
from controller.waiting import Signal
from flows import br_int
from flows.config import Config
from flows.diff import Diff, Kind, diff
from flows.flow import Flow
from flows.model import BridgeModel, local_vlans
from flows.tables import UCAST_TO_TUN
from flows.transition import pin_local_vlans

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


@dataclass
class Counters:
    reconciles: int = 0
    flow_mods: int = 0
    openflow_errors: int = 0
    db_transactions: int = 0
    repairs: int = 0


@dataclass
class _Job:
    work: Callable[[], Any]
    done: Signal = field(default_factory=Signal)
    result: Any = None
    error: BaseException | None = None


class Agent:
    def __init__(self, settings: AgentSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.config = settings.config  # what the switches are made to hold (VLANs pinned)
        self.config_path = settings.config_path
        self.config_text = settings.config_text
        self.edits: list[str] = []  # run-time edits since the file was last read
        self.host = self.config.host(settings.host)
        self.db: SwitchDatabase | None = None
        self.sessions: dict[str, SwitchSession] = {}
        self.counters = Counters()
        self.metrics = metrics or Metrics()
        self.refused: dict[str, list[str]] = {}  # per bridge: why the switch refused the last bundle
        self._expected: dict[str, collections.Counter[int]] = {}  # per bridge: our flows per table
        self._errors_seen: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._retry_at: dict[str, float] = {}  # bridge -> when to try a refused change again
        self._audit_at = 0.0
        self._jobs: collections.deque[_Job] = collections.deque()
        self._wake = Signal()
        self._running = False
        self._seqno = -1
        self._notes_reported: set[str] = set()
        self._ofports: dict[str, int] = {}
        self._observed: tuple[int, dbplan.Observed] | None = None
        self._plan: tuple[Config, dbplan.Observed, dbplan.Plan] | None = None
        self._br_tun = DesiredBrTun(self.host.name)  # kept between reconciles, with each flow's bytes
        self._bridge_by_dpid = {self.host.datapath_id: dbplan.BR_TUN,
                                self.host.br_int_datapath_id: dbplan.BR_INT}

    # ----- lifecycle ----------------------------------------------------
    def start(self) -> None:
        LOG.info("brtun agent for host %s: br-tun datapath %#x, br-int %#x, controller %s, "
                 "database %s, %s datapath", self.host.name, self.host.datapath_id,
                 self.host.br_int_datapath_id, self.settings.controller, self.settings.ovsdb,
                 self.settings.datapath_type)
        self.db = SwitchDatabase(self.settings.ovsdb)
        self._running = True
        self.adopt_local_vlans()
        self.sync_database()
        hub.spawn(self._worker)

    def stop(self) -> None:
        """Leave every flow and port in place: the switch keeps forwarding without us."""
        self._running = False
        self._wake.set()
        if self.db is not None:
            self.db.close()
        LOG.info("brtun agent for host %s stopped; flows left in place", self.host.name)

    def adopt_local_vlans(self) -> None:
        """Keep the VLANs br-int's ports carry (Neutron restores its VLAN map the same way)."""
        assert self.db is not None
        current = dbplan.tagged_vlans(self.config, self.host.name, self.observe())
        pinned = pin_local_vlans(self.config, self.host.name, current)
        if pinned is not self.config:
            LOG.info("keeping the local VLANs br-int's ports carry: %s",
                     ", ".join(f"{n}={v}" for n, v in sorted(current.items())))
            self.config = pinned

    # ----- events from os-ken (never block here) --------------------------
    def switch_connected(self, datapath: Any) -> None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        if bridge is None:
            LOG.warning("a switch with datapath ID %#x connected; it is not this host's br-tun or "
                        "br-int: ignored", datapath.id)
            return
        LOG.info("%s connected (datapath ID %#x)", bridge, datapath.id)
        self.sessions[bridge] = SwitchSession(datapath, bridge)
        self._errors_seen[bridge] = 0
        self.metrics.connections.labels(bridge).inc()
        self.metrics.openflow_errors.labels(bridge).inc(0)  # shown as 0 from the start
        self.metrics.connected.labels(bridge).set(1)
        self._mark(bridge)

    def switch_disconnected(self, datapath: Any) -> None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        session = self.sessions.get(bridge) if bridge else None
        if bridge is not None and session is not None and session.datapath is datapath:
            del self.sessions[bridge]
            session.abandon()
            self.metrics.connected.labels(bridge).set(0)
            LOG.warning("%s disconnected; its flows stay installed (fail_mode=secure)", bridge)

    def port_changed(self, datapath: Any, msg: Any) -> None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        if bridge == dbplan.BR_TUN:
            name = msg.desc.name.decode() if isinstance(msg.desc.name, bytes) else msg.desc.name
            LOG.info("br-tun port %s %s (ofport %s)", name, _PORT_REASONS.get(msg.reason, msg.reason),
                     msg.desc.port_no)
            self._seqno = -1  # look at the database again
            self._wake.set()

    def session_for(self, datapath: Any) -> SwitchSession | None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        session = self.sessions.get(bridge) if bridge else None
        return session if session is not None and session.datapath is datapath else None

    def _mark(self, bridge: str) -> None:
        self._dirty.add(bridge)
        self._wake.set()

    # ----- work from other threads ------------------------------------------
    def call(self, work: Callable[[], Any], timeout: float = 120) -> Any:
        """Run `work` on the worker (between two rounds) and return its result."""
        job = _Job(work)
        self._jobs.append(job)
        self._wake.set()
        if not job.done.wait(timeout=timeout):
            raise TimeoutError(f"the agent's worker did not get to the request in {timeout:.0f} s")
        if job.error is not None:
            raise job.error
        return job.result

    def post(self, work: Callable[[], Any]) -> None:
        """Queue `work` for the worker without waiting (signal handlers use this)."""
        self._jobs.append(_Job(work))
        self._wake.set()

    # ----- the worker -----------------------------------------------------
    def _worker(self) -> None:
        while self._running:
            self._wake.wait(timeout=self.settings.poll_interval)
            self._wake.clear()
            if not self._running:
                return
            try:
                self._round()
            except Exception:  # keep the agent alive; the next round retries
                LOG.exception("worker round failed; retrying")
                hub.sleep(1)

    def _round(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            try:
                job.result = job.work()
            except Exception as error:
                job.error = error
            job.done.set()
        if self.db is not None and self.db.change_seqno != self._seqno:
            self.sync_database()
        now = time.monotonic()
        for bridge, when in list(self._retry_at.items()):
            if when <= now:
                del self._retry_at[bridge]
                self._dirty.add(bridge)
        if now >= self._audit_at:
            self._audit_at = now + self.settings.audit_interval
            self.audit()
        for bridge in sorted(self._dirty):
            self._dirty.discard(bridge)
            self.reconcile(bridge)

    def audit(self) -> None:
        """The canary: count our flows in each table; a table that lost any (wiped by hand,
        a restarted switch that reconnected before we noticed) is repaired at once."""
        for bridge, expected in list(self._expected.items()):
            session = self.sessions.get(bridge)
            if session is None or bridge in self._dirty or bridge in self._retry_at:
                continue
            try:
                counts = session.table_counts(sorted(expected), self.config.cookie)
            except (SwitchTimeout, RuntimeError) as error:
                LOG.warning("%s: could not count flows: %s", bridge, error)
                continue
            short = {t: (counts.get(t, 0), n) for t, n in expected.items()
                     if counts.get(t, 0) < n or (counts.get(t, 0) > n and t != UCAST_TO_TUN)}
            if short:
                detail = ", ".join(f"table {t} holds {have} of our flows, {want} expected"
                                   for t, (have, want) in sorted(short.items()))
                reason = "wiped" if all(have == 0 for have, _ in short.values()) else "changed"
                LOG.warning("%s: %s (canary): repairing", bridge, detail)
                self.counters.repairs += 1
                self.metrics.repairs.labels(bridge, reason).inc()
                self._dirty.add(bridge)

    def sync_database(self, config: Config | None = None, only: tuple[type, ...] | None = None) -> None:
        """Bridges, patch and tunnel ports, VLAN tags: make the database match the config.

        `only` limits the operations to some kinds (a config change orders them)."""
        assert self.db is not None
        self._seqno = self.db.change_seqno
        plan = self.db_plan(config)
        for note in plan.notes:
            if note not in self._notes_reported:
                LOG.warning("%s", note)
                self._notes_reported.add(note)
        operations = [op for op in plan.operations if only is None or isinstance(op, only)]
        if operations:
            for operation in operations:
                LOG.info("database: %s", operation.describe())
            self.db.apply(operations)
            self.counters.db_transactions += 1
            self._observed = None  # our own change: read it back whatever the replica says yet
            self._seqno = self.db.change_seqno
        ofports = self.observe().ofports(dbplan.BR_TUN)
        if ofports != self._ofports:
            self._ofports = ofports
            self._mark(dbplan.BR_TUN)
            self.desired(dbplan.BR_TUN)  # built and encoded now, before the switch asks

    def db_plan(self, config: Config | None = None) -> dbplan.Plan:
        """What the database needs for a config; the same config against the same database
        snapshot gives the same plan, so it is computed once."""
        observed = self.observe()
        config = config or self.config
        if self._plan is None or self._plan[0] is not config or self._plan[1] is not observed:
            self._plan = (config, observed, dbplan.plan(config, self.host.name, observed,
                                                        self.settings.controller, self.settings.datapath_type))
        return self._plan[2]

    def observe(self) -> dbplan.Observed:
        """The database as the local replica holds it; read again only once the replica changed."""
        assert self.db is not None
        seqno = self.db.change_seqno
        if self._observed is None or self._observed[0] != seqno:
            self._observed = (seqno, self.db.observe())
        return self._observed[1]

    def pipeline(self, config: Config | None = None) -> tuple[BridgeModel, tuple[Flow, ...]]:
        """br-tun's model and flows for a config and the ofports the switch reports.

        Computed once per (config, ofports): configs are immutable values, and a change
        asks for the same pipelines several times (dry run, steps, reconciles)."""
        return self._br_tun.pipeline(config or self.config, self._ofports)

    def desired(self, bridge: str, config: Config | None = None) -> tuple[Flow, ...]:
        config = config or self.config
        if bridge == dbplan.BR_INT:
            return br_int.build(config.cookie)
        return self.pipeline(config)[1]

    def local_vlans(self, config: Config | None = None) -> dict[str, int]:
        config = config or self.config
        return local_vlans(config.host(self.host.name), config)

    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None) -> Diff | None:
        """Read back, diff, send only the difference in one bundle, confirm with a barrier.

        Returns None when the bridge is not connected or the switch did not answer."""
        session = self.sessions.get(bridge)
        if session is None:
            return None
        self.refused.pop(bridge, None)  # only this reconcile's refusal counts
        started = time.monotonic()
        if desired is None:
            desired = self.desired(bridge)
        try:
            installed = session.read_flows()
        except SwitchTimeout as error:
            LOG.warning("%s; will retry", error)
            self._mark(bridge)
            return None
        result = diff(desired, installed, self.config.cookie)
        self.counters.reconciles += 1
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
            return result
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
        else:
            LOG.error("%s: the bundle of %s was refused (%d errors); the switch is unchanged; "
                      "retrying in %.0f s", summary, counts, len(sent.errors), RETRY_SECONDS)
            self._expected.pop(bridge, None)
            self._retry_at[bridge] = time.monotonic() + RETRY_SECONDS
            self.refused[bridge] = list(sent.errors)
        return result

    def _count_errors(self, bridge: str, session: SwitchSession) -> None:
        new = session.errors_total - self._errors_seen.get(bridge, 0)
        self._errors_seen[bridge] = session.errors_total
        self.counters.openflow_errors += new
        if new:
            self.metrics.openflow_errors.labels(bridge).inc(new)

    def _record(self, bridge: str, desired: tuple[Flow, ...], installed: Sequence[Flow], result: Diff) -> None:
        """What the audit expects afterwards, and the figures `state` and the metrics show."""
        held = {wanted.key for wanted, _ in result.conflicts}
        self._expected[bridge] = collections.Counter(f.table for f in desired if f.key not in held)
        ours = len(installed) - len(result.foreign)  # counted, not decoded: a read-back stays lazy
        self.metrics.flows_desired.labels(bridge).set(len(desired))
        self.metrics.flows_installed.labels(bridge, "ours").set(ours - len(result.learned))
        self.metrics.flows_installed.labels(bridge, "learned").set(len(result.learned))
        self.metrics.flows_installed.labels(bridge, "foreign").set(len(result.foreign))
        if bridge == dbplan.BR_TUN:
            by_vlan = collections.Counter(f.match.get("vlan_tci").value & 0xFFF for f in result.learned
                                          if f.match.get("vlan_tci") is not None)
            for name, vlan in self.local_vlans().items():
                self.metrics.learned_macs.labels(name).set(by_vlan.get(vlan, 0))

    def state(self) -> dict[str, Any]:
        """What the agent holds and what the switches hold now (read back, not remembered)."""
        bridges: dict[str, Any] = {}
        for name in (dbplan.BR_TUN, dbplan.BR_INT):
            session = self.sessions.get(name)
            figures: dict[str, Any] = {"connected": session is not None}
            if session is not None:
                desired = self.desired(name)
                installed = session.read_flows()
                result = diff(desired, installed, self.config.cookie)
                self._record(name, desired, installed, result)
                figures.update(desired=len(desired), installed=len(installed), learned=len(result.learned),
                               foreign=len(result.foreign), in_sync=result.in_sync)
            bridges[name] = figures
        return {"host": self.host.name, "config": {"path": self.config_path, "edits": list(self.edits)},
                "local_vlans": self.local_vlans(), "bridges": bridges, "counters": vars(self.counters).copy()}


_PORT_REASONS = {0: "added", 1: "deleted", 2: "modified"}
_PLURAL = {Kind.ADD: "adds", Kind.MODIFY: "modifies", Kind.DELETE: "deletes"}
