"""flows.neutronstate: Neutron's RPC messages as state, and that state as the config a YAML file gives.

The payloads are Neutron's own shapes (seen on the bus from neutron-server 29:
docs/NEUTRON.md, "What Neutron says"); hostile ones are refused whole.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.config import Options, parse_config
from flows.flow import render_flows
from flows.model import allocate_ofports, build_bridge
from flows.neutronstate import (
    FLOODING_IP,
    FLOODING_MAC,
    Conflicting,
    LocalHost,
    Malformed,
    NeutronState,
    parse_details,
)
from flows.pipeline import build

NET = "ff92049e-3377-410f-ae60-4f115e3ec314"
OTHER = "0c1d2e3f-0000-4000-8000-000000000001"
FLOOD = [FLOODING_MAC, FLOODING_IP]
LOCAL = LocalHost("compute1", "192.168.100.11", ("gre",), 0xB01, options=Options(l2_population=True,
                                                                                  arp_responder=True))


def details(port: str = "port-vm1", mac: str = "fa:16:3e:7c:7a:e6", ip: str = "10.0.0.3", net: str = NET,
            segment: int = 1, kind: str = "gre", **extra: Any) -> dict[str, Any]:
    """get_devices_details_list_and_failed_devices' entry for a bound port, as neutron-server 29 sends it."""
    return {"device": port, "network_id": net, "port_id": port, "mac_address": mac, "admin_state_up": True,
            "network_type": kind, "segmentation_id": segment, "physical_network": None, "mtu": 1458,
            "fixed_ips": [{"subnet_id": "fb073874", "ip_address": ip}], "device_owner": "compute:nova",
            "allowed_address_pairs": [], "port_security_enabled": True, "profile": {}, **extra}


def fdb(agent: str, *pairs: list[str], net: str = NET, segment: int = 1, kind: str = "gre") -> dict[str, Any]:
    return {net: {"segment_id": segment, "network_type": kind, "ports": {agent: [list(p) for p in pairs]}}}


def wired() -> NeutronState:
    state = NeutronState(LOCAL)
    assert state.set_local_port(parse_details(details(), "qvo7c7ae61e-05", ("gre",))).changed
    return state


def seed_fdb(state: NeutronState) -> None:
    """What compute1 is sent when its port comes up on the seed's network."""
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    state.add_fdb(fdb("192.168.100.10", FLOOD, ["fa:16:3e:85:fa:a0", "10.0.0.2"], ["fa:16:3e:54:fa:80", "10.0.0.1"]))


SEED_AS_YAML = f"""
cookie: 0x5e1ec7ab1e
options: {{l2_population: true, arp_responder: true}}
networks:
  {NET}: {{type: gre, segmentation_id: 1}}
hosts:
  compute1:
    datapath_id: 0xb01
    local_ip: 192.168.100.11
    tunnel_types: [gre]
    ports: [{{network: {NET}, mac: "fa:16:3e:7c:7a:e6", ip: 10.0.0.3, name: qvo7c7ae61e-05}}]
  network:
    datapath_id: 0xe0000000c0a8640a
    local_ip: 192.168.100.10
    ports:
      - {{network: {NET}, mac: "fa:16:3e:54:fa:80", ip: 10.0.0.1}}
      - {{network: {NET}, mac: "fa:16:3e:85:fa:a0", ip: 10.0.0.2}}
  compute2:
    datapath_id: 0xe0000000c0a8640c
    local_ip: 192.168.100.12
    ports: [{{network: {NET}, mac: "fa:16:3e:2b:5d:18", ip: 10.0.0.4}}]
"""


def flows(config: Any, host: str = "compute1") -> str:
    return render_flows(build(build_bridge(config, host)))


def test_the_seeds_messages_give_the_flows_of_the_seed_written_as_yaml() -> None:
    state = wired()
    state.tunnel_sync("gre", {"tunnels": [{"ip_address": "192.168.100.10", "host": "network"},
                                          {"ip_address": "192.168.100.11", "host": "compute1"},
                                          {"ip_address": "192.168.100.12", "host": "compute2"}]})
    seed_fdb(state)
    assert flows(state.config()) == flows(parse_config(SEED_AS_YAML))
    assert "dl_dst=fa:16:3e:2b:5d:18" in flows(state.config())
    again = parse_config(__import__("yaml").safe_dump(state.raw()))  # the state written out is a YAML config
    assert flows(again) == flows(state.config())


def test_remote_hosts_are_named_by_tunnel_sync_else_by_address() -> None:
    state = wired()
    seed_fdb(state)
    assert set(state.config().host_names) == {"compute1", "ip-192-168-100-10", "ip-192-168-100-12"}
    state.tunnel_sync("gre", {"tunnels": [{"ip_address": "192.168.100.12", "host": "compute2"}]})
    assert set(state.config().host_names) == {"compute1", "ip-192-168-100-10", "compute2"}


def test_an_fdb_message_twice_changes_nothing_the_second_time() -> None:
    state = wired()
    message = fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"])
    assert state.add_fdb(message).changed
    version, config = state.version, state.config()
    assert not state.add_fdb(copy.deepcopy(message)).changed
    assert state.version == version and state.config() is config
    assert state.remove_fdb(message).changed and not state.remove_fdb(message).changed


def test_independent_fdb_messages_in_any_order_give_one_config() -> None:
    messages = [fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]),
                fdb("192.168.100.10", FLOOD, ["fa:16:3e:85:fa:a0", "10.0.0.2"]),
                fdb("192.168.100.10", ["fa:16:3e:54:fa:80", "10.0.0.1"]),
                fdb("192.168.100.13", FLOOD)]
    configs = set()
    for order in itertools.permutations(messages):
        state = wired()
        for message in order:
            state.add_fdb(message)
        configs.add(flows(state.config()))
    assert len(configs) == 1


def test_a_remove_for_an_entry_never_added_or_on_another_agent_changes_nothing() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    before = flows(state.config())
    assert not state.remove_fdb(fdb("192.168.100.12", ["fa:16:3e:00:00:99", "10.0.0.99"])).changed
    assert not state.remove_fdb(fdb("192.168.100.10", ["fa:16:3e:2b:5d:18", "10.0.0.4"])).changed
    assert flows(state.config()) == before


def test_a_mac_announced_on_another_agent_has_moved_there() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    state.add_fdb(fdb("192.168.100.10", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    config = state.config()
    assert [p.mac for p in config.host("ip-192-168-100-10").ports] == ["fa:16:3e:2b:5d:18"]
    assert config.host("ip-192-168-100-12").ports == ()


def test_messages_for_networks_not_carried_here_are_ignored_and_said() -> None:
    state = wired()
    result = state.add_fdb({**fdb("192.168.100.12", FLOOD, net=OTHER, segment=7),
                            **fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"])})
    assert result.changed and result.ignored == (f"network {OTHER}: unknown here (no local port on it)",)
    assert OTHER not in {n.name for n in state.config().networks}


def test_this_hosts_own_entries_in_a_fanout_are_skipped() -> None:
    state = wired()
    assert not state.add_fdb(fdb("192.168.100.11", FLOOD, ["fa:16:3e:7c:7a:e6", "10.0.0.3"])).changed


def test_chg_ip_moves_the_arp_entry() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    change = {"chg_ip": {NET: {"192.168.100.12": {"before": [["fa:16:3e:2b:5d:18", "10.0.0.4"]],
                                                  "after": [["fa:16:3e:2b:5d:18", "10.0.0.40"]]}}}}
    assert state.update_fdb(change).changed
    assert [p.ip for p in state.config().host("ip-192-168-100-12").ports] == ["10.0.0.40"]
    assert "arp_tpa=10.0.0.40" in flows(state.config()) and "arp_tpa=10.0.0.4 " not in flows(state.config())
    assert not state.update_fdb(change).changed


def test_a_port_whose_ip_is_removed_stays_flooded_to_but_has_no_entry() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    state.update_fdb({"chg_ip": {NET: {"192.168.100.12": {"before": [["fa:16:3e:2b:5d:18", "10.0.0.4"]]}}}})
    remote = state.config().host("ip-192-168-100-12")
    assert remote.ports == () and remote.carries == (NET,)
    assert "dl_dst=fa:16:3e:2b:5d:18" not in flows(state.config())


@pytest.mark.parametrize("message", [
    None, [], "x", {NET: None}, {NET: {"segment_id": 1, "network_type": "gre"}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": []}},
    {NET: {"segment_id": "1", "network_type": "gre", "ports": {}}},
    {NET: {"segment_id": True, "network_type": "gre", "ports": {}}},
    {NET: {"segment_id": 2**32, "network_type": "gre", "ports": {}}},
    {NET: {"segment_id": 2**24, "network_type": "vxlan", "ports": {}}},
    {NET: {"segment_id": 1, "network_type": "vlan", "ports": {}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"not-an-ip": [FLOOD]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["fa:16:3e:2b:5d:18"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["fa:16:3e:2b:5d", "10.0.0.4"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["01:00:5e:00:00:01", "10.0.0.4"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["fa:16:3e:2b:5d:18", "10.0.0.300"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["fa:16:3e:2b:5d:18", "224.0.0.1"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"127.0.0.1": [FLOOD]}}},
    {NET: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": "fa:16:3e:2b:5d:18"}}},
    {"not a network id!": {"segment_id": 1, "network_type": "gre", "ports": {}}},
    {"x" * 65: {"segment_id": 1, "network_type": "gre", "ports": {}}},
    # a good network beside a malformed one: nothing of the message is applied
    {**fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]),
     OTHER: {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.13": [["zz", "10.0.0.9"]]}}},
    {NET: {"segment_id": 1, "network_type": "gre",
           "ports": {"192.168.100.12": [FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"], ["fa:16:3e:2b:5d:19", 7]]}}},
])
def test_a_malformed_fdb_message_is_refused_whole_and_changes_nothing(message: Any) -> None:
    state = wired()
    before = (state.version, flows(state.config()))
    for method in (state.add_fdb, state.remove_fdb):
        with pytest.raises(Malformed):
            method(message)
    assert (state.version, flows(state.config())) == before


@pytest.mark.parametrize("message", [
    None, {"chg_ip": []}, {"chg_ip": {NET: {"192.168.100.12": {"before": [], "after": [], "x": []}}}},
    {"chg_ip": {}, "other_action": {}}, {"chg_ip": {NET: {"192.168.100.12": {"after": [FLOOD]}}}},
])
def test_a_malformed_update_is_refused(message: Any) -> None:
    state = wired()
    with pytest.raises(Malformed):
        state.update_fdb(message)


def test_a_message_that_contradicts_the_networks_segment_is_refused_whole() -> None:
    state = wired()
    before = state.version
    with pytest.raises(Conflicting):
        state.add_fdb({**fdb("192.168.100.12", FLOOD), **fdb("192.168.100.13", FLOOD, net=NET, segment=2)})
    with pytest.raises(Conflicting):
        state.add_fdb(fdb("192.168.100.12", FLOOD, kind="vxlan"))
    assert state.version == before


def test_one_message_giving_an_address_to_two_macs_is_refused_a_later_one_takes_it_over() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "10.0.0.4"]))
    with pytest.raises(Conflicting):
        state.add_fdb(fdb("192.168.100.10", ["fa:16:3e:00:00:01", "10.0.0.9"], ["fa:16:3e:00:00:02", "10.0.0.9"]))
    # 10.0.0.4's port was deleted while this host heard nothing, and the address given to a new port: the
    # newest announcement wins, as Neutron's ARP responder entry is overwritten
    result = state.add_fdb(fdb("192.168.100.10", ["fa:16:3e:00:00:01", "10.0.0.4"]))
    assert result.changed and any("moves from fa:16:3e:2b:5d:18" in reason for reason in result.ignored)
    config = state.config()
    assert [p.mac for p in config.host("ip-192-168-100-10").ports] == ["fa:16:3e:00:00:01"]
    assert config.host("ip-192-168-100-12").ports == ()


def test_a_remote_entry_with_a_local_ports_mac_or_ip_never_makes_an_invalid_config() -> None:
    state = wired()
    state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:7c:7a:e6", "10.0.0.33"], ["fa:16:3e:00:00:05", "10.0.0.3"]))
    remote = state.config().host("ip-192-168-100-12")
    assert remote.ports == () and remote.carries == (NET,)


def test_ipv6_entries_are_ignored_and_said() -> None:
    state = wired()
    result = state.add_fdb(fdb("192.168.100.12", FLOOD, ["fa:16:3e:2b:5d:18", "fd00::4"]))
    assert result.changed and any("IPv6" in reason for reason in result.ignored)
    result = state.add_fdb({NET: {"segment_id": 1, "network_type": "gre", "ports": {"fd00::12": [FLOOD]}}})
    assert not result.changed and result.ignored


def test_device_details_bind_a_port_or_say_why_not() -> None:
    unbound = parse_details({"device": "port-x"}, "tap1", ("gre",))
    assert unbound.port is None and unbound.reason == "not bound to this host"
    vlan = parse_details(details(kind="vlan", segment=100), "tap1", ("gre",))
    assert vlan.port is None and "not a tunnel type of this host" in vlan.reason
    vxlan = parse_details(details(kind="vxlan", segment=100), "tap1", ("gre",))
    assert vxlan.port is None
    down = parse_details(details(admin_state_up=False), "tap1", ("gre",))
    assert down.port is None and "dead VLAN" in down.reason
    for bad in ({"device": 7}, details(mac_address="nope"), details(fixed_ips="10.0.0.3"),
                details(segmentation_id=0), details(network_id=None), details(network_type=5)):
        with pytest.raises(Malformed):
            parse_details(bad, "tap1", ("gre",))


def test_a_local_port_unwired_takes_its_networks_entries_with_it() -> None:
    state = wired()
    seed_fdb(state)
    assert state.remove_local_port("port-vm1").changed
    config = state.config()
    assert config.networks == () and config.host_names == ("compute1",)
    assert not state.add_fdb(fdb("192.168.100.12", FLOOD)).changed  # no longer carried: ignored


def test_two_local_ports_with_one_mac_on_a_network_are_refused() -> None:
    state = wired()
    with pytest.raises(Conflicting):
        state.set_local_port(parse_details(details(port="port-vm9", ip="10.0.0.9"), "qvo9", ("gre",)))


def test_a_refresh_says_which_networks_were_announced_again_and_drops_nothing() -> None:
    state = wired()
    seed_fdb(state)
    before = flows(state.config())
    mark = state.begin_refresh()
    assert state.refreshed(mark) == set()
    assert not state.add_fdb(fdb("192.168.100.10", FLOOD, ["fa:16:3e:54:fa:80", "10.0.0.1"])).changed
    assert state.refreshed(mark) == {NET}
    assert flows(state.config()) == before  # the DHCP port, not announced again, is kept


def test_endpoints_without_l2population_come_from_tunnel_sync_and_updates() -> None:
    state = NeutronState(LocalHost("compute1", "192.168.100.11", ("gre", "vxlan"), 0xB01))
    state.set_local_port(parse_details(details(), "qvo7c7ae61e-05", ("gre",)))
    state.tunnel_sync("gre", {"tunnels": [{"ip_address": "192.168.100.12", "host": "compute2"}]})
    assert state.tunnel_update("192.168.100.13", "gre").changed
    assert not state.tunnel_update("192.168.100.13", "gre").changed
    assert not state.tunnel_update("192.168.100.11", "gre").changed  # itself
    rendered = flows(state.config())
    assert "in_port=5132" in rendered and "in_port=5133" in rendered
    assert state.tunnel_delete("192.168.100.13", "gre").changed
    assert "in_port=5133" not in flows(state.config())
    state.tunnel_sync("gre", {"tunnels": []})  # the server lists none now
    assert "in_port=5132" not in flows(state.config())
    for bad in ((None, "gre"), ("192.168.100.13", None), ("x", "gre"), ("192.168.100.13", "vlan")):
        with pytest.raises(Malformed):
            state.tunnel_update(*bad)
    with pytest.raises(Malformed):
        state.tunnel_sync("gre", {"tunnels": [{"ip_address": "nope"}]})


def test_endpoints_whose_port_numbers_collide_are_numbered_apart_and_keep_their_numbers() -> None:
    state = NeutronState(LocalHost("h0", "10.0.0.1", ("gre",), 0xB01))
    state.set_local_port(parse_details(details(ip="10.9.0.1"), "tap0", ("gre",)))
    state.tunnel_sync("gre", {"tunnels": [{"ip_address": "10.0.1.5"}, {"ip_address": "10.0.17.5"}]})
    config = state.config()
    assert dict(config.host("h0").ofports) == {}  # numbers are the allocator's, as for a YAML config
    first = allocate_ofports(config.host("h0"), config)
    # gre-0a001105 would have 0x1105 & 0xfff like gre-0a000105: the first in name order keeps it
    assert first["gre-0a000105"] == 0x1105 and first["gre-0a001105"] != 0x1105
    state.tunnel_sync("gre", {"tunnels": [{"ip_address": "10.0.17.5"}]})
    config = state.config()
    again = allocate_ofports(config.host("h0"), config, existing=first)
    assert again["gre-0a001105"] == first["gre-0a001105"]  # a port keeps its number while it stays


ADDRESSES = st.sampled_from(["192.168.100.10", "192.168.100.12", "192.168.100.13", "192.168.100.11", "fd00::1"])
MACS = st.sampled_from(["fa:16:3e:2b:5d:18", "fa:16:3e:00:00:01", "fa:16:3e:7c:7a:e6", "FA:16:3E:00:00:02"])
IPS = st.sampled_from(["10.0.0.4", "10.0.0.5", "10.0.0.3", "fd00::5", FLOODING_IP])
PAIRS = st.lists(st.one_of(st.just(FLOOD), st.tuples(MACS, IPS).map(list),
                           st.tuples(st.sampled_from([FLOODING_MAC, "zz"]), IPS).map(list)), max_size=4)
MESSAGES = st.one_of(
    st.tuples(st.sampled_from(["add", "remove"]), st.dictionaries(
        st.sampled_from([NET, OTHER]),
        st.fixed_dictionaries({"segment_id": st.sampled_from([1, 2]), "network_type": st.sampled_from(["gre", "vxlan"]),
                               "ports": st.dictionaries(ADDRESSES, PAIRS, max_size=3)}), max_size=2)),
    st.tuples(st.just("update"), st.fixed_dictionaries({"chg_ip": st.dictionaries(
        st.sampled_from([NET, OTHER]), st.dictionaries(ADDRESSES, st.fixed_dictionaries(
            {"before": PAIRS, "after": PAIRS}), max_size=2), max_size=2)})),
    st.tuples(st.sampled_from(["tunnel_update", "tunnel_delete"]), st.tuples(ADDRESSES, st.sampled_from(["gre", "x"]))),
    st.tuples(st.just("unwire"), st.just("port-vm1")),
    st.tuples(st.just("wire"), st.tuples(MACS.map(str.lower), st.sampled_from(["10.0.0.3", "10.0.0.4"]))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MESSAGES, max_size=12))
def test_any_sequence_of_messages_leaves_a_valid_config_and_refused_ones_change_nothing(messages: list[Any]) -> None:
    state = wired()
    for kind, payload in messages:
        before = (state.version, flows(state.config()))
        try:
            if kind == "add":
                state.add_fdb(payload)
            elif kind == "remove":
                state.remove_fdb(payload)
            elif kind == "update":
                state.update_fdb(payload)
            elif kind in ("tunnel_update", "tunnel_delete"):
                getattr(state, kind)(*payload)
            elif kind == "unwire":
                state.remove_local_port(payload)
            else:
                state.set_local_port(parse_details(details(mac=payload[0], ip=payload[1]), "qvo1", ("gre",)))
        except (Malformed, Conflicting):
            assert (state.version, flows(state.config())) == before
        state.config()  # never InvalidConfig: the state always makes a valid config
