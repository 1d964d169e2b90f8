"""Isolation, as a property of the simulated pipeline: no packet changes network, none from nowhere passes.

A packet enters with a network's identity: its local VLAN from patch-int,
or its key on a tunnel port of that network's type.  It may only ever
leave with that network's identity: its key on a tunnel port of its type,
its VLAN toward patch-int.  A packet with an unknown VLAN or key (or none)
is dropped.  Sequences carry the table state, so learned flows, their
reuse and their expiry are part of what is checked.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.actions import SetField
from flows.flow import Flow
from flows.simulator import FlowTableSimulator, Verdict
from tests.packetgen import Universe, random_packet, universe
from tests.unit.helpers import config, desired

HOSTS = [("mixed", "h1"), ("mixed", "h3"), ("gre_no_l2pop", "compute1"), ("gre_no_l2pop", "compute2"),
         ("example", "compute1"), ("vxlan_only", "host1"), ("geneve", "b")]
PACKETS_PER_SEQUENCE = 50
SEQUENCES = 210  # > 10,000 packets


def identity(world: Universe, packet: dict[str, int]) -> str | None:
    """The network a packet belongs to when it enters, or None when it belongs to none."""
    if packet["in_port"] == world.ports["patch-int"]:
        tci = packet.get("vlan_tci", 0)
        return world.vlans.get(tci & 0x0FFF) if tci & 0x1000 else None
    kind = world.port_type(packet["in_port"])
    if kind is None:
        return None
    return world.keys.get((kind, packet.get("tun_id", 0)))


def check(world: Universe, packet: dict[str, int], verdict: Verdict) -> None:
    network = identity(world, packet)
    if network is None:
        assert verdict.dropped, f"{packet} has no network yet left: {verdict.emitted}"
        return
    for emitted in verdict.emitted:
        if emitted.port == world.ports["patch-int"]:
            assert emitted.vlan == world.network_vlan[network], (packet, emitted, network)
        else:
            assert world.port_type(emitted.port) == world.network_type[network], (packet, emitted, network)
            assert emitted.tun_id == world.network_key[network], (packet, emitted, network)
            assert emitted.vlan is None
            assert packet["in_port"] == world.ports["patch-int"], "split horizon: tunnel to tunnel"


@settings(max_examples=SEQUENCES, deadline=None)
@given(st.sampled_from(HOSTS), st.integers(0, 2**32 - 1))
def test_no_packet_ever_leaves_with_another_networks_identity(host: tuple[str, str], seed: int) -> None:
    name, host_name = host
    cfg = config(name)
    world = universe(cfg, host_name)
    simulator = FlowTableSimulator.of(desired(cfg, host_name))
    rng = random.Random(seed)
    learned: list[int] = []
    for _ in range(PACKETS_PER_SEQUENCE):
        if rng.random() < 0.05:
            simulator.advance(rng.choice([1, 60, 301]))
        packet = random_packet(world, rng, learned)
        verdict = simulator.process(packet)
        learned.extend(f.match.value("dl_dst") or 0 for f in verdict.learned)
        check(world, packet, verdict)


def test_the_property_catches_a_pipeline_that_leaks() -> None:
    """The same check on a br-tun whose blue flood flow carries red's key must fail."""
    cfg = config("gre_no_l2pop")
    world = universe(cfg, "compute1")
    leaky = [Flow(f.table, f.priority, f.match, tuple(SetField("tun_id", 0xC8) if a == SetField("tun_id", 0x64)
                                                      else a for a in f.actions), f.goto, f.cookie)
             for f in desired(cfg, "compute1")]
    simulator = FlowTableSimulator.of(leaky)
    blue_broadcast = {"in_port": 1, "vlan_tci": 0x1001, "dl_src": 0xFA163E000101, "dl_dst": 0xFFFFFFFFFFFF}
    with pytest.raises(AssertionError):
        check(world, blue_broadcast, simulator.process(blue_broadcast))
    assert SEQUENCES * PACKETS_PER_SEQUENCE >= 10_000
