"""The simulator against Open vSwitch: the same flows, the same packets, the same verdicts.

Generated packets (any in-port, VLAN, key, MAC, ARP or ICMPv6 fields,
right or wrong) go through flows.simulator and through `ofproto/trace
-generate` on a real switch with the same ports and flows, in the same
order, with the same clock advances.  Outputs, the VLAN and key they leave
with, and the flows learned must be identical, packet for packet, and
table 20 identical at the end.
"""

from __future__ import annotations

import random

import pytest

from flows.config import load_config
from flows.flow import render_flows
from flows.replay import bridge_ports, desired_flows, tunnel_endpoints
from flows.simulator import FlowTableSimulator, Verdict
from ovshost.scratch import ScratchSwitch
from tests.conftest import CONFIGS
from tests.integration.conftest import require_environment
from tests.packetgen import random_packet, universe

pytestmark = pytest.mark.integration
HOSTS = [("example", "compute1"), ("gre_no_l2pop", "compute1"), ("mixed", "h1"), ("mixed", "h3"),
         ("vxlan_only", "host1"), ("geneve", "a")]
PACKETS_PER_HOST = 180  # 1,080 in all


def comparable(verdict: Verdict) -> tuple[object, ...]:
    emitted = tuple(sorted((e.port, e.vlan, e.tun_id if e.port != 1 else None) for e in verdict.emitted))
    return emitted, tuple(sorted(flow.render() for flow in verdict.learned))


def test_a_thousand_generated_packets_get_identical_verdicts() -> None:
    require_environment()
    agreed = 0
    with ScratchSwitch() as switch:
        for index, (name, host) in enumerate(HOSTS):
            config = load_config(str(CONFIGS / f"{name}.yaml"))
            flows = desired_flows(config, host)
            switch.load(bridge_ports(config, host), flows, tunnel_endpoints(config, host))
            simulator = FlowTableSimulator.of(flows)
            world = universe(config, host)
            rng = random.Random(1000 + index)
            learned: list[int] = []
            for number in range(PACKETS_PER_HOST):
                if rng.random() < 0.03:
                    seconds = rng.choice([1, 150, 301])
                    simulator.advance(seconds)
                    switch.advance(seconds)
                packet = random_packet(world, rng, learned)
                expected = simulator.process(packet)
                seen = switch.trace(packet)
                learned.extend(f.match.value("dl_dst") or 0 for f in expected.learned)
                assert comparable(seen) == comparable(expected), f"{name}/{host} packet {number}: {packet}"
                agreed += 1
            live_table_20 = sorted(f.render() for f in switch.flows() if f.table == 20)
            simulated_table_20 = sorted(render_flows(f for f in simulator.flows() if f.table == 20).splitlines())
            assert live_table_20 == simulated_table_20, f"{name}/{host}: table 20 differs at the end"
    print(f"{agreed} packets: identical verdicts")
    assert agreed >= 1000
