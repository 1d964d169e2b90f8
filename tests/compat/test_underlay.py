"""Underlay facts brtun shares with Neutron, judged by Neutron's code: port names of IPv6
endpoints, and the MTU each tunnel type leaves the VMs."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import mtu, naming
from flows.config import parse_config
from tests.compat.neutron import configure

pytestmark = pytest.mark.compat


@settings(max_examples=300, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["gre", "vxlan", "geneve"]),
       address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_tunnel_port_names_are_neutrons_for_ipv4_and_ipv6_endpoints(
        kind: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    from neutron.plugins.ml2.drivers.openvswitch.agent.ovs_neutron_agent import OVSNeutronAgent

    text = str(address)
    assert naming.tunnel_port_name(kind, text) == OVSNeutronAgent.get_tunnel_name(kind, "10.0.0.1", text)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("underlay_mtu", [1500, 9000, 1280])
def test_each_tunnel_types_mtu_is_what_neutrons_type_driver_gives(family: int, underlay_mtu: int) -> None:
    configure()
    from neutron.conf.plugins.ml2 import config as ml2_config
    from neutron.conf.plugins.ml2.drivers import driver_type
    from neutron.plugins.ml2.drivers import type_geneve, type_gre, type_vxlan
    from oslo_config import cfg

    for register in (ml2_config.register_ml2_plugin_opts, driver_type.register_ml2_drivers_geneve_opts):
        with contextlib.suppress(cfg.DuplicateOptError):
            register()
    cfg.CONF.set_override("global_physnet_mtu", underlay_mtu)
    cfg.CONF.set_override("overlay_ip_version", family, group="ml2")
    try:
        drivers = {"gre": type_gre.GreTypeDriver(), "vxlan": type_vxlan.VxlanTypeDriver(),
                   "geneve": type_geneve.GeneveTypeDriver()}
        address = "fd00::1" if family == 6 else "10.0.0.1"
        for kind, driver in drivers.items():
            config = parse_config(f"options: {{underlay_mtu: {underlay_mtu}}}\n"
                                  f"networks: {{n: {{type: {kind}, segmentation_id: 1}}}}\n"
                                  f"hosts: {{a: {{datapath_id: 1, local_ip: '{address}'}}}}\n")
            assert mtu.network_mtu(config, "n").mtu == driver.get_mtu(), (kind, family, underlay_mtu)
    finally:
        cfg.CONF.clear_override("global_physnet_mtu")
        cfg.CONF.clear_override("overlay_ip_version", group="ml2")
