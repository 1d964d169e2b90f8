"""One connected bridge: read its flows back, send a difference in one bundle, confirm it.

Requests are sent from the agent's worker thread, which then waits; the
os-ken event handlers hand the replies over (`deliver`).  Nothing here
decides *what* to change: that is flows.diff.  A bundle is atomic (ONF
bundle extension, which Open vSwitch implements for OpenFlow 1.3): the
switch applies all of a difference or none of it, and a barrier confirms.

At scale the bytes come from flows.wire (byte-identical to os-ken's, kept
with each Flow) and go out in a few large writes instead of one queued
message per flow; flow-stats are kept as bytes (controller.lazystats) and
decoded only where they differ from the desired flows.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from controller.waiting import Signal
from flows import wire
from flows.diff import Change

LOG = logging.getLogger("brtun.switch")
_bundle_ids = itertools.count(1)
WRITE_BYTES = 1 << 20  # bundle messages are handed to os-ken's send queue in writes of about this size


class SwitchTimeout(RuntimeError):
    pass


@dataclass
class _Waiter:
    done: Signal = field(default_factory=Signal)
    replies: list[Any] = field(default_factory=list)


@dataclass
class SendResult:
    sent: int
    errors: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.errors


class SwitchSession:
    def __init__(self, datapath: Any, bridge: str) -> None:
        self.datapath = datapath
        self.bridge = bridge
        self.errors_total = 0
        self.closed = False
        self._waiters: dict[int, _Waiter] = {}
        self._in_flight: dict[int, str | Change] = {}  # xid -> what it was, for error reports
        self._errors: dict[int, list[str]] = {}

    @property
    def dpid(self) -> int:
        return int(self.datapath.id)

    # ----- called from os-ken's event thread ----------------------------
    def deliver(self, msg: Any) -> None:
        """A reply (flow stats part, barrier, bundle control) for a request we wait on."""
        waiter = self._waiters.get(msg.xid)
        if waiter is None:
            return
        waiter.replies.append(msg)
        more = getattr(msg, "flags", 0) & self.datapath.ofproto.OFPMPF_REPLY_MORE
        if type(msg).__name__ == "OFPFlowStatsReply" and more:
            return
        waiter.done.set()

    def error(self, msg: Any) -> None:
        """An OpenFlow error: log it with the request that caused it, count it, carry on."""
        self.errors_total += 1
        what = _describe(self._in_flight.get(msg.xid, "a request brtun does not track"))
        if getattr(msg, "experimenter", None) is not None:  # e.g. ONF's bundle errors
            kind = f"experimenter error {msg.experimenter:#x} exp_type={msg.exp_type}"
        else:
            kind = f"OpenFlow error type={msg.type} code={msg.code}"
        text = f"{kind} on {self.bridge} for {what}"
        LOG.error(text)
        self._errors.setdefault(msg.xid, []).append(text)
        waiter = self._waiters.get(msg.xid)
        if waiter is not None:
            waiter.replies.append(msg)
            waiter.done.set()

    def abandon(self) -> None:
        """The connection is gone: nobody waits for replies that cannot come."""
        self.closed = True
        for waiter in list(self._waiters.values()):
            waiter.done.set()

    # ----- called from the agent's worker thread ------------------------
    def _request(self, msg: Any, timeout: float) -> list[Any]:
        if self.closed:
            raise SwitchTimeout(f"{self.bridge}: disconnected")
        xid = self.datapath.set_xid(msg)
        waiter = _Waiter()
        self._waiters[xid] = waiter
        try:
            self.datapath.send_msg(msg)
            if not waiter.done.wait(timeout=timeout):
                raise SwitchTimeout(f"{self.bridge}: no reply to {type(msg).__name__} in {timeout:.0f} s")
            if self.closed and not waiter.replies:
                raise SwitchTimeout(f"{self.bridge}: disconnected before it replied to {type(msg).__name__}")
            return waiter.replies
        finally:
            self._waiters.pop(xid, None)

    def read_flows(self, timeout: float = 30) -> wire.InstalledFlows:
        """Every flow of every table, as the switch reports them (kept as bytes until compared)."""
        ofp, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        request = parser.OFPFlowStatsRequest(self.datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                             0, 0, parser.OFPMatch())
        entries: list[tuple[Any, int]] = []
        for reply in self._request(request, timeout):
            if type(reply).__name__ == "OFPErrorMsg":
                raise RuntimeError(f"{self.bridge} refused to list its flows")
            entries.extend(reply.entries())
        return wire.InstalledFlows(entries)

    def table_counts(self, tables: list[int], cookie: int, timeout: float = 10) -> dict[int, int]:
        """How many flows with our cookie each table holds: cheap enough to ask every second,
        and a wiped table (or a restarted switch) shows at once."""
        ofp, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        counts = {}
        for table in tables:
            request = parser.OFPAggregateStatsRequest(self.datapath, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                                      cookie, 0xFFFFFFFFFFFFFFFF, parser.OFPMatch())
            replies = self._request(request, timeout)
            if not replies or type(replies[0]).__name__ == "OFPErrorMsg":
                raise RuntimeError(f"{self.bridge} refused to count the flows of table {table}")
            counts[table] = int(replies[0].body.flow_count)
        return counts

    def send_changes(self, changes: tuple[Change, ...], timeout: float = 30) -> SendResult:
        """All changes in one atomic, ordered bundle, then a barrier."""
        started = time.monotonic()
        if not changes:
            return SendResult(0, [], 0.0)
        dp = self.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        bundle = next(_bundle_ids)
        flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
        tracked: list[int] = []
        dp.send_msg(parser.ONFBundleCtrlMsg(dp, bundle, ofp.ONF_BCT_OPEN_REQUEST, flags, []))
        pending: list[bytes] = []
        size = 0
        for change in changes:
            xid = self._next_xid()
            message = wire.bundle_add(wire.flow_mod(change.flow, change.command, xid), bundle, flags)
            self._in_flight[xid] = change
            tracked.append(xid)
            pending.append(message)
            size += len(message)
            if size >= WRITE_BYTES:
                dp.send(b"".join(pending))
                pending, size = [], 0
        if pending:
            dp.send(b"".join(pending))
        commit = parser.ONFBundleCtrlMsg(dp, bundle, ofp.ONF_BCT_COMMIT_REQUEST, flags, [])
        commit_xid = dp.set_xid(commit)
        self._in_flight[commit_xid] = f"the commit of bundle {bundle} ({len(changes)} changes)"
        tracked.append(commit_xid)
        dp.send_msg(commit)
        try:
            self._request(parser.OFPBarrierRequest(dp), timeout)
        finally:
            errors = [text for xid in tracked for text in self._errors.pop(xid, [])]
            for xid in tracked:
                self._in_flight.pop(xid, None)
        return SendResult(len(changes), errors, time.monotonic() - started)

    def _next_xid(self) -> int:
        """The next transaction ID, from the same counter os-ken's set_xid uses."""
        dp = self.datapath
        dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID
        return int(dp.xid)


def _describe(what: str | Change) -> str:
    """A tracked request in words; a change is rendered only when an error names it."""
    return what if isinstance(what, str) else f"{what.kind.value} {what.flow.render()}"
