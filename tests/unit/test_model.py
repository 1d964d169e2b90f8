"""Neutron's rules: carried networks, local VLANs, tunnel ports, flood lists, ofports."""

from __future__ import annotations

import yaml

from flows import naming
from flows.model import allocate_ofports, build_bridge, local_vlans, requested_ofports
from tests.unit.helpers import config, from_yaml


def mesh(hosts: int, l2pop: bool, networks_of: dict[int, list[str]] | None = None) -> str:
    networks = {"blue": {"type": "gre", "segmentation_id": 100},
                "red": {"type": "gre", "segmentation_id": 200},
                "green": {"type": "vxlan", "segmentation_id": 300}}
    data: dict[str, object] = {"options": {"l2_population": l2pop}, "networks": networks, "hosts": {}}
    for index in range(1, hosts + 1):
        carried = (networks_of or {}).get(index, ["blue"])
        data["hosts"][f"h{index}"] = {  # type: ignore[index]
            "datapath_id": index, "local_ip": f"192.168.100.{index}",
            "ports": [{"network": name, "mac": f"fa:16:3e:00:{index:02x}:{n:02x}", "ip": f"10.0.{n}.{index}"}
                      for n, name in enumerate(carried)]}
    return yaml.safe_dump(data, sort_keys=False)


def test_tunnel_port_names_are_neutrons() -> None:
    assert naming.tunnel_port_name("gre", "192.168.100.13") == "gre-c0a8640d"
    assert naming.tunnel_port_name("geneve", "10.0.0.1") == "geneve-0a000001"
    assert len(naming.tunnel_port_name("geneve", "255.255.255.254")) == naming.IFNAME_MAX
    for kind in ("gre", "vxlan", "geneve"):  # IPv6: a hash of the address, as long as a name may be
        name = naming.tunnel_port_name(kind, "fd00:100::11")
        assert len(name) == naming.IFNAME_MAX and name.startswith(f"{kind}-") and naming.tunnel_type_of(name) == kind
    assert naming.tunnel_port_name("gre", "fd00:100::11") != naming.tunnel_port_name("gre", "fd00:100::12")
    assert naming.tunnel_type_of("vxlan-c0a8640c") == "vxlan"
    assert naming.tunnel_type_of("patch-int") is None and naming.tunnel_type_of("gre-ZZ") is None


def test_the_preferred_ofport_is_the_type_digit_then_the_addresss_last_three_hex_digits() -> None:
    assert naming.preferred_ofport("gre", "192.168.100.13") == 0x140D
    assert naming.preferred_ofport("vxlan", "192.168.100.13") == 0x240D
    assert naming.preferred_ofport("geneve", "192.168.100.13") == 0x340D
    assert naming.preferred_ofport("gre", "fd00:100::a0d") == 0x1A0D


def test_ports_whose_preferred_numbers_collide_get_spare_numbers_and_nobody_is_renumbered() -> None:
    def hosts(*addresses: str) -> str:
        return "\n".join(f"  h{i}: {{datapath_id: {i + 1}, local_ip: {a}, ports: [{{network: n, mac: "
                         f"'fa:16:3e:00:00:{i:02x}'}}]}}" for i, a in enumerate(addresses))

    addresses = ["10.0.1.5", "10.0.17.5", "10.0.33.5"]  # the same low 12 bits
    cfg = from_yaml(f"networks: {{n: {{type: gre, segmentation_id: 1}}}}\nhosts:\n{hosts(*addresses)}")
    first = requested_ofports(cfg.host("h0"), cfg)
    assert first == {"patch-int": 1, "gre-0a001105": 0x1105, "gre-0a002105": naming.FIRST_SPARE_OFPORT}
    grown = from_yaml(f"networks: {{n: {{type: gre, segmentation_id: 1}}}}\nhosts:\n"
                      f"{hosts(*addresses, '10.0.49.5', '10.0.0.6')}")
    seen = dict(first)  # the switch holds the ports made before; a host comes, and another
    after = allocate_ofports(grown.host("h0"), grown, existing=seen)
    assert {name: after[name] for name in seen} == seen  # nobody renumbered
    assert after["gre-0a003105"] == naming.FIRST_SPARE_OFPORT + 1 and after["gre-0a000006"] == 0x1006


def test_a_host_carries_only_networks_it_has_ports_on() -> None:
    cfg = from_yaml(mesh(3, l2pop=False, networks_of={1: ["blue", "red"], 2: ["red"], 3: []}))
    assert {n.name for n in build_bridge(cfg, "h1").networks} == {"blue", "red"}
    assert {n.name for n in build_bridge(cfg, "h2").networks} == {"red"}
    assert build_bridge(cfg, "h3").networks == ()


def test_local_vlans_are_the_lowest_free_in_config_order_after_the_configured_ones() -> None:
    text = mesh(2, l2pop=False, networks_of={1: ["green", "red", "blue"]})
    data = yaml.safe_load(text)
    data["hosts"]["h1"]["local_vlans"] = {"red": 1, "blue": 4094}
    cfg = from_yaml(yaml.safe_dump(data))
    assert local_vlans(cfg.host("h1"), cfg) == {"red": 1, "blue": 4094, "green": 2}


def test_without_l2population_every_host_has_a_tunnel_to_every_other_host_of_its_type() -> None:
    cfg = from_yaml(mesh(4, l2pop=False, networks_of={1: ["blue"], 2: ["red"], 3: [], 4: ["green"]}))
    ports = {p.name for p in build_bridge(cfg, "h1").tunnel_ports}
    assert ports == {f"{kind}-c0a864{n:02x}" for kind in ("gre", "vxlan") for n in (2, 3, 4)}


def test_without_l2population_the_flood_list_is_every_tunnel_port_of_the_networks_type() -> None:
    cfg = from_yaml(mesh(3, l2pop=False, networks_of={1: ["blue", "green"], 2: ["red"], 3: []}))
    bridge = build_bridge(cfg, "h1")
    gre = sorted(p.ofport for p in bridge.tunnel_ports if p.type == "gre")
    vxlan = sorted(p.ofport for p in bridge.tunnel_ports if p.type == "vxlan")
    assert bridge.network("blue").flood_ofports == tuple(gre)
    assert bridge.network("green").flood_ofports == tuple(vxlan)
    assert bridge.remote_ports == ()


def test_with_l2population_tunnels_exist_only_toward_hosts_sharing_a_network_of_that_type() -> None:
    cfg = from_yaml(mesh(4, l2pop=True, networks_of={1: ["blue", "green"], 2: ["blue"], 3: ["red"],
                                                     4: ["green"]}))
    assert {p.name for p in build_bridge(cfg, "h1").tunnel_ports} == {"gre-c0a86402", "vxlan-c0a86404"}
    assert build_bridge(cfg, "h3").tunnel_ports == ()


def test_with_l2population_flood_lists_and_fdb_entries_cover_only_hosts_with_the_network() -> None:
    cfg = from_yaml(mesh(3, l2pop=True, networks_of={1: ["blue", "red"], 2: ["blue", "red"], 3: ["blue"]}))
    bridge = build_bridge(cfg, "h1")
    assert bridge.network("blue").flood_ofports == (0x1402, 0x1403)
    assert bridge.network("red").flood_ofports == (0x1402,)
    assert sorted((p.network, p.host) for p in bridge.remote_ports) == [
        ("blue", "h2"), ("blue", "h3"), ("red", "h2")]


def test_adding_a_host_renumbers_no_existing_port() -> None:
    before = from_yaml(mesh(3, l2pop=False))
    after = from_yaml(mesh(5, l2pop=False))
    old = {p.name: p.ofport for p in build_bridge(before, "h1").tunnel_ports}
    new = {p.name: p.ofport for p in build_bridge(after, "h1").tunnel_ports}
    assert old.items() <= new.items()


def test_l2population_adding_or_removing_a_tunnel_port_renumbers_no_other() -> None:
    cfg = from_yaml(mesh(3, l2pop=True, networks_of={1: ["blue"], 2: ["blue"], 3: ["red"]}))
    grown = from_yaml(mesh(3, l2pop=True, networks_of={1: ["blue"], 2: ["blue"], 3: ["blue"]}))
    old = {p.name: p.ofport for p in build_bridge(cfg, "h1").tunnel_ports}
    new = {p.name: p.ofport for p in build_bridge(grown, "h1").tunnel_ports}
    assert len(new) == len(old) + 1 and old.items() <= new.items()


def test_configured_ofports_win_over_the_rule() -> None:
    cfg = config("example")
    assert requested_ofports(cfg.host("compute1"), cfg)["gre-c0a8640d"] == 2
    assert requested_ofports(cfg.host("compute2"), cfg)["vxlan-c0a8640b"] == 0x240B


def test_observed_ofports_are_the_truth_and_missing_ports_get_no_flows() -> None:
    cfg = config("example")
    bridge = build_bridge(cfg, "compute1", observed_ofports={"patch-int": 7, "gre-c0a8640d": 40})
    assert bridge.patch_int_ofport == 7
    assert [(p.name, p.ofport) for p in bridge.tunnel_ports] == [("gre-c0a8640d", 40)]
    assert bridge.network("net2").flood_ofports == ()


def test_the_same_config_always_gives_the_same_model() -> None:
    assert build_bridge(config("mixed"), "h1") == build_bridge(config("mixed"), "h1")
