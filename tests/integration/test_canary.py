"""The canary checks content, not counts (issue 18, attack 6): a flow lost where a learned one keeps
the table's count, or any flow changed in place, in any table of br-tun or br-int, is repaired within
the audit period, and the learned flows stay.  A real agent on a private switch; the changes are
made with ovs-ofctl behind the agent's back."""

from __future__ import annotations

import re
import time

import pytest

from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.integration.helpers import dump, is_learned, wait_until

pytestmark = pytest.mark.integration
HOST = "compute1"
AUDIT_SECONDS = 1.0  # AgentSettings.audit_interval: the content of a bridge this small is checked every second
# broadcasts from three MACs through compute1's tunnel ports (ofport 2: gre to network; 3: vxlan to compute2)
LEARN = ["in_port=2,tun_id=0x3e9,dl_src=fa:16:3e:aa:00:01,dl_dst=ff:ff:ff:ff:ff:ff",
         "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:00:02,dl_dst=ff:ff:ff:ff:ff:ff",
         "in_port=2,tun_id=0x3e9,dl_src=fa:16:3e:aa:00:03,dl_dst=ff:ff:ff:ff:ff:ff"]


def learn(ovs: PrivateOvs, packet: str) -> None:
    ovs.run("ovs-appctl", "ofproto/trace", "br-tun", packet, "-generate")


def ours(lines: list[str]) -> list[str]:
    return [line for line in lines if not is_learned(line)]


def repaired(agent: AgentProcess, bridge: str, expected: list[str], what: str) -> float:
    """Seconds until `bridge` holds `expected` (learned flows aside) again; the canary said why."""
    started = time.monotonic()
    wait_until(lambda: ours(dump(agent.ovs, bridge)) == expected, timeout=3 * AUDIT_SECONDS + 5,
               what=f"{what} to be repaired")
    seconds = time.monotonic() - started
    log = agent.wait_for_log("(canary): repairing")
    assert f"{bridge}: content: table" in log, log[-2000:]
    return seconds


def changed_in_place(line: str) -> str:
    """`ovs-ofctl mod-flows --strict` text that keeps the flow's table, priority, match and cookie and
    gives it other actions."""
    head, actions = line.split(" actions=")
    head = re.sub(r"^\s*cookie=0x[0-9a-f]+, ", "", head).replace(", ", ",")
    new = "drop" if actions != "drop" else "resubmit(,22)"
    return f"{head} actions={new}"


def test_a_lost_l2population_flow_hidden_by_a_learned_one_is_repaired(agent: AgentProcess) -> None:
    """Table 20 keeps its count (one l2population entry gone, one MAC learned): counting could not
    tell, comparing does."""
    ovs = agent.ovs
    learn(ovs, LEARN[0])
    wait_until(lambda: sum(is_learned(line) for line in dump(ovs, "br-tun")) == 1, what="the first learned flow")
    time.sleep(2 * AUDIT_SECONDS)
    expected = ours(dump(ovs, "br-tun"))
    table20 = [line for line in expected if "table=20, priority=2" in line]
    count = len(dump(ovs, "br-tun", "table=20"))
    victim = table20[0].split(" actions=")[0].split(", ", 1)[1].replace(", ", ",")
    ovs.ofctl("del-flows", "--strict", "br-tun", victim)
    learn(ovs, LEARN[1])
    assert len(dump(ovs, "br-tun", "table=20")) == count  # the same count, other content
    seconds = repaired(agent, "br-tun", expected, "the l2population flow")
    learned = [line for line in dump(ovs, "br-tun") if is_learned(line)]
    print(f"lost l2population flow under a learned one: repaired in {seconds:.2f} s; {len(learned)} learned kept")
    assert len(learned) == 2


@pytest.mark.parametrize("table", [0, 2, 3, 4, 10, 20, 21, 22])
def test_a_br_tun_flow_changed_in_place_is_repaired(agent: AgentProcess, table: int) -> None:
    ovs = agent.ovs
    for packet in LEARN:
        learn(ovs, packet)
    expected = ours(dump(ovs, "br-tun"))
    line = next(line for line in expected if f"table={table}," in line or (table == 0 and "table=" not in line))
    ovs.ofctl("mod-flows", "--strict", "br-tun", changed_in_place(line))
    after = ours(dump(ovs, "br-tun"))
    assert after != expected and len(after) == len(expected)  # same count, other content
    seconds = repaired(agent, "br-tun", expected, f"table {table}")
    print(f"br-tun table {table}, flow changed in place: repaired in {seconds:.2f} s")
    assert sum(is_learned(line) for line in dump(ovs, "br-tun")) == len(LEARN)


@pytest.mark.parametrize("table", [0, 23, 60])
def test_a_br_int_flow_changed_in_place_is_repaired(agent: AgentProcess, table: int) -> None:
    ovs = agent.ovs
    expected = dump(ovs, "br-int")
    line = next(line for line in expected if f"table={table}," in line or (table == 0 and "table=" not in line))
    ovs.ofctl("mod-flows", "--strict", "br-int", changed_in_place(line))
    assert dump(ovs, "br-int") != expected
    seconds = repaired(agent, "br-int", expected, f"br-int table {table}")
    print(f"br-int table {table}, flow changed in place: repaired in {seconds:.2f} s")


def test_a_flow_added_with_our_cookie_is_removed(agent: AgentProcess) -> None:
    ovs = agent.ovs
    expected = ours(dump(ovs, "br-tun"))
    ovs.ofctl("add-flow", "br-tun", "cookie=0x5e1ec7ab1e,table=22,priority=7,dl_vlan=9 actions=output:2")
    seconds = repaired(agent, "br-tun", expected, "the flow added behind the agent's back")
    print(f"a flow with our cookie added: removed in {seconds:.2f} s")


def test_a_foreign_flow_and_learned_flows_start_no_repair(agent: AgentProcess) -> None:
    """Other cookies' flows are not the canary's, nor are the flows the switch learns: no repair."""
    ovs = agent.ovs
    ovs.ofctl("add-flow", "br-tun", "cookie=0x1234,table=22,priority=7,dl_vlan=9 actions=drop")
    for packet in LEARN:
        learn(ovs, packet)
    time.sleep(4 * AUDIT_SECONDS)
    assert "(canary): repairing" not in agent.log()
    assert any("cookie=0x1234" in line for line in dump(ovs, "br-tun"))
