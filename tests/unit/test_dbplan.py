"""controller.dbplan: what the switch database should hold, as pure operations."""

from __future__ import annotations

from controller import dbplan
from controller.dbplan import (
    AddPort,
    DeletePort,
    EnsureBridge,
    FixPort,
    Observed,
    ObservedBridge,
    ObservedPort,
    SetTag,
)
from flows.config import parse_config
from tests.unit.helpers import config

CONTROLLER = "tcp:127.0.0.1:6653"
EXAMPLE = config("example")


def converged() -> Observed:
    """What the database looks like after the agent applied the example for compute1."""
    bridges = {name: ObservedBridge(name, "netdev", "secure", ("OpenFlow13",),
                                    {"datapath-id": f"{dpid:016x}", "disable-in-band": "true"}, (CONTROLLER,))
               for name, dpid in (("br-tun", 0xB01), ("br-int", 0x1000000000000B01))}
    ports = {}
    for spec in dbplan.port_specs(EXAMPLE, EXAMPLE.host("compute1")):
        ports[spec.name] = ObservedPort(spec.name, spec.bridge, spec.type, dict(spec.options),
                                        spec.ofport_request, external_ids={"brtun": "compute1"})
    return Observed(bridges, ports)


def plan(observed: Observed) -> dbplan.Plan:
    return dbplan.plan(EXAMPLE, "compute1", observed, CONTROLLER, "netdev")


def with_port(observed: Observed, port: ObservedPort) -> Observed:
    return Observed(observed.bridges, {**observed.ports, port.name: port})


def test_an_empty_database_gets_both_bridges_the_patch_pair_and_the_tunnel_ports() -> None:
    result = plan(Observed({}, {}))
    assert [op.describe() for op in result.operations] == [
        "create br-tun (datapath ID 0xb01, netdev)",
        "create br-int (datapath ID 0x1000000000000b01, netdev)",
        "add patch-int to br-tun (patch)",
        "add patch-tun to br-int (patch)",
        "add gre-c0a8640d to br-tun (gre)",
        "add vxlan-c0a8640c to br-tun (vxlan)",
    ]
    (gre,) = [op for op in result.operations if isinstance(op, AddPort) and op.spec.name == "gre-c0a8640d"]
    assert dict(gre.spec.options) == {"remote_ip": "192.168.100.13", "local_ip": "192.168.100.11",
                                      "in_key": "flow", "out_key": "flow", "df_default": "true",
                                      "egress_pkt_mark": "0"}
    assert gre.spec.ofport_request == 2


def test_a_converged_database_needs_nothing() -> None:
    assert plan(converged()) == dbplan.Plan((), ())


def test_a_port_with_the_right_name_but_wrong_options_is_fixed_in_place() -> None:
    seen = converged()
    wrong = ObservedPort("gre-c0a8640d", "br-tun", "gre", {"remote_ip": "192.168.100.13", "key": "flow"}, 2)
    (operation,) = plan(with_port(seen, wrong)).operations
    assert isinstance(operation, FixPort)
    assert operation.reason == ("options df_default=true, egress_pkt_mark=0, in_key=flow, local_ip=192.168.100.11, "
                                "out_key=flow; removes options the config does not give: key=flow; adopted")


def test_tunnel_ports_brtun_made_are_deleted_when_the_config_drops_them_others_are_reported() -> None:
    seen = converged()
    ours = ObservedPort("gre-0a000063", "br-tun", "gre", {"remote_ip": "10.0.0.99"}, 9,
                        external_ids={"brtun": "compute1"})
    theirs = ObservedPort("gre-0a000064", "br-tun", "gre", {"remote_ip": "10.0.0.100"}, 10)
    result = plan(with_port(with_port(seen, ours), theirs))
    assert result.operations == (DeletePort("br-tun", "gre-0a000063", "the config no longer implies it"),)
    assert result.notes == ("gre-0a000064 on br-tun is not a tunnel port of this config: left alone, "
                            "its packets are dropped (no table 0 flow)",)


def test_vif_ports_are_tagged_by_attached_mac_or_name_and_strangers_get_the_dead_vlan() -> None:
    seen = converged()
    vm = ObservedPort("qvo1", "br-int", "", external_ids={"attached-mac": "fa:16:3e:00:00:02"})
    stranger = ObservedPort("qvo2", "br-int", "", external_ids={"iface-id": "x"}, tag=2)
    plain = ObservedPort("eth9", "br-int", "")
    right = ObservedPort("qvo3", "br-int", "", tag=1, external_ids={"attached-mac": "fa:16:3e:00:00:01"})
    result = plan(with_port(with_port(with_port(with_port(seen, vm), stranger), plain), right))
    assert result.operations == (
        SetTag("qvo1", 2, "port of net2 (fa:16:3e:00:00:02)"),
        SetTag("qvo2", 4095, "no config port has its MAC (dead VLAN)"),
    )


def test_a_bridge_with_wrong_settings_is_fixed_without_touching_a_right_controller() -> None:
    seen = converged()
    loose = ObservedBridge("br-tun", "netdev", None, ("OpenFlow10",), {}, (CONTROLLER,))
    result = plan(Observed({**seen.bridges, "br-tun": loose}, seen.ports))
    (operation,) = result.operations
    assert isinstance(operation, EnsureBridge)
    assert (operation.create, operation.set_controller) == (False, False)


def test_a_bridge_on_another_datapath_type_is_reported_not_recreated() -> None:
    seen = converged()
    system = ObservedBridge("br-int", "system", "secure", ("OpenFlow13",),
                            seen.bridges["br-int"].other_config, (CONTROLLER,))
    result = plan(Observed({**seen.bridges, "br-int": system}, seen.ports))
    assert result.operations == ()
    assert result.notes == ("br-int runs on the system datapath, not netdev: left as it is "
                            "(changing it would renumber its ports)",)


def options_of(config_text: str, name: str) -> dict[str, str]:
    config = parse_config(config_text)
    (spec,) = [s for s in dbplan.port_specs(config, config.host("a")) if s.name == name]
    return dict(spec.options)


TWO_HOSTS = """
networks: {{g: {{type: gre, segmentation_id: 1}}, v: {{type: vxlan, segmentation_id: 2}}}}
options: {{{options}}}
hosts:
  a: {{datapath_id: 1, local_ip: 10.0.0.1, ports: [{{network: g, mac: "fa:16:3e:00:00:01"}},
                                              {{network: v, mac: "fa:16:3e:00:00:02"}}]}}
  b: {{datapath_id: 2, local_ip: 10.0.0.2}}
"""


def test_tunnel_options_follow_neutrons_agent_options_with_neutrons_defaults() -> None:
    base = {"remote_ip": "10.0.0.2", "local_ip": "10.0.0.1", "in_key": "flow", "out_key": "flow",
            "df_default": "true", "egress_pkt_mark": "0"}
    assert options_of(TWO_HOSTS.format(options=""), "gre-0a000002") == base
    assert options_of(TWO_HOSTS.format(options=""), "vxlan-0a000002") == base
    custom = TWO_HOSTS.format(options="dont_fragment: false, tunnel_csum: true, dscp: 10, vxlan_udp_port: 8472")
    assert options_of(custom, "gre-0a000002") == {**base, "df_default": "false", "csum": "true", "tos": "40"}
    assert options_of(custom, "vxlan-0a000002") == {**base, "df_default": "false", "csum": "true", "tos": "40",
                                                    "dst_port": "8472"}
    inherit = TWO_HOSTS.format(options="dscp_inherit: true")
    assert options_of(inherit, "gre-0a000002") == {**base, "tos": "inherit"}


def test_a_change_that_makes_open_vswitch_drop_a_bridges_flows_is_said() -> None:
    seen = converged()
    alone = ObservedBridge("br-tun", "netdev", "secure", ("OpenFlow13",),
                           {"datapath-id": "0000000000000b09", "disable-in-band": "true"}, ())
    result = plan(Observed({**seen.bridges, "br-tun": alone}, seen.ports))
    assert result.notes == (
        "br-tun's datapath ID changes from 0000000000000b09 to 0000000000000b01: Open vSwitch drops its flows; "
        "brtun installs its own",
        "br-tun gets its first controller: Open vSwitch drops its flows; brtun installs its own")
