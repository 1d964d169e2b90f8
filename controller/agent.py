"""The per-host agent: owns br-tun (and br-int's defaults) through the database and OpenFlow.

Like Neutron's Open vSwitch agent, one runs per host.  Everything it does
is a reconcile: compute what should be, read what is, change only the
difference.  A cold start, a restart over a programmed switch, a
reconnect and a port that appears are the same operation.

Threads: os-ken's event handlers only hand events over (they never block);
one worker thread does the database work and the reconciles, one at a
time, so two changes to the same switch never interleave.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from os_ken.lib import hub

from controller import dbplan
from controller.ovsdb import SwitchDatabase
from controller.switch import SwitchSession, SwitchTimeout
from controller.waiting import Signal
from flows import br_int, pipeline
from flows.config import Config
from flows.diff import Diff, Kind, diff
from flows.flow import Flow

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


@dataclass
class Counters:
    reconciles: int = 0
    flow_mods: int = 0
    openflow_errors: int = 0
    db_transactions: int = 0


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.config = settings.config
        self.host = self.config.host(settings.host)
        self.db: SwitchDatabase | None = None
        self.sessions: dict[str, SwitchSession] = {}
        self.counters = Counters()
        self._dirty: set[str] = set()
        self._retry_at: dict[str, float] = {}  # bridge -> when to try a refused change again
        self._wake = Signal()
        self._running = False
        self._seqno = -1
        self._notes_reported: set[str] = set()
        self._ofports: dict[str, int] = {}
        self._br_tun = pipeline.DesiredBrTun()  # kept between reconciles, with each flow's bytes
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
        self.sync_database()
        hub.spawn(self._worker)

    def stop(self) -> None:
        """Leave every flow and port in place: the switch keeps forwarding without us."""
        self._running = False
        self._wake.set()
        if self.db is not None:
            self.db.close()
        LOG.info("brtun agent for host %s stopped; flows left in place", self.host.name)

    # ----- events from os-ken (never block here) --------------------------
    def switch_connected(self, datapath: Any) -> None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        if bridge is None:
            LOG.warning("a switch with datapath ID %#x connected; it is not this host's br-tun or "
                        "br-int: ignored", datapath.id)
            return
        LOG.info("%s connected (datapath ID %#x)", bridge, datapath.id)
        self.sessions[bridge] = SwitchSession(datapath, bridge)
        self._mark(bridge)

    def switch_disconnected(self, datapath: Any) -> None:
        bridge = self._bridge_by_dpid.get(datapath.id)
        session = self.sessions.get(bridge) if bridge else None
        if session is not None and session.datapath is datapath:
            del self.sessions[bridge]
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

    # ----- the worker -----------------------------------------------------
    def _worker(self) -> None:
        while self._running:
            self._wake.wait(timeout=self.settings.poll_interval)
            self._wake.clear()
            if not self._running:
                return
            try:
                if self.db is not None and self.db.change_seqno != self._seqno:
                    self.sync_database()
                now = time.monotonic()
                for bridge, when in list(self._retry_at.items()):
                    if when <= now:
                        del self._retry_at[bridge]
                        self._dirty.add(bridge)
                for bridge in sorted(self._dirty):
                    self._dirty.discard(bridge)
                    self.reconcile(bridge)
            except Exception:  # keep the agent alive; the next round retries
                LOG.exception("worker round failed; retrying")
                hub.sleep(1)

    def sync_database(self) -> None:
        """Bridges, patch and tunnel ports, VLAN tags: make the database match the config."""
        assert self.db is not None
        self._seqno = self.db.change_seqno
        observed = self.db.observe()
        plan = dbplan.plan(self.config, self.host.name, observed, self.settings.controller,
                           self.settings.datapath_type)
        for note in plan.notes:
            if note not in self._notes_reported:
                LOG.warning("%s", note)
                self._notes_reported.add(note)
        if plan.operations:
            for operation in plan.operations:
                LOG.info("database: %s", operation.describe())
            self.db.apply(plan.operations)
            self.counters.db_transactions += 1
            observed = self.db.observe()
        ofports = observed.ofports(dbplan.BR_TUN)
        if ofports != self._ofports:
            self._ofports = ofports
            self._mark(dbplan.BR_TUN)
            self.desired(dbplan.BR_TUN)  # built and encoded now, before the switch asks

    def desired(self, bridge: str) -> tuple[Flow, ...]:
        if bridge == dbplan.BR_INT:
            return br_int.build(self.config.cookie)
        return self._br_tun.get(self.config, self.host.name, self._ofports)

    def reconcile(self, bridge: str) -> Diff | None:
        """Read back, diff, send only the difference in one bundle, confirm with a barrier."""
        session = self.sessions.get(bridge)
        if session is None:
            return None
        started = time.monotonic()
        try:
            installed = session.read_flows()
        except SwitchTimeout as error:
            LOG.warning("%s; will retry", error)
            self._mark(bridge)
            return None
        result = diff(self.desired(bridge), installed, self.config.cookie)
        self.counters.reconciles += 1
        for desired_flow, foreign in result.conflicts:
            LOG.warning("%s: a foreign flow (cookie %#x) holds the place of ours; left alone: %s",
                        bridge, foreign.cookie, desired_flow.render())
        summary = (f"{bridge}: read {len(installed)} flows ({len(result.learned)} learned, "
                   f"{len(result.foreign)} foreign)")
        if not result.changes:
            LOG.info("%s: in sync, nothing sent (%.3f s)", summary, time.monotonic() - started)
            return result
        if LOG.isEnabledFor(logging.DEBUG):  # rendering 50,000 changes costs a second
            for change in result.changes:
                LOG.debug("%s: %s", bridge, change.render())
        sent = session.send_changes(result.changes)
        self.counters.flow_mods += sent.sent
        self.counters.openflow_errors = sum(s.errors_total for s in self.sessions.values())
        counts = ", ".join(f"{len(result.of_kind(kind))} {_PLURAL[kind]}" for kind in Kind)
        if sent.ok:
            LOG.info("%s: sent %s in one bundle; barrier confirmed (%.3f s)", summary, counts,
                     time.monotonic() - started)
        else:
            LOG.error("%s: the bundle of %s was refused (%d errors); the switch is unchanged; "
                      "retrying in %.0f s", summary, counts, len(sent.errors), RETRY_SECONDS)
            self._retry_at[bridge] = time.monotonic() + RETRY_SECONDS
        return result


_PORT_REASONS = {0: "added", 1: "deleted", 2: "modified"}
_PLURAL = {Kind.ADD: "adds", Kind.MODIFY: "modifies", Kind.DELETE: "deletes"}
