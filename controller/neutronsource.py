"""The Neutron source: one host's config comes from neutron-server, over its agent RPC.

`brtun run --neutron CONF --host NAME` is the agent of a host Neutron
manages.  It speaks to neutron-server as neutron-openvswitch-agent does
(controller.neutronrpc): it reports its state, asks for the tunnel
endpoints, notices the VIFs Nova plugs into br-int, asks Neutron what each
is, reports it up once wired, and hears the server's casts (tunnels,
ports, networks, l2population's FDB entries).  What it learns is state
(flows.neutronstate), and that state is a brtun config like a YAML file's;
each change of it is carried out as a `controller.changes.Change`, exactly
as `brtun apply` carries out a file: one model, two sources.

Threads: oslo.messaging's threads only queue what arrives; one thread
(`_run`) applies the queue in batches, makes the RPC calls and hands each
new config to the agent's worker; a heartbeat thread reports the state.

Neutron or RabbitMQ going away changes nothing on the switches (no message,
no change); when they answer again the source resyncs as Neutron's agent
does after a failed report: endpoints from tunnel_sync, every VIF's details
again, every port reported up with refresh_tunnels, so that l2population
sends each network's entries again (docs/NEUTRON.md, "Resync").
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.neutronrpc import NeutronRpc, NeutronSettings, RpcFailed
from flows.config import Config, InvalidConfig
from flows.neutronstate import (
    Applied,
    Conflicting,
    Details,
    Malformed,
    NeutronState,
    network_id,
    parse_details,
    port_id,
)

LOG = logging.getLogger("brtun.neutron")
RETRY_SECONDS = 2.0  # after a failed call or a refused change
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Why parts of messages were ignored, by the words that say it (flows.neutronstate's reasons).
_IGNORED = (("unknown here", "unknown network"), ("IPv6", "IPv6"), ("further IP", "further IP of a MAC"),
            ("not known on", "unknown MAC"), ("not bound", "not bound here"), ("not a tunnel type", "not a tunnel"),
            ("administratively down", "admin down"), ("moves from", "address taken over"))

Apply = Callable[[Config, str], dict[str, Any]]  # (config, why) -> the change's summary; raises if refused


def _ignored_kind(reason: str) -> str:
    return next((kind for words, kind in _IGNORED if words in reason), "other")


@dataclass
class NeutronCounters:
    """What arrived and what became of it, for `brtun state` (its control socket) and the tests."""

    received: collections.Counter[str] = field(default_factory=collections.Counter)  # method -> messages
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)  # "method outcome"
    ignored: collections.Counter[str] = field(default_factory=collections.Counter)  # kind -> parts
    resyncs: collections.Counter[str] = field(default_factory=collections.Counter)  # reason -> resyncs
    rpc_failures: collections.Counter[str] = field(default_factory=collections.Counter)  # call -> failures
    changes: int = 0  # configs carried out
    flow_changes: int = 0
    refused_changes: int = 0
    devices_up: int = 0
    devices_down: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"received": dict(self.received), "outcomes": dict(self.outcomes), "ignored": dict(self.ignored),
                "resyncs": dict(self.resyncs), "rpc_failures": dict(self.rpc_failures),
                "changes": self.changes, "flow_changes": self.flow_changes,
                "refused_changes": self.refused_changes, "devices_up": self.devices_up,
                "devices_down": self.devices_down}


@dataclass
class _Settling:
    mark: int
    networks: set[str]
    deadline: float


class NeutronSource:
    """Neutron's agent RPC for one host, turned into configs for its agent.

    Two threads of its own: `_run` applies what arrives (casts, VIFs, the answers to calls) and hands each
    new config to the agent; `_call` makes the calls to neutron-server, one at a time, and queues each
    answer for `_run`.  A cast is never kept waiting behind a call (a port deleted must leave br-tun at
    once, not after some other port's details came back).

    `no_switch`: the VIFs are the ports Neutron has bound to this host (there is no br-int to find
    them on); otherwise the agent tells them (`set_vifs`)."""

    def __init__(self, settings: NeutronSettings, rpc: NeutronRpc, no_switch: bool = False) -> None:
        self.settings = settings
        self.rpc = rpc
        self.no_switch = no_switch
        self.counters = NeutronCounters()
        self.state = NeutronState(settings.local)
        self._lock = threading.Lock()  # guards the queues and the VIFs (oslo.messaging's, the agent's threads)
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()  # for `_run`
        self._calls: collections.deque[tuple[str, Any]] = collections.deque()  # for `_call`
        self._vifs: dict[str, str] | None = None  # port ID -> br-int port name, as last told
        self._wake = threading.Event()
        self._wake_calls = threading.Event()
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._apply: Apply | None = None
        self._applied: Config | None = None
        # owned by `_run`:
        self._known: dict[str, str] = {}  # VIFs: port ID -> port name
        self._reported_up: set[str] = set()
        self._want_details: set[str] = set()
        self._asked: set[str] = set()  # details asked for, not answered yet
        self._want_up: set[str] = set()
        self._want_down: set[str] = set()
        self._reporting = False  # a device-list report is under way
        self._resync: str | None = "start"  # why a resync is due
        self._resyncing = False
        self._refresh_up = False  # the next device-up report asks l2population for whole networks again
        self._settling: _Settling | None = None
        self._retry_at = 0.0
        self._healthy = False
        self._lost = False  # RabbitMQ dropped a connection: messages may be lost
        self._threads: list[threading.Thread] = []

    # ----- life ---------------------------------------------------------------------------
    def start(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Listen, report, resync; return once the first resync has settled (False if stopped first).

        The agent is built from `config()` only then: a restarted agent must not change a switch
        before it knows all that Neutron had told the one before it."""
        self.rpc.listen(self._deliver)
        _watch_rabbit(self._rabbit_trouble)
        while not self._first_report():
            if stopping() or self._stopping.wait(RETRY_SECONDS):
                return False
        for target in (self._run, self._call, self._heartbeat):
            thread = threading.Thread(target=target, name=f"neutron-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)
        while not self._synced.wait(0.2):
            if stopping():
                return False
        LOG.info("neutron: in sync with neutron-server: %d local ports, %d networks, %d remote hosts",
                 len(self.state.local_ports), len(self.state.segments()), len(self.config().hosts) - 1)
        return True

    def attach(self, apply: Apply, applied: Config) -> None:
        """From now on each new config goes to `apply`; `applied` is what the agent runs now."""
        with self._lock:
            self._apply, self._applied = apply, applied
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._wake_calls.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.rpc.stop()

    def config(self) -> Config:
        return self.state.config()

    def origin_text(self) -> str:
        """The state as the YAML config it amounts to (`brtun state`'s config; `brtun render` it)."""
        return yaml.dump(self.state.raw(), Dumper=_DUMPER, sort_keys=False)

    def request_resync(self, reason: str) -> None:
        self._post("resync", reason)

    def set_vifs(self, vifs: Mapping[str, str]) -> None:
        """The VIFs on br-int now (port ID -> port name): the agent's worker calls this."""
        with self._lock:
            self._vifs = dict(vifs)
        self._wake.set()

    def info(self) -> dict[str, Any]:
        """For `brtun state`: the counters and what is known."""
        return {"transport": redact(self.settings.transport_url), "healthy": self._healthy,
                "local_ports": len(self.state.local_ports), "networks": len(self.state.segments()),
                "endpoints": len(self.state.endpoints), **self.counters.as_dict()}

    # ----- what arrives -----------------------------------------------------------------------
    def _deliver(self, method: str, kwargs: dict[str, Any]) -> None:
        """On oslo.messaging's threads: queue it, nothing else."""
        self._post("cast", (method, kwargs))

    def _post(self, kind: str, what: Any) -> None:
        with self._lock:
            self._queue.append((kind, what))
        self._wake.set()

    def _rabbit_trouble(self) -> None:
        self._lost = True
        self._healthy = False

    # ----- the heartbeat ------------------------------------------------------------------------
    def _first_report(self) -> bool:
        """report_state with start_flag; retried with a short timeout (one agent's first call was seen to
        hang for 20 s when several started at once)."""
        try:
            self.rpc.report_state(len(self._vifs or {}), self.settings.first_call_timeout)
        except RpcFailed as error:
            self.counters.rpc_failures["report_state"] += 1
            LOG.warning("neutron: neutron-server does not answer yet (%s); trying again", error)
            return False
        self._healthy = True
        return True

    def _heartbeat(self) -> None:
        interval = self.settings.report_interval
        while not self._stopping.wait(interval if self._healthy and not self._lost else 1.0):
            lost, self._lost = self._lost, False
            timeout = interval if self._healthy and not lost else min(interval, self.settings.first_call_timeout)
            try:
                reply = self.rpc.report_state(len(self.state.local_ports), timeout)
            except RpcFailed as error:
                self.counters.rpc_failures["report_state"] += 1
                if self._healthy:
                    LOG.warning("neutron: report_state failed (%s): the switches keep forwarding as they are; "
                                "resync once neutron-server answers", error)
                self._healthy = False
                self._lost = self._lost or lost
                continue
            if reply == "revived":
                self.request_resync("the server had thought this agent dead")
            elif not self._healthy or lost:
                self.request_resync("neutron-server answers again" if not self._healthy
                                    else "RabbitMQ dropped a connection")
            self._healthy = True
            self._wake_calls.set()

    # ----- calls, one at a time, on their own thread --------------------------------------------
    def _ask(self, call: str, what: Any = None) -> None:
        """Queue a call for `_call` (from `_run`)."""
        with self._lock:
            self._calls.append((call, what))
        self._wake_calls.set()

    def _call(self) -> None:
        while not self._stopping.is_set():
            self._wake_calls.wait(timeout=0.5)
            self._wake_calls.clear()
            while not self._stopping.is_set() and self._healthy:
                with self._lock:
                    if not self._calls:
                        break
                    call, what = self._calls.popleft()
                try:
                    self._post(call, (what, self._make_call(call, what)))
                except RpcFailed as error:
                    self.counters.rpc_failures[RPC_NAMES[call]] += 1
                    LOG.warning("neutron: %s; trying again", error)
                    self._post("failed", (call, what))
                    self._stopping.wait(RETRY_SECONDS)
                except Exception:
                    LOG.exception("neutron: %s failed; trying again", RPC_NAMES[call])
                    self._post("failed", (call, what))
                    self._stopping.wait(RETRY_SECONDS)

    def _make_call(self, call: str, what: Any) -> Any:
        timeout = self.settings.first_call_timeout if not self._synced.is_set() else self.settings.rpc_timeout
        if call == "sync":
            replies = {t: self.rpc.tunnel_sync(t, timeout) for t in self.settings.local.tunnel_types}
            bound = self.rpc.ports_bound_here(timeout) if self.no_switch else None
            return replies, bound
        if call == "details":
            return self.rpc.devices_details(what, timeout)
        up, down, refresh = what
        return self.rpc.device_list(up, down, refresh, timeout)

    # ----- the one thread that changes things ---------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._round()
            except Exception:
                LOG.exception("neutron: a round failed; retrying")
                self._stopping.wait(RETRY_SECONDS)

    def _round(self) -> None:
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
            vifs, self._vifs = self._vifs, None
        before = copy.deepcopy(self.state) if batch else None
        handled: collections.Counter[str] = collections.Counter()
        for kind, what in batch:
            if kind == "cast":
                handled[what[0]] += 1
                self._handle(*what)
            elif kind == "resync":
                self._resync = self._resync or what
            else:
                self._answered(kind, *what)
        if vifs is not None and not self.no_switch:
            self._follow_vifs(vifs)
        try:
            self.state.config()
        except InvalidConfig as error:  # flows.neutronstate promises never; if it happens, nothing is applied
            LOG.error("neutron: these messages would make an invalid config; all of them ignored: %s", error)
            self.state = before or self.state
            self.counters.outcomes["batch invalid"] += 1
            return
        if self._resync and not self._resyncing and self._healthy:
            self._resyncing = True
            LOG.info("neutron: resync (%s): endpoints, every VIF's details again, every port up with "
                     "refresh_tunnels", self._resync)
            self.counters.resyncs[self._resync] += 1
            self._ask("sync")
        self._ask_details()
        self._settle()
        why = ", ".join(f"{m} x{n}" if n > 1 else m for m, n in sorted(handled.items())) or "ports on br-int"
        if self._carry_out(why):
            self._report_devices()
        if not self._synced.is_set() and self._resync is None and self._settling is None \
                and not self._want_details and not self._asked and not self._refresh_up and not self._reporting:
            self._synced.set()

    def _answered(self, kind: str, what: Any, reply: Any) -> None:
        """An answer from `_call` (or its failure)."""
        if kind == "failed":
            call, asked = what, reply
            if call == "sync":
                self._resyncing = False  # asked again once the server answers (the heartbeat says so)
            elif call == "details":
                self._asked.difference_update(asked)
                self._want_details.update(p for p in asked if p in self._known)
                self._retry_at = time.monotonic() + RETRY_SECONDS
            else:
                self._reporting = False
                up, down, refresh = asked
                self._want_up.update(up)
                self._want_down.update(down)
                self._refresh_up = self._refresh_up or refresh
                self._retry_at = time.monotonic() + RETRY_SECONDS
            self._wake_at(self._retry_at)
            return
        if kind == "sync":
            self._synced_endpoints(reply)
        elif kind == "details":
            self._details(what, reply)
        else:
            self._reported(what, reply)

    def _synced_endpoints(self, reply: Any) -> None:
        replies, bound = reply
        for tunnel_type, answer in replies.items():
            try:
                self.state.tunnel_sync(tunnel_type, answer)
            except Malformed as error:
                self.counters.outcomes["tunnel_sync malformed"] += 1
                LOG.warning("neutron: tunnel_sync's reply refused, malformed: %s", error)
        if self.no_switch:
            self._follow_bound_ports(bound)
        self._resync = None
        self._resyncing = False
        self._settling = _Settling(self.state.begin_refresh(), set(), 0.0)  # networks known after the details
        self._want_details.update(self._known)
        self._reported_up.clear()
        self._refresh_up = True

    def _handle(self, method: str, kwargs: dict[str, Any]) -> None:
        self.counters.received[method] += 1
        try:
            result = self._apply_message(method, kwargs)
        except Malformed as error:
            self.counters.outcomes[f"{method} malformed"] += 1
            LOG.warning("neutron: %s refused, malformed: %s", method, error)
            return
        except Conflicting as error:
            self.counters.outcomes[f"{method} conflicting"] += 1
            LOG.warning("neutron: %s refused, it contradicts what this host knows: %s", method, error)
            return
        self.counters.outcomes[f"{method} {'applied' if result.changed else 'unchanged'}"] += 1
        for reason in result.ignored:
            self.counters.ignored[_ignored_kind(reason)] += 1
            LOG.debug("neutron: %s: ignored %s", method, reason)

    def _apply_message(self, method: str, kwargs: dict[str, Any]) -> Applied:
        state = self.state
        if method == "add_fdb_entries":
            return state.add_fdb(kwargs.get("fdb_entries"))
        if method == "remove_fdb_entries":
            return state.remove_fdb(kwargs.get("fdb_entries"))
        if method == "update_fdb_entries":
            return state.update_fdb(kwargs.get("fdb_entries"))
        if method == "tunnel_update":
            return state.tunnel_update(kwargs.get("tunnel_ip"), kwargs.get("tunnel_type"))
        if method == "tunnel_delete":
            return state.tunnel_delete(kwargs.get("tunnel_ip"), kwargs.get("tunnel_type"))
        if method == "port_delete":
            pid = port_id(kwargs.get("port_id"))
            self._want_details.discard(pid)
            self._want_up.discard(pid)
            self._reported_up.discard(pid)  # Neutron has forgotten it: nothing to report down
            if self.no_switch:
                self._known.pop(pid, None)
            return state.remove_local_port(pid)
        if method == "network_delete":
            return state.remove_network(network_id(kwargs.get("network_id")))
        if method == "port_update":
            return self._port_update(kwargs.get("port"))
        if method == "network_update":
            network = kwargs.get("network")
            net = network_id(network.get("id") if isinstance(network, dict) else None)
            self._want_details.update(state.local_ports_on(net))  # Neutron's agent looks at their details again
            return Applied(False)
        raise Malformed(f"unknown method {method}")

    def _port_update(self, port: object) -> Applied:
        if not isinstance(port, dict):
            raise Malformed("port_update without a port")
        pid = port_id(port.get("id"))
        if self.no_switch:  # a port bound here stands for a VIF (there is no br-int to find it on)
            bound_here = port.get("binding:host_id") == self.settings.local.name
            if bound_here and pid not in self._known:
                self._known[pid] = _device_name(pid)
            elif not bound_here and pid in self._known:
                self._known.pop(pid)
                if pid in self._reported_up:
                    self._want_down.add(pid)
                self._reported_up.discard(pid)
                return self.state.remove_local_port(pid)
        if pid in self._known:
            self._want_details.add(pid)
        return Applied(False)

    def _follow_vifs(self, vifs: Mapping[str, str]) -> None:
        """Nova plugged or unplugged VIFs: ask about the new, unwire the gone (and report them down)."""
        for pid, name in vifs.items():
            if self._known.get(pid) != name:
                self._known[pid] = name
                self._want_details.add(pid)
        for pid in [p for p in self._known if p not in vifs]:
            del self._known[pid]
            self._want_details.discard(pid)
            self._want_up.discard(pid)
            if self.state.remove_local_port(pid).changed or pid in self._reported_up:
                self._want_down.add(pid)
            self._reported_up.discard(pid)

    def _follow_bound_ports(self, ports: object) -> None:
        if not isinstance(ports, list):
            self.counters.outcomes["get_ports_by_vnic_type_and_host malformed"] += 1
            return
        bound = {port_id(p.get("id")) for p in ports if isinstance(p, dict)}
        for pid in bound - set(self._known):
            self._known[pid] = _device_name(pid)
        for pid in set(self._known) - bound:
            del self._known[pid]
            if self.state.remove_local_port(pid).changed:
                self._want_down.add(pid)

    # ----- device details -----------------------------------------------------------------------
    def _ask_details(self) -> None:
        wanted = sorted(self._want_details - self._asked)
        if not wanted or time.monotonic() < self._retry_at or self._resyncing:
            return
        self._want_details.difference_update(wanted)
        self._asked.update(wanted)
        self._ask("details", wanted)

    def _details(self, asked: list[str], reply: Any) -> None:
        self._asked.difference_update(asked)
        self.counters.received["devices details"] += 1
        if not isinstance(reply, dict) or not isinstance(reply.get("devices"), list):
            self.counters.outcomes["devices details malformed"] += 1
            LOG.warning("neutron: devices details refused, malformed: %r", reply)
            return
        failed = reply.get("failed_devices") or []
        for raw in reply["devices"]:
            try:
                pid = port_id(raw.get("device") if isinstance(raw, dict) else None)
                if pid not in self._known or pid in self._want_details:
                    continue  # unplugged meanwhile, or to be asked again (updated meanwhile)
                self._wire(parse_details(raw, self._known[pid], self.settings.local.tunnel_types))
            except Malformed as error:
                self.counters.outcomes["devices details malformed"] += 1
                LOG.warning("neutron: a device's details refused, malformed: %s", error)
            except Conflicting as error:
                self.counters.outcomes["devices details conflicting"] += 1
                LOG.warning("neutron: a device's details refused: %s", error)
        if failed:
            LOG.warning("neutron: no details for %s yet; asking again", ", ".join(map(str, failed))[:300])
            self._want_details.update(p for p in failed if isinstance(p, str) and p in self._known)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._wake_at(self._retry_at)

    def _wire(self, details: Details) -> None:
        was_up = details.device in self._reported_up
        result = self.state.set_local_port(details)
        if details.port is not None:
            if not was_up:
                self._want_up.add(details.device)
            self._want_down.discard(details.device)
        else:
            if result.changed or was_up:
                self._want_down.add(details.device)
            self._want_up.discard(details.device)
            self._reported_up.discard(details.device)
            self.counters.ignored[_ignored_kind(details.reason)] += 1
            LOG.info("neutron: port %s (%s) not wired: %s", details.device, self._known.get(details.device),
                     details.reason)

    def _settle(self) -> None:
        """After a resync: until each carried network's entries came again, or the settle time is over (a
        network no other host has ports on gets none).  The first resync ends so before the agent starts."""
        settling = self._settling
        if settling is None or self._want_details or self._asked:
            return
        if not settling.deadline:  # the details are in: the networks whose entries must come again are known
            settling.networks = set(self.state.segments())
            settling.deadline = time.monotonic() + (self.settings.settle_seconds if settling.networks else 0)
        refreshed = self.state.refreshed(settling.mark)
        if settling.networks - refreshed and time.monotonic() < settling.deadline:
            self._wake_at(settling.deadline)
            return
        missing = sorted(settling.networks - refreshed)
        if missing:
            LOG.info("neutron: resync: no entries came again for %s in %.0f s (no other host has ports there, or "
                     "they were lost): what was known is kept", ", ".join(missing), self.settings.settle_seconds)
        self._settling = None

    def _wake_at(self, when: float) -> None:
        threading.Timer(max(0.0, when - time.monotonic()) + 0.01, self._wake.set).start()

    # ----- carrying a config out ---------------------------------------------------------------
    def _carry_out(self, why: str) -> bool:
        """Hand the config to the agent if it changed; True when the agent holds it (or none is attached)."""
        if self._apply is None:
            return True
        config = self.state.config()
        if config == self._applied:
            return True
        if time.monotonic() < self._retry_at:
            self._wake_at(self._retry_at)
            return False
        old = self._applied
        started = time.perf_counter()
        try:
            summary = self._apply(config, why)
        except Exception as error:  # the switch refused, or the change was rejected: try again later
            self.counters.refused_changes += 1
            LOG.error("neutron: the change (%s) was not carried out: %s; trying again in %.0f s", why, error,
                      RETRY_SECONDS)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._wake_at(self._retry_at)
            return False
        self._applied = config
        self.counters.changes += 1
        self.counters.flow_changes += int(summary.get("flow_changes", 0))
        added, removed = _remote_macs(old, config)
        LOG.info("neutron: applied (%s) in %.1f ms: %d flow changes%s%s", why,
                 (time.perf_counter() - started) * 1000, summary.get("flow_changes", 0),
                 f"; remote MACs + {' '.join(added[:8])}" if added else "",
                 f"; remote MACs - {' '.join(removed[:8])}" if removed else "")
        return True

    def _report_devices(self) -> None:
        """Ports now wired are reported up (and unwired ones down), once the agent holds their config."""
        if self._reporting or time.monotonic() < self._retry_at:
            return
        up = sorted(p for p in self._want_up if p in self.state.local_ports)
        down = sorted(self._want_down)
        if not up and not down and not (self._refresh_up and not self._want_details and not self._asked):
            return
        refresh, self._refresh_up = self._refresh_up, False
        self._want_up.difference_update(up)
        self._want_down.difference_update(down)
        self._reporting = True
        self._ask("report", (up, down, refresh))

    def _reported(self, asked: tuple[list[str], list[str], bool], reply: Any) -> None:
        self._reporting = False
        up, down, refresh = asked
        failed = set(reply.get("failed_devices_up", []) if isinstance(reply, dict) else [])
        for pid in up:
            if pid in failed:
                self._want_up.add(pid)
            elif pid in self.state.local_ports:
                self._reported_up.add(pid)
        self.counters.devices_up += len(up) - len(failed)
        self.counters.devices_down += len(down)
        if up or down:
            LOG.info("neutron: reported %s%s%s", f"{len(up) - len(failed)} up" if up else "",
                     f" {len(down)} down" if down else "", " (refresh_tunnels)" if refresh else "")
        if failed:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._wake_at(self._retry_at)


RPC_NAMES = {"sync": "tunnel_sync", "details": "get_devices_details_list_and_failed_devices",
             "report": "update_device_list"}


def _device_name(pid: str) -> str:
    """The name Nova would give the port's tap device (--no-switch has none; its config needs one)."""
    return f"tap{pid[:11]}"


def _remote_macs(old: Config | None, new: Config) -> tuple[list[str], list[str]]:
    def remote(config: Config | None) -> set[str]:
        if config is None:
            return set()
        local = config.host_names[0]
        return {port.mac for host in config.hosts if host.name != local for port in host.ports}

    before, after = remote(old), remote(new)
    return sorted(after - before), sorted(before - after)


def redact(url: str) -> str:
    """A transport URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


class _RabbitWatch(logging.Handler):
    """oslo.messaging reconnects by itself and says so only in its log: a dropped connection may have lost
    casts, so the source resyncs once the server answers (docs/NEUTRON.md, "Resync")."""

    def __init__(self, trouble: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self._trouble = trouble

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR or "Reconnected to AMQP server" in text:
            self._trouble()


def _watch_rabbit(trouble: Callable[[], None]) -> None:
    logger = logging.getLogger("oslo_messaging._drivers.impl_rabbit")
    logger.addHandler(_RabbitWatch(trouble))
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
