"""This host's switch database as the agent keeps it in step with a config.

controller.dbplan says what a config needs of the database (pure);
controller.ovsdb reads and writes it.  In between sits what the agent
remembers so that neither is done twice: the snapshot of the replica it
last read, the plan it last made, the notes it already logged and the
ofports br-tun's flows were built for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from controller import dbplan
from controller.ovsdb import SwitchDatabase
from controller.targets import spellings
from flows.config import Config

LOGGED_OPERATIONS = 50  # database operations logged one by one at INFO
LOG = logging.getLogger("brtun.agent")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is, and what bridges brtun creates must be told."""

    ovsdb: str  # e.g. unix:/var/run/openvswitch/db.sock
    host: str
    controller: str  # the target the bridges connect to
    datapath_type: str


@dataclass(frozen=True)
class Synced:
    operations: int  # carried out, in one transaction; 0: the database needed none
    ofports_changed: bool  # br-tun's: its flows must be built again


class DatabaseSync:
    """Used by the agent's worker only, except `look_again`, which os-ken's thread may call."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._db: SwitchDatabase | None = None
        self._seqno = -1  # the replica's change number when the database was last synced
        self._observed: tuple[int, dbplan.Observed] | None = None
        self._plan: tuple[Config, dbplan.Observed, dbplan.Plan] | None = None
        self._notes_reported: set[str] = set()
        self._ofports: dict[str, int] = {}

    def open(self) -> None:
        self._db = SwitchDatabase(self._settings.ovsdb)

    @property
    def opened(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    @property
    def ofports(self) -> dict[str, int]:
        """br-tun's ofports as of the last sync: its flows are built for them."""
        return self._ofports

    @property
    def changed(self) -> bool:
        """Whether the replica changed since the last sync (or a port status asked to look again)."""
        return self._db is not None and self._db.change_seqno != self._seqno

    def look_again(self) -> None:
        """A switch reported a port change: sync at the next round whatever the replica says."""
        self._seqno = -1

    def observe(self) -> dbplan.Observed:
        """The database as the local replica holds it; read again only once the replica changed."""
        assert self._db is not None
        seqno = self._db.change_seqno
        if self._observed is None or self._observed[0] != seqno:
            self._observed = (seqno, self._db.observe())
        return self._observed[1]

    def plan(self, config: Config) -> dbplan.Plan:
        """What the database needs for a config; the same config against the same database
        snapshot gives the same plan, so it is computed once."""
        observed = self.observe()
        if self._plan is None or self._plan[0] is not config or self._plan[1] is not observed:
            self._plan = (config, observed, dbplan.plan(config, self._settings.host, observed,
                                                        self._settings.controller, self._settings.datapath_type))
        return self._plan[2]

    def sync(self, config: Config, only: tuple[type, ...] | None = None) -> Synced:
        """Carry out the plan's operations (of the kinds in `only`, if given) in one transaction."""
        assert self._db is not None
        self._seqno = self._db.change_seqno
        plan = self.plan(config)
        for note in plan.notes:
            if note not in self._notes_reported:
                LOG.warning("%s", note)
                self._notes_reported.add(note)
        operations = [op for op in plan.operations if only is None or isinstance(op, only)]
        if operations:
            for operation in operations[:LOGGED_OPERATIONS]:
                LOG.info("database: %s", operation.describe())
            if len(operations) > LOGGED_OPERATIONS:  # a new host of a big cloud: thousands of tunnel ports
                LOG.info("database: ... and %d more (%d in this transaction; -v lists each)",
                         len(operations) - LOGGED_OPERATIONS, len(operations))
                for operation in operations[LOGGED_OPERATIONS:]:
                    LOG.debug("database: %s", operation.describe())
            self._db.apply(operations)
            self._observed = None  # our own change: read it back whatever the replica says yet
            self._seqno = self._db.change_seqno
        ofports = self.observe().ofports(dbplan.BR_TUN)
        changed = ofports != self._ofports
        self._ofports = ofports
        return Synced(len(operations), changed)

    def connect_now(self, bridges: Sequence[str]) -> list[str]:
        """Make the switch connect these bridges to us at once rather than at its next backoff retry:
        each bridge whose controller is ours gets the other spelling of our target
        (controller.targets).  Returns the bridges asked."""
        assert self._db is not None
        observed = self.observe()
        asked = []
        for bridge in bridges:
            seen = observed.bridges.get(bridge)
            if seen is None or len(seen.controllers) != 1:
                continue
            mine = spellings(self._settings.controller)
            if len(mine) < 2 or seen.controllers[0] not in mine:
                continue
            other = next(target for target in mine if target != seen.controllers[0])
            self._db.retarget_controller(bridge, other)
            asked.append(bridge)
        if asked:
            self._observed = None
            self._seqno = self._db.change_seqno
        return asked
