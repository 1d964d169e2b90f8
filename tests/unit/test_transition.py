"""flows.transition: a change of local VLANs never lets a packet leave or arrive with another network's key.

The property test walks every intermediate state of a change (br-tun's flows x br-int's port
tags) for random old and new VLAN maps, and checks both directions in each state.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dbplan import ObservedPort, vif_tag
from flows import naming
from flows.actions import SetField
from flows.config import Config, parse_config
from flows.flow import Flow
from flows.model import build_bridge, local_vlans
from flows.pipeline import build
from flows.tables import FLOOD_TO_TUN, TUN_TABLE
from flows.transition import bridging_flows, changing_hands, parked_config, pin_local_vlans, steps

NETWORKS = ("n1", "n2", "n3", "n4")
KEY = {name: 1000 + i for i, name in enumerate(NETWORKS)}


def mac(network: str, host: int) -> str:
    return f"fa:16:3e:00:{NETWORKS.index(network) + 1:02x}:{host:02x}"


def make(vlans: dict[str, int | None]) -> Config:
    """h1 carries the networks with a VLAN (None: assigned), h2 carries every network."""
    raw: dict[str, Any] = {
        "networks": {n: {"type": "gre", "segmentation_id": KEY[n]} for n in vlans},
        "hosts": {
            "h1": {"datapath_id": 1, "local_ip": "192.168.0.1",
                   "local_vlans": {n: v for n, v in vlans.items() if v is not None},
                   "ports": [{"network": n, "mac": mac(n, 1)} for n in vlans]},
            "h2": {"datapath_id": 2, "local_ip": "192.168.0.2",
                   "ports": [{"network": n, "mac": mac(n, 2)} for n in vlans]},
        },
    }
    return parse_config(yaml.safe_dump(raw))


def outbound(flows: tuple[Flow, ...]) -> dict[int, int]:
    """VLAN -> the key table 22 sends it with."""
    result = {}
    for flow in flows:
        tci = flow.match.get("vlan_tci")  # dl_vlan=V is vlan_tci=0x1000|V/0x1fff
        if flow.table == FLOOD_TO_TUN and tci is not None:
            keys = [a.value for a in flow.actions if isinstance(a, SetField) and a.field == "tun_id"]
            result[tci.value & 0xFFF] = keys[0]
    return result


def inbound(flows: tuple[Flow, ...]) -> dict[int, int]:
    """key -> the VLAN it is delivered on."""
    result = {}
    for flow in flows:
        if flow.table == TUN_TABLE["gre"] and flow.match.get("tun_id") is not None:
            vlans = [a.value & 0xFFF for a in flow.actions if isinstance(a, SetField) and a.field == "vlan_vid"]
            result[flow.match.value("tun_id")] = vlans[0]
    return result


def tags(config: Config, networks: tuple[str, ...]) -> dict[str, int]:
    """network -> the tag br-int gives its port on h1 (the dead VLAN when the config lacks it)."""
    host = config.host("h1")
    result = {}
    for network in networks:
        port = ObservedPort(f"qvo-{network}", "br-int", "", external_ids={"attached-mac": mac(network, 1)})
        decided = vif_tag(config, host, port)
        assert decided is not None
        result[network] = decided[0]
    return result


def assert_safe(flows: tuple[Flow, ...], tagged: dict[str, int], state: str) -> None:
    out, into = outbound(flows), inbound(flows)
    for network, vlan in tagged.items():
        if vlan == naming.DEAD_VLAN:
            continue
        assert out.get(vlan, KEY[network]) == KEY[network], f"{state}: {network} leaves with key {out[vlan]}"
        for key, delivered in into.items():
            if delivered == vlan:
                assert key == KEY[network], f"{state}: key {key} is delivered to {network}'s port"


vlan_maps = st.dictionaries(st.sampled_from(NETWORKS), st.one_of(st.none(), st.integers(1, 6)), min_size=1)


def distinct(vlans: dict[str, int | None]) -> bool:
    given_vlans = [v for v in vlans.values() if v is not None]
    return len(given_vlans) == len(set(given_vlans))


@settings(max_examples=300, deadline=None)
@given(vlan_maps.filter(distinct), vlan_maps.filter(distinct))
def test_every_step_of_any_change_keeps_keys_and_vlans_apart(before: dict[str, int | None],
                                                            after: dict[str, int | None]) -> None:
    old = make(before)
    new = pin_local_vlans(make(after), "h1", local_vlans(old.host("h1"), old))
    old_model, new_model = build_bridge(old, "h1"), build_bridge(new, "h1")
    old_flows, new_flows = build(old_model), build(new_model)
    plan = steps(old_model, old_flows, new_model, new_flows, new)
    everyone = tuple(NETWORKS)
    sequence = [
        ("before", old_flows, tags(old, everyone)),
        ("step 1", plan.bridge_flows, tags(old, everyone)),
        ("step 2", plan.bridge_flows, tags(plan.database_config, everyone)),
        ("step 3", new_flows, tags(plan.database_config, everyone)),
        ("after", new_flows, tags(new, everyone)),
    ]
    for state, flows, tagged in sequence:
        assert outbound(flows) and inbound(flows), "the check must see both directions"
        assert_safe(flows, tagged, state)
    # and the change ends where it should
    assert tags(new, tuple(after)) == {n: local_vlans(new.host("h1"), new)[n] for n in after}


def test_a_remaining_network_keeps_its_assigned_vlan_when_an_earlier_one_goes() -> None:
    old = make({"n1": None, "n2": None, "n3": None})
    assert local_vlans(old.host("h1"), old) == {"n1": 1, "n2": 2, "n3": 3}
    fresh = make({"n2": None, "n3": None})
    assert local_vlans(fresh.host("h1"), fresh) == {"n2": 1, "n3": 2}  # what a fresh start would pick
    pinned = pin_local_vlans(fresh, "h1", local_vlans(old.host("h1"), old))
    assert local_vlans(pinned.host("h1"), pinned) == {"n2": 2, "n3": 3}


def test_an_explicit_vlan_wins_over_the_current_one() -> None:
    pinned = pin_local_vlans(make({"n1": None, "n2": 1}), "h1", {"n1": 1, "n2": 2})
    assert local_vlans(pinned.host("h1"), pinned) == {"n1": 2, "n2": 1}


def test_a_swap_holds_both_vlans_and_parks_both_networks_ports() -> None:
    old, new = make({"n1": 1, "n2": 2}), make({"n1": 2, "n2": 1})
    held = changing_hands(build_bridge(old, "h1"), build_bridge(new, "h1"))
    assert held == {1, 2}
    parked = parked_config(new, "h1", held)
    assert tags(parked, ("n1", "n2")) == {"n1": naming.DEAD_VLAN, "n2": naming.DEAD_VLAN}
    assert "VLAN 1, 2 changes network" in steps(build_bridge(old, "h1"), build(build_bridge(old, "h1")),
                                                build_bridge(new, "h1"), build(build_bridge(new, "h1")),
                                                new).describe()


def test_a_move_to_a_free_vlan_is_make_before_break() -> None:
    old, new = make({"n1": 1}), make({"n1": 5})
    old_flows, new_flows = build(build_bridge(old, "h1")), build(build_bridge(new, "h1"))
    assert changing_hands(build_bridge(old, "h1"), build_bridge(new, "h1")) == frozenset()
    bridge = bridging_flows(old_flows, new_flows, frozenset())
    assert set(old_flows) <= set(bridge)
    assert outbound(bridge) == {1: KEY["n1"], 5: KEY["n1"]}  # both VLANs lead to n1's key meanwhile
    assert inbound(bridge) == {KEY["n1"]: 1}  # arriving traffic moves only in step 3
    assert parked_config(new, "h1", frozenset()) is new
