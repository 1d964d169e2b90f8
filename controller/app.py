"""The os-ken app: a thin shim from OpenFlow events to the agent.

Every handler only hands the event over; the agent's worker does the work.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3

from controller import guard, lazystats
from controller.agent import Agent

LOG = logging.getLogger("brtun.app")
ANY_STATE = [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER]


class BrtunApp(app_manager.OSKenApp):  # type: ignore[misc]
    OFP_VERSIONS: ClassVar[list[int]] = [ofproto_v1_3.OFP_VERSION]
    _REQUIRED_APP: ClassVar[list[str]] = ["os_ken.controller.ofp_handler"]

    def __init__(self, *args: Any, brtun_agent: Agent | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if brtun_agent is None:
            raise RuntimeError("BrtunApp needs the brtun_agent context (start it with `brtun run`)")
        self.agent = brtun_agent
        # Flow-stats replies stay bytes until flows.wire compares them (controller.lazystats): os-ken
        # picks its reply class from a table, so the lazy class is registered there, once, here.
        lazystats.install()
        # Messages a switch has no business sending, and lengths that do not add up, never reach
        # os-ken's parsers (some would loop forever on them).
        guard.install()

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: Any) -> None:
        self.agent.switch_connected(ev.msg.datapath)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _dead(self, ev: Any) -> None:
        if ev.datapath.id is not None:
            self.agent.switch_disconnected(ev.datapath)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        self.agent.port_changed(ev.msg.datapath, ev.msg)

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPAggregateStatsReply,
                 ofp_event.EventOFPBarrierReply,
                 ofp_event.EventONFBundleCtrlMsg], MAIN_DISPATCHER)
    def _reply(self, ev: Any) -> None:
        session = self.agent.session_for(ev.msg.datapath)
        if session is not None:
            session.deliver(ev.msg)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, ANY_STATE)
    def _error(self, ev: Any) -> None:
        session = self.agent.session_for(ev.msg.datapath)
        if session is not None:
            session.error(ev.msg)
        else:
            LOG.error("OpenFlow error from an unknown switch: type=%s code=%s", ev.msg.type, ev.msg.code)
