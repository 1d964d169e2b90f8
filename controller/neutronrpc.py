"""Neutron's agent RPC over oslo.messaging: what brtun's Neutron source says and hears.

Topics, method names, versions and namespaces are Neutron's, from
neutron-lib (`neutron_lib.agent.topics`, `neutron_lib.constants`) and
Neutron's own agent (neutron/agent/rpc.py, the Open vSwitch agent's
setup_rpc), so neutron-server cannot tell brtun from
neutron-openvswitch-agent on the bus:

- calls on q-reports-plugin (namespace "state", 1.4): report_state;
- calls on q-plugin (1.4 to 1.9): tunnel_sync,
  get_devices_details_list_and_failed_devices, update_device_list,
  get_ports_by_vnic_type_and_host (--no-switch only);
- casts heard (Target version 1.7, the agent's), each topic consumed
  fanout and as TOPIC.HOST: q-agent-notifier-tunnel-update/-delete,
  -port-update/-delete, -network-update/-delete and, with l2population,
  -l2population-update (add/remove/update_fdb_entries).

The options are read from Neutron's own agent configuration files with
Neutron's names (docs/NEUTRON.md, "Pointing brtun at a Neutron"), plus a
[brtun] section for what only brtun has.  oslo.messaging reads its own
([DEFAULT] transport_url, [oslo_messaging_rabbit] ...) from the same files.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import oslo_messaging
from neutron_lib import constants as n_const
from neutron_lib.agent import topics
from neutron_lib.plugins.ml2 import ovs_constants
from oslo_config import cfg

from flows import naming
from flows.config import DEFAULT_COOKIE, Options
from flows.naming import TUNNEL_TYPES
from flows.neutronstate import LocalHost

LOG = logging.getLogger("brtun.neutron")
BINARY = "neutron-openvswitch-agent"  # what the server's agent list and the openvswitch mechanism driver expect
CONTROL_EXCHANGE = "neutron"  # neutron-lib's transport default: without it calls go to "openstack" and nobody answers
# The admin context Neutron's agents send (neutron_lib.context.get_admin_context_without_session().to_dict()):
# the server runs each call with it; a context without is_admin finds no other project's ports.
ADMIN_CONTEXT = {"is_admin": True, "roles": ["reader", "member", "admin"], "is_admin_project": True,
                 "has_global_access": True, "can_set_project_id": True, "user_id": None, "project_id": None,
                 "read_only": False, "show_deleted": False}
# The topics an Open vSwitch agent consumes (setup_rpc), by the kind of message each carries.
CONSUMED = ((ovs_constants.TUNNEL, topics.UPDATE), (ovs_constants.TUNNEL, topics.DELETE),
            (topics.PORT, topics.UPDATE), (topics.PORT, topics.DELETE),
            (topics.NETWORK, topics.UPDATE), (topics.NETWORK, topics.DELETE))
L2POP = (topics.L2POPULATION, topics.UPDATE)
# The methods brtun answers (the rest of Neutron's agent API, DVR and bindings, it does not implement).
METHODS = ("tunnel_update", "tunnel_delete", "port_update", "port_delete", "network_update", "network_delete",
           "add_fdb_entries", "remove_fdb_entries", "update_fdb_entries")

OPTIONS = {
    "ovs": [cfg.StrOpt("local_ip", help="this host's tunnel endpoint (IPv4 or IPv6), as Neutron's agent's [ovs] "
                                        "local_ip")],
    "agent": [
        cfg.ListOpt("tunnel_types", default=[], help="gre, vxlan, geneve: as Neutron's [agent] tunnel_types"),
        cfg.BoolOpt("l2_population", default=False),
        cfg.BoolOpt("arp_responder", default=False),
        cfg.BoolOpt("dont_fragment", default=True),
        cfg.BoolOpt("tunnel_csum", default=False),
        cfg.IntOpt("dscp", min=0, max=63),
        cfg.BoolOpt("dscp_inherit", default=False),
        cfg.PortOpt("vxlan_udp_port", default=4789),
        cfg.FloatOpt("report_interval", default=30, min=0.5, help="seconds between report_state calls"),
    ],
    "brtun": [
        cfg.StrOpt("datapath_id", help="br-tun's datapath ID (hex); default 0xb7 << 32 | local_ip"),
        cfg.StrOpt("int_datapath_id", help="br-int's datapath ID (hex); default br-tun's with bit 60 set"),
        cfg.StrOpt("cookie", default=hex(DEFAULT_COOKIE), help="the cookie of brtun's flows (hex)"),
        cfg.IntOpt("learn_hard_timeout", default=300, min=1, max=65535),
        cfg.FloatOpt("settle_seconds", default=3.0, min=0,
                     help="after a resync, how long to wait for l2population's entries of a network before "
                          "what was not announced again is dropped"),
        cfg.FloatOpt("first_call_timeout", default=5.0, min=0.5,
                     help="timeout of each try of the first calls (retried until the server answers)"),
    ],
}


class BadOptions(ValueError):
    """The agent's Neutron configuration cannot run brtun (each problem listed)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class NeutronSettings:
    local: LocalHost
    report_interval: float
    settle_seconds: float
    first_call_timeout: float
    rpc_timeout: float
    transport_url: str
    transport: Any = None  # oslo.messaging's, made from the same files


def load_settings(files: Sequence[str], host: str) -> NeutronSettings:
    """Read Neutron's agent configuration files (and oslo.messaging's options with them) into cfg.CONF.

    oslo.messaging registers some options on the global cfg.CONF only, so it is the one used, as
    Neutron's agents use it; brtun's process runs one agent."""
    conf = cfg.CONF
    for group, options in OPTIONS.items():
        conf.register_opts(options, group)
    oslo_messaging.set_transport_defaults(control_exchange=CONTROL_EXCHANGE)
    try:
        conf(args=[], project="neutron", default_config_files=list(files), validate_default_values=True)
    except (cfg.Error, ValueError) as error:
        raise BadOptions([f"cannot read {', '.join(files)}: {error}"]) from None
    problems = []
    local_ip = conf.ovs.local_ip
    try:
        if local_ip is None:
            problems.append("[ovs] local_ip must be this host's tunnel endpoint (an IPv4 or IPv6 address)")
        elif not _unicast(ipaddress.ip_address(local_ip)):
            problems.append(f"[ovs] local_ip: {local_ip} is not a unicast address")
    except ValueError:
        problems.append(f"[ovs] local_ip: {local_ip!r} is not an IP address")
    types = tuple(t for t in TUNNEL_TYPES if t in conf.agent.tunnel_types)
    unknown = [t for t in conf.agent.tunnel_types if t not in TUNNEL_TYPES]
    if unknown or not types:
        problems.append(f"[agent] tunnel_types must list some of {', '.join(TUNNEL_TYPES)}"
                        + (f" (not {', '.join(unknown)})" if unknown else ""))
    numbers = {}
    for name in ("datapath_id", "int_datapath_id", "cookie"):
        text = getattr(conf.brtun, name)
        try:
            numbers[name] = int(text, 0) if text else 0
        except ValueError:
            problems.append(f"[brtun] {name}: {text!r} is not a number")
    if conf.agent.arp_responder and not conf.agent.l2_population:
        LOG.warning("[agent] arp_responder needs l2_population: off, as Neutron's agent turns it off")
    if conf.agent.dscp is not None and conf.agent.dscp_inherit:
        problems.append("[agent] give dscp or dscp_inherit, not both")
    transport = None
    try:  # registers oslo.messaging's options (transport_url, [oslo_messaging_rabbit] ...), read from the files
        transport = oslo_messaging.get_rpc_transport(conf)
        oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topics.PLUGIN))  # rpc_response_timeout
    except (oslo_messaging.InvalidTransportURL, oslo_messaging.DriverLoadFailure, cfg.Error) as error:
        problems.append(f"[DEFAULT] transport_url: {error}")
    url = conf.transport_url  # oslo.messaging's default is rabbit:// (guest on localhost), as for Neutron's agent
    if problems:
        raise BadOptions(problems)
    assert local_ip is not None
    datapath_id = numbers.get("datapath_id") or _default_datapath_id(local_ip)
    options = Options(l2_population=conf.agent.l2_population,
                      arp_responder=conf.agent.arp_responder and conf.agent.l2_population,
                      learn_hard_timeout=conf.brtun.learn_hard_timeout, dont_fragment=conf.agent.dont_fragment,
                      tunnel_csum=conf.agent.tunnel_csum, dscp=conf.agent.dscp, dscp_inherit=conf.agent.dscp_inherit,
                      vxlan_udp_port=conf.agent.vxlan_udp_port)
    local = LocalHost(host, local_ip, types, datapath_id, numbers.get("int_datapath_id", 0),
                      numbers.get("cookie") or DEFAULT_COOKIE, options)
    return NeutronSettings(local, conf.agent.report_interval, conf.brtun.settle_seconds,
                           conf.brtun.first_call_timeout, float(conf.rpc_response_timeout), url, transport)


class RpcFailed(RuntimeError):
    """A call got no answer (the server or RabbitMQ is away) or an error back."""


class Endpoint:
    """What the server's casts arrive at: every method hands its arguments over, untouched, to
    `deliver(method, kwargs)` (the Neutron source checks them; this runs on oslo.messaging's threads)."""

    target = oslo_messaging.Target(version="1.7")  # Neutron's Open vSwitch agent's endpoint version

    def __init__(self, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        self._deliver = deliver

    def _hand(self, method: str, kwargs: dict[str, Any]) -> None:
        self._deliver(method, kwargs)

    def tunnel_update(self, context: Any, **kwargs: Any) -> None:
        self._hand("tunnel_update", kwargs)

    def tunnel_delete(self, context: Any, **kwargs: Any) -> None:
        self._hand("tunnel_delete", kwargs)

    def port_update(self, context: Any, **kwargs: Any) -> None:
        self._hand("port_update", kwargs)

    def port_delete(self, context: Any, **kwargs: Any) -> None:
        self._hand("port_delete", kwargs)

    def network_update(self, context: Any, **kwargs: Any) -> None:
        self._hand("network_update", kwargs)

    def network_delete(self, context: Any, **kwargs: Any) -> None:
        self._hand("network_delete", kwargs)

    def add_fdb_entries(self, context: Any, **kwargs: Any) -> None:
        self._hand("add_fdb_entries", kwargs)

    def remove_fdb_entries(self, context: Any, **kwargs: Any) -> None:
        self._hand("remove_fdb_entries", kwargs)

    def update_fdb_entries(self, context: Any, **kwargs: Any) -> None:
        self._hand("update_fdb_entries", kwargs)


class NeutronRpc:
    """One host's agent RPC: the calls it makes and the servers that hear the casts."""

    def __init__(self, settings: NeutronSettings) -> None:
        self.settings = settings
        self.host = settings.local.name
        self.agent_id = f"ovs-agent-{self.host}"  # as Neutron's agent names itself
        self._transport = settings.transport or oslo_messaging.get_rpc_transport(cfg.CONF, url=settings.transport_url)
        self._state = oslo_messaging.get_rpc_client(
            self._transport, oslo_messaging.Target(topic=topics.REPORTS, version="1.4",
                                                   namespace=n_const.RPC_NAMESPACE_STATE))
        self._plugin = oslo_messaging.get_rpc_client(self._transport,
                                                     oslo_messaging.Target(topic=topics.PLUGIN, version="1.9"))
        self._servers: list[Any] = []
        local = settings.local
        self._agent_state: dict[str, Any] = {
            "binary": BINARY, "host": self.host, "topic": n_const.L2_AGENT_TOPIC, "agent_type": n_const.AGENT_TYPE_OVS,
            "configurations": {"tunnel_types": list(local.tunnel_types), "tunneling_ip": local.local_ip,
                               "l2_population": local.options.l2_population,
                               "arp_responder_enabled": local.options.arp_responder,
                               "enable_distributed_routing": False, "bridge_mappings": {},
                               "integration_bridge": "br-int", "datapath_type": "", "extensions": [],
                               "devices": 0, "brtun": True},
            "start_flag": True}

    # ----- the casts --------------------------------------------------------------------
    def listen(self, deliver: Callable[[str, dict[str, Any]], None]) -> None:
        """Consume every topic Neutron's Open vSwitch agent consumes, fanout and TOPIC.HOST."""
        endpoint = Endpoint(deliver)
        consumed = [*CONSUMED, *([L2POP] if self.settings.local.options.l2_population else [])]
        for resource, operation in consumed:
            topic = topics.get_topic_name(topics.AGENT, resource, operation)
            server = oslo_messaging.get_rpc_server(self._transport,
                                                   oslo_messaging.Target(topic=topic, server=self.host),
                                                   [endpoint], executor="threading")
            server.start()
            self._servers.append(server)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop listening and close the connections, waiting `timeout` at most: oslo.messaging's listeners
        were seen to wait on their poll loop for longer, and the process exits next (RabbitMQ then drops
        this agent's fanout queues)."""
        servers, self._servers = self._servers, []

        def stop_all() -> None:
            for server in servers:
                server.stop()
            for server in servers:
                server.wait()
            self._transport.cleanup()

        thread = threading.Thread(target=stop_all, name="neutron-rpc-stop", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            LOG.info("neutron: oslo.messaging still stopping after %.0f s; leaving it", timeout)

    # ----- the calls --------------------------------------------------------------------
    def _call(self, client: Any, method: str, timeout: float, version: str | None = None, **kwargs: Any) -> Any:
        prepared = client.prepare(timeout=timeout, retry=1, **({"version": version} if version else {}))
        try:
            return prepared.call(ADMIN_CONTEXT, method, **kwargs)
        except oslo_messaging.MessagingTimeout:
            raise RpcFailed(f"{method}: no answer in {timeout:.0f} s") from None
        except oslo_messaging.MessagingException as error:
            raise RpcFailed(f"{method}: {type(error).__name__}: {error}"[:300]) from None
        except Exception as error:  # the server's own exception, sent back
            raise RpcFailed(f"{method}: the server failed: {type(error).__name__}: {str(error)[:200]}") from None

    def report_state(self, devices: int, timeout: float) -> Any:
        """Neutron's heartbeat; the reply is "revived" once the server had thought this agent dead."""
        state = dict(self._agent_state, uuid=str(uuid.uuid4()))
        state["configurations"] = dict(state["configurations"], devices=devices)
        now = datetime.datetime.now(datetime.UTC).strftime(n_const.ISO8601_TIME_FORMAT)
        reply = self._call(self._state, "report_state", timeout, agent_state={"agent_state": state}, time=now)
        self._agent_state.pop("start_flag", None)  # the first report only
        return reply

    def restart_flag(self) -> None:
        """The next report is a start (start_flag), as after a resync Neutron's l2population counts uptime."""
        self._agent_state["start_flag"] = True

    def tunnel_sync(self, tunnel_type: str, timeout: float) -> Any:
        return self._call(self._plugin, "tunnel_sync", timeout, version="1.4", tunnel_ip=self.settings.local.local_ip,
                          tunnel_type=tunnel_type, host=self.host)

    def devices_details(self, devices: Sequence[str], timeout: float) -> Any:
        return self._call(self._plugin, "get_devices_details_list_and_failed_devices", timeout, version="1.5",
                          devices=list(devices), agent_id=self.agent_id, host=self.host)

    def device_list(self, up: Sequence[str], down: Sequence[str], refresh_tunnels: bool, timeout: float) -> Any:
        return self._call(self._plugin, "update_device_list", timeout, version="1.9", devices_up=list(up),
                          devices_down=list(down), agent_id=self.agent_id, host=self.host,
                          refresh_tunnels=refresh_tunnels)

    def ports_bound_here(self, timeout: float) -> Any:
        """The ports Neutron has bound to this host (--no-switch: they stand for VIFs on br-int)."""
        return self._call(self._plugin, "get_ports_by_vnic_type_and_host", timeout, version="1.7",
                          vnic_type="normal", host=self.host)


def _unicast(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (address.is_unspecified or address.is_multicast or address.is_loopback or address.is_link_local
                or (address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255")))


def _default_datapath_id(local_ip: str) -> int:
    """br-tun's datapath ID when [brtun] datapath_id is not given: from the endpoint, so that it is stable."""
    shift = 32 if ipaddress.ip_address(local_ip).version == 4 else 48
    return 0xB7 << shift | naming.endpoint_number(local_ip)
