"""Neutron's own agent and l2population code, run without a server, a database or a switch.

What runs is Neutron's: the Open vSwitch agent (`OVSNeutronAgent`: tunnel_sync,
port_bound -> provision_local_vlan, add/remove_fdb_entries -> fdb_add_tun ->
add_fdb_flow, setup_entry_for_arp_reply, port_unbound -> reclaim_local_vlan),
its native tunnel bridge (`br_tun.OVSTunnelBridge`, every flow-mod composed by
it), and the server side of l2population (`L2populationMechanismDriver`:
update_port_postcommit, delete_port_postcommit, _get_port_fdb_entries).

What is replaced is only what would need a process around them, each at its
boundary: the OpenFlow transport (`_send_msg` records the message instead of
sending it, `_get_dp` answers with an OpenFlow 1.3 protocol description), the
switch database (`add_port` records the port with the options Neutron gives
it and answers with the ofport the switch would assign; br-int's port
records), the RPC (the plugin answers tunnel_sync from the config; the
l2population notifier hands each message to the agents it is addressed to,
through JSON as RabbitMQ would), and the server's database (l2pop's
queries answered from the ports bound so far).
"""

from __future__ import annotations

import collections
import contextlib
import json
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():  # eventlet's deprecation notices, on import
    warnings.simplefilter("ignore")
    from neutron.agent.common import ovs_lib
    from neutron.conf import common as common_conf
    from neutron.plugins.ml2.drivers.l2pop import db as l2pop_db
    from neutron.plugins.ml2.drivers.l2pop import mech_driver
    from neutron.plugins.ml2.drivers.openvswitch.agent import ovs_neutron_agent, vlanmanager
    from neutron.plugins.ml2.drivers.openvswitch.agent.openflow.native import br_tun
    from neutron_lib import constants as n_const
    from neutron_lib.plugins.ml2 import ovs_constants
    from os_ken.ofproto import ofproto_v1_3
    from os_ken.ofproto.ofproto_protocol import ProtocolDesc
    from oslo_config import cfg

from flows.config import Options

DATAPATH = ProtocolDesc(ofproto_v1_3.OFP_VERSION)
ACTIVE, DOWN = n_const.PORT_STATUS_ACTIVE, n_const.PORT_STATUS_DOWN


def configure() -> None:
    """The options the exercised code reads (once per process)."""
    if "host" not in cfg.CONF:
        common_conf.register_core_common_config_opts(cfg.CONF)
        cfg.CONF([], project="neutron")


@dataclass(frozen=True)
class Sent:
    """One OpenFlow message Neutron's bridge sent, as bytes on the wire."""

    xid: int
    data: bytes
    text: str


class TunnelBridge(br_tun.OVSTunnelBridge):
    """Neutron's native br-tun with the switch replaced at its two boundaries: OpenFlow and OVSDB."""

    def __init__(self, cookie: int, ofports: Callable[[str, dict[str, Any]], int]) -> None:  # no OVSDB to reach
        self.br_name = "br-tun"
        self._default_cookie = cookie
        self._reserved_cookies: set[int] = set()
        self.active_bundles: set[int] = set()
        self.messages: list[Sent] = []  # in the order Neutron sent them
        self.ports: dict[str, dict[str, Any]] = {}  # name -> the columns Neutron set
        self._ofports = ofports  # (port name, its columns) -> the ofport the switch assigns

    def _get_dp(self) -> tuple[Any, Any, Any]:
        return DATAPATH, DATAPATH.ofproto, DATAPATH.ofproto_parser

    def _send_msg(self, msg: Any, reply_cls: Any = None, reply_multi: bool = False,
                  active_bundle: Any = None) -> None:
        msg.set_xid(len(self.messages) + 2)  # 1 is the hello's
        msg.serialize()
        self.messages.append(Sent(msg.xid, bytes(msg.buf), str(msg)))

    @property
    def is_hw_offload_enabled(self) -> bool:
        return False

    def add_port(self, port_name: str, *interface_attr_tuples: Any) -> int:
        self.ports[port_name] = {key: dict(value) if isinstance(value, dict) else value
                                 for key, value in interface_attr_tuples}
        return self._ofports(port_name, self.ports[port_name])

    def delete_port(self, port_name: str) -> None:
        self.ports.pop(port_name, None)


class IntegrationBridge:
    """br-int's database rows, as port_bound reads and writes them."""

    def __init__(self) -> None:
        self.tags: dict[str, int] = {}
        self.ovsdb = types.SimpleNamespace(transaction=self._transaction, db_set=self._db_set,
                                           db_clear=lambda *args: None)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        yield types.SimpleNamespace(add=lambda command: None)

    def _db_set(self, table: str, name: str, value: tuple[str, Any]) -> None:
        if table == "Port" and value[0] == "tag":
            self.tags[name] = value[1]

    def db_get_val(self, table: str, name: str, column: str) -> dict[str, str]:
        return {}

    def set_db_attribute(self, *args: Any) -> None:
        pass


@dataclass
class NeutronPort:
    """A Neutron port bound to a host, as both the agent and the server see it."""

    id: str
    network: str
    network_type: str
    segmentation_id: int
    mac: str
    ips: tuple[str, ...]
    host: str
    status: str = DOWN

    @property
    def api(self) -> dict[str, Any]:
        return {"id": self.id, "network_id": self.network, "mac_address": self.mac,
                "fixed_ips": [{"subnet_id": "subnet", "ip_address": ip} for ip in self.ips],
                "device_owner": "compute:nova", "device_id": f"vm-{self.id}"}

    @property
    def segment(self) -> dict[str, Any]:
        return {"network_type": self.network_type, "segmentation_id": self.segmentation_id,
                "physical_network": None}


class NeutronAgent:
    """One host's OVSNeutronAgent, its tunnel bridge and its local VLAN map."""

    def __init__(self, host: str, local_ip: str, tunnel_types: tuple[str, ...], options: Options, cookie: int,
                 patch_int_ofport: int, ofports: Callable[[str, dict[str, Any]], int],
                 vlans: dict[tuple[str, int], int],
                 endpoints: dict[str, list[str]]) -> None:
        agent = object.__new__(ovs_neutron_agent.OVSNeutronAgent)  # __init__ would connect to OVSDB and RPC
        agent.conf = cfg.CONF
        agent.local_ip = local_ip
        agent.tunnel_types = list(tunnel_types)
        agent.l2_pop = options.l2_population
        agent.arp_responder_enabled = options.arp_responder and options.l2_population  # as __init__ decides
        agent.enable_tunneling = True
        agent.enable_distributed_routing = False
        agent.tun_br_ofports = {tunnel_type: {} for tunnel_type in ovs_constants.TUNNEL_NETWORK_TYPES}
        agent.available_local_vlans = set(range(n_const.MIN_VLAN_TAG, n_const.MAX_VLAN_TAG + 1))
        # Local VLANs as Neutron restores them from br-int's tags (_restore_local_vlan_map).
        agent._local_vlan_hints = {f"{network}/{segment}": {"vlan": vlan, "tun_ofports": set()}
                                   for (network, segment), vlan in vlans.items()}
        agent.available_local_vlans -= set(vlans.values())
        # The [agent] options, as OVSNeutronAgent.__init__ reads them (tos: its own formula).
        agent.vxlan_udp_port = options.vxlan_udp_port
        agent.dont_fragment = options.dont_fragment
        agent.tunnel_csum = options.tunnel_csum
        agent.tos = "inherit" if options.dscp_inherit else (options.dscp << 2 if options.dscp else None)
        agent.dvr_agent = types.SimpleNamespace(bind_port_to_dvr=lambda *args: None,
                                                unbind_port_from_dvr=lambda *args: None)
        agent.int_br = IntegrationBridge()
        agent.deleted_ports = set()
        agent.updated_ports = set()
        agent.patch_int_ofport = patch_int_ofport
        agent.context = None
        agent.plugin_rpc = types.SimpleNamespace(tunnel_sync=self._tunnel_sync)
        agent.tun_br = TunnelBridge(cookie, ofports)
        agent.vlan_manager = vlanmanager.LocalVlanManager()
        self.agent = agent
        self.host = host
        self._endpoints = endpoints  # tunnel type -> every endpoint the server knows of it
        self._vlan_map: collections.defaultdict[str, dict[Any, Any]] = collections.defaultdict(dict)

    @property
    def bridge(self) -> TunnelBridge:
        return self.agent.tun_br

    def _tunnel_sync(self, context: Any, local_ip: str, tunnel_type: str, host: str) -> dict[str, Any]:
        return {"tunnels": [{"ip_address": ip} for ip in self._endpoints.get(tunnel_type, [])]}

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """Neutron's VLAN manager is a process-wide singleton: each agent gets its own map."""
        manager = vlanmanager.LocalVlanManager()
        saved = manager.mapping
        manager.mapping = self._vlan_map
        try:
            yield self.agent
        finally:
            manager.mapping = saved

    def start(self) -> None:
        """What the agent does on start, before any port: br-tun's default table, then tunnel_sync."""
        with self.active() as agent:
            agent.setup_tunnel_br_flows()
            agent.tunnel_sync()

    def bind(self, port: NeutronPort, name: str, ofport: int) -> None:
        with self.active() as agent:
            vif = ovs_lib.VifPort(name, ofport, port.id, port.mac, None)
            agent.port_bound(vif, port.network, port.network_type, None, port.segmentation_id,
                             port.api["fixed_ips"], "compute:nova", False)

    def unbind(self, port: NeutronPort) -> None:
        with self.active() as agent:
            agent.port_unbound(port.id, port.network)

    def deliver(self, method: str, fdb_entries: dict[str, Any]) -> None:
        """An l2population message, as the RPC endpoint receives it."""
        with self.active() as agent:
            getattr(agent, method)(None, json.loads(json.dumps(fdb_entries)), host=None)

    def local_vlans(self) -> dict[str, int]:
        return {network: lvm.vlan for network, segments in self._vlan_map.items() for lvm in segments.values()}


@dataclass
class L2popServer:
    """The server side of l2population: Neutron's mechanism driver, with the database answered
    from the ports bound so far and the notifier delivering to the agents."""

    agents: dict[str, NeutronAgent]
    ports: dict[str, NeutronPort] = field(default_factory=dict)
    messages: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        driver = object.__new__(mech_driver.L2populationMechanismDriver)
        driver.rpc_ctx = None
        driver.L2populationAgentNotify = types.SimpleNamespace(
            add_fdb_entries=lambda context, entries, host=None: self._notify("add_fdb_entries", entries, host),
            remove_fdb_entries=lambda context, entries, host=None: self._notify("remove_fdb_entries", entries,
                                                                                host),
            update_fdb_entries=lambda context, entries, host=None: self._notify("update_fdb_entries", entries,
                                                                                host))
        self.driver = driver

    def _notify(self, method: str, entries: dict[str, Any] | None, host: str | None) -> None:
        if not entries:
            return
        self.messages.append((method, host, entries))
        for name, agent in self.agents.items():
            # an agent consumes l2population's topic only with l2_population on (setup_rpc)
            if (host is None or host == name) and agent.agent.l2_pop:
                agent.deliver(method, entries)

    # ----- l2pop's database queries, answered from the bound ports ---------------------
    def _agent(self, host: str) -> Any:
        agent = self.agents[host].agent
        return types.SimpleNamespace(host=host, configurations={
            "tunneling_ip": agent.local_ip, "tunnel_types": agent.tunnel_types, "l2_population": agent.l2_pop})

    @contextlib.contextmanager
    def _database(self) -> Iterator[None]:
        def active_ports(context: Any, network: str) -> list[tuple[Any, Any]]:
            return [(types.SimpleNamespace(port=port.api, host=port.host), self._agent(port.host))
                    for port in self.ports.values() if port.network == network and port.status == ACTIVE]

        def active_count(context: Any, host: str, network: str) -> int:
            return sum(1 for port in self.ports.values()
                       if port.host == host and port.network == network and port.status == ACTIVE)

        replaced = {
            "get_agent_by_host": lambda context, host: self._agent(host),
            "get_agent_ip_by_host": lambda context, host: self.agents[host].agent.local_ip,
            "get_nondistributed_active_network_ports": active_ports,
            "get_distributed_active_network_ports": lambda context, network: [],
            "get_agent_network_active_port_count": active_count,
        }
        saved = {name: getattr(l2pop_db, name) for name in replaced}
        for name, function in replaced.items():
            setattr(l2pop_db, name, function)
        try:
            yield
        finally:
            for name, function in saved.items():
                setattr(l2pop_db, name, function)

    # ----- what ML2 calls when an agent reports a port up or down, or a port is deleted ---------
    def set_status(self, port: NeutronPort, status: str) -> None:
        original = port.status
        port.status = status
        context = types.SimpleNamespace(current=port.api, original=port.api, host=port.host,
                                        original_host=port.host, status=status, original_status=original,
                                        plugin_context=None, bottom_bound_segment=port.segment,
                                        original_bottom_bound_segment=port.segment)
        with self._database():
            self.driver.update_port_postcommit(context)

    def delete(self, port: NeutronPort) -> None:
        port.status = DOWN
        del self.ports[port.id]
        context = types.SimpleNamespace(current=port.api, host=port.host, plugin_context=None,
                                        bottom_bound_segment=port.segment)
        with self._database():
            self.driver.delete_port_postcommit(context)
