"""This host's two bridges' OpenFlow connections, known by the datapath IDs the config gives them."""

from __future__ import annotations

from typing import Any

from controller.switch import SwitchSession


class Sessions:
    """One session per connected bridge, and the OpenFlow errors each has counted so far.

    A bridge is known by its datapath ID: any other switch that connects is
    not this host's and is ignored, and a bridge's established connection is
    never displaced by another claiming its ID.  os-ken's threads connect and
    disconnect sessions; the worker uses them.
    """

    def __init__(self, bridge_by_dpid: dict[int, str]) -> None:
        self._bridge_by_dpid = bridge_by_dpid
        self._sessions: dict[str, SwitchSession] = {}
        self._errors_seen: dict[str, int] = {}

    def bridge_of(self, datapath: Any) -> str | None:
        return self._bridge_by_dpid.get(datapath.id)

    def connect(self, datapath: Any) -> tuple[str | None, bool]:
        """(this datapath's bridge or None if it is not ours, whether it now has the bridge's session).

        A bridge keeps the connection it has: a second connection that claims the same datapath ID
        while the first is open is refused (False), whoever sent it.  Only once the first has gone
        (controller.app reports it dead) may another take its place."""
        bridge = self.bridge_of(datapath)
        if bridge is None:
            return None, False
        current = self._sessions.get(bridge)
        if current is not None and not current.closed and getattr(current.datapath, "is_active", True):
            return bridge, False
        self._sessions[bridge] = SwitchSession(datapath, bridge)
        self._errors_seen[bridge] = 0
        return bridge, True

    def disconnect(self, datapath: Any) -> str | None:
        """Drop the session of this very connection (not a newer one of the same bridge); its bridge, if any."""
        session = self.session_for(datapath)
        if session is None:
            return None
        del self._sessions[session.bridge]
        session.abandon()
        return session.bridge

    def get(self, bridge: str) -> SwitchSession | None:
        return self._sessions.get(bridge)

    def session_for(self, datapath: Any) -> SwitchSession | None:
        bridge = self.bridge_of(datapath)
        session = self._sessions.get(bridge) if bridge else None
        return session if session is not None and session.datapath is datapath else None

    def new_errors(self, bridge: str, session: SwitchSession) -> int:
        """OpenFlow errors this session received since the last call."""
        new = session.errors_total - self._errors_seen.get(bridge, 0)
        self._errors_seen[bridge] = session.errors_total
        return new
