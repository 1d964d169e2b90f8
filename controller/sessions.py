"""This host's two bridges' OpenFlow connections, known by the datapath IDs the config gives them."""

from __future__ import annotations

from typing import Any

from controller.switch import SwitchSession


class Sessions:
    """One session per connected bridge, and the OpenFlow errors each has counted so far.

    A bridge is known by its datapath ID: any other switch that connects is
    not this host's and is ignored.  os-ken's threads connect and disconnect
    sessions; the worker uses them.
    """

    def __init__(self, bridge_by_dpid: dict[int, str]) -> None:
        self._bridge_by_dpid = bridge_by_dpid
        self._sessions: dict[str, SwitchSession] = {}
        self._errors_seen: dict[str, int] = {}

    def bridge_of(self, datapath: Any) -> str | None:
        return self._bridge_by_dpid.get(datapath.id)

    def connect(self, datapath: Any) -> str | None:
        """A new session for this datapath's bridge (replacing any older one); None if it is not ours."""
        bridge = self.bridge_of(datapath)
        if bridge is not None:
            self._sessions[bridge] = SwitchSession(datapath, bridge)
            self._errors_seen[bridge] = 0
        return bridge

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
