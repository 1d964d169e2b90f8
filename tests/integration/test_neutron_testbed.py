"""The seed driven by a real neutron-server over RabbitMQ, and its faults.

One testbed for the module (`brtun testbed up --neutron`): MariaDB, RabbitMQ,
neutron-server's API and RPC server in the controller namespace on the
underlay; every host's agent is `brtun run --neutron`; the network, subnet
and ports are made through Neutron's REST API.  Real packets throughout.
The fault tests watch every switch with `ovs-ofctl monitor` and a VM pinging
another every 10 ms; each prints its counts.  Needs the shared lock (the
seed's namespace names are fixed): flock /tmp/brtun-integration.lock.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from mininet_topos import checks
from mininet_topos.cli import SEED
from mininet_topos.topology import Built
from ovshost.neutronapi import NeutronApi
from tests.conftest import PROJECT
from tests.integration.helpers import FlowMonitor, Pinger, brtun, dump, is_learned, passes, running_testbed, wait_until

pytestmark = pytest.mark.integration
L2POP = "q-agent-notifier-l2population-update"
FLOOD = ["00:00:00:00:00:00", "0.0.0.0"]


@pytest.fixture(scope="module")
def cloud() -> Iterator[Built]:
    with running_testbed(SEED, "seed", neutron=True) as built:
        yield built


@pytest.fixture(scope="module")
def bed(cloud: Built) -> checks.Bed:
    return checks.Bed(cloud.state, cloud.spec, cloud.config)


@pytest.fixture(autouse=True)
def agent_logs_on_failure(request: pytest.FixtureRequest, cloud: Built) -> Iterator[None]:
    """A failed test shows what each agent's Neutron source did (the testbed is gone by the time one looks)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name, host in cloud.hosts.items():
            lines = [line for line in host.agent.log().splitlines() if "brtun.neutron" in line
                     or "brtun.changes" in line or "WARNING" in line or "ERROR" in line] if host.agent else []
            print(f"----- {name}'s agent (last 40 lines of interest)\n" + "\n".join(lines[-40:]))


def api(cloud: Built) -> NeutronApi:
    return NeutronApi(Path(cloud.state.neutron["api_socket"]))


def network_id(cloud: Built) -> str:
    return str(cloud.state.neutron["networks"]["private"])


def neutron_state(cloud: Built) -> dict[str, dict[str, Any]]:
    """Each agent's Neutron side, as `brtun state --json` shows it."""
    result = brtun("state", "--testbed", cloud.state.name, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {host: reply["neutron"] for host, reply in json.loads(result.stdout).items()}


def cast(cloud: Built, messages: list[dict[str, Any]]) -> None:
    """Cast on the testbed's bus as neutron-server does (tests/integration/neutronbus.py, in its namespace)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as stream:
        json.dump(messages, stream)
    result = subprocess.run(["ip", "netns", "exec", "controller", sys.executable, "-m", "tests.integration.neutronbus",
                             cloud.state.neutron["transport_url"], stream.name], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120)
    Path(stream.name).unlink()
    assert result.returncode == 0, result.stdout + result.stderr


def fdb(agent: str, *pairs: list[str], net: str, segment: int = 1) -> dict[str, Any]:
    return {net: {"segment_id": segment, "network_type": "gre", "ports": {agent: [list(p) for p in pairs]}}}


def l2pop(method: str, entries: Any, pause: float = 0.0) -> dict[str, Any]:
    return {"topic": L2POP, "method": method, "kwargs": {"fdb_entries": entries}, "pause": pause}


def ours(cloud: Built, host: str) -> list[str]:
    """br-tun's flows on a host without the learned ones (they come and go with traffic)."""
    return [line for line in dump(cloud.hosts[host].ovs, "br-tun") if not is_learned(line)]


def settled(cloud: Built, counted: dict[str, dict[str, Any]], key: str, what: str, timeout: float = 30) -> None:
    """Until every agent's counter `key` (a dict) grew past `counted` and its source answers again."""
    def grown() -> bool:
        now = neutron_state(cloud)
        return all(sum(now[h][key].values()) > sum(counted[h][key].values()) and now[h]["healthy"] for h in now)
    wait_until(grown, timeout, what)


def grew(now: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]], host: str, key: str) -> int:
    return sum(now[host][key].values()) - sum(before[host][key].values())


def resynced_where_calls_failed(cloud: Built, before: dict[str, dict[str, Any]], what: str, timeout: float) -> None:
    """Until every agent answers again and each whose call failed meanwhile has resynced.  (An agent that
    made no call while the RPC server was away missed nothing: the server sends nothing when it is down.)"""
    def done() -> bool:
        now = neutron_state(cloud)
        return all(now[h]["healthy"] and (grew(now, before, h, "rpc_failures") == 0 or grew(now, before, h, "resyncs"))
                   for h in now)
    wait_until(done, timeout, what)


class Watch:
    """Every host's br-tun and br-int watched (flow-mods, learned flows left out) while vm1 pings vm2."""

    def __init__(self, cloud: Built, seconds: float) -> None:
        self.cloud = cloud
        self.seconds = seconds
        self.monitors = [FlowMonitor(host.ovs, bridge) for host in cloud.hosts.values()
                         for bridge in ("br-tun", "br-int")]
        self._stack = ExitStack()

    def __enter__(self) -> Watch:
        for monitor in self.monitors:
            self._stack.enter_context(monitor)
        first, second = self.cloud.spec.vms[0], self.cloud.spec.vms[1]
        self.pinger = Pinger(first.name, str(second.ip), self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sent, self.received = self.pinger.wait()
        self._stack.close()

    @property
    def flow_mods(self) -> dict[str, int]:
        return {f"{m.ovs.name} {m.bridge}": len(m.flow_mods) for m in self.monitors}


# ----- the seed, under Neutron -------------------------------------------------------------------

def test_the_seeds_checks_pass_with_neutron_driving_the_agents(cloud: Built, bed: checks.Bed) -> None:
    for result in checks.seed_checks(bed, cloud.timings["addresses"] - cloud.timings["plumbed"]):
        passes(result)


def test_neutron_bound_the_seeds_ports_with_the_seeds_macs_and_addresses(cloud: Built) -> None:
    ports = {p["mac_address"]: p for p in api(cloud).ports()}
    for host in cloud.config.hosts:
        for port in host.ports:
            neutron = ports[port.mac]
            assert neutron["binding:host_id"] == host.name and neutron["status"] == "ACTIVE"
            assert neutron["binding:vif_type"] == "ovs"
            assert [ip["ip_address"] for ip in neutron["fixed_ips"]] == [port.ip]
    agents = {a["host"]: a for a in api(cloud).agents()}
    assert set(agents) == set(cloud.config.host_names)
    assert all(a["alive"] and a["agent_type"] == "Open vSwitch agent" and a["configurations"]["l2_population"]
               for a in agents.values())


def test_each_br_tun_holds_exactly_the_flows_of_the_yaml_its_neutron_state_amounts_to(cloud: Built) -> None:
    """One model, two sources: the agent's config, written out as YAML, renders the flows the switch holds."""
    for name, host in cloud.hosts.items():
        reply = subprocess.run([sys.executable, "-c", (
            "import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "s.sendall(b'{\"op\": \"config\"}\\n'); print(s.makefile().read())"), str(host.agent.control_socket)],
            capture_output=True, text=True, check=True).stdout
        text = json.loads(reply)["text"]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as stream:
            stream.write(text)
        rendered = brtun("render", stream.name, "--host", name)
        Path(stream.name).unlink()
        assert rendered.returncode == 0, rendered.stderr
        # the switch's port numbers are the rule's, as `brtun render` assumes
        assert sorted(rendered.stdout.splitlines()) == ours(cloud, name), name
    # the config belongs to Neutron: `brtun apply` is refused by every agent, and nothing changes
    refused = brtun("apply", str(SEED), "--testbed", cloud.state.name)
    assert refused.returncode == 2 and "comes from Neutron" in refused.stdout + refused.stderr, refused.stdout


def test_ports_made_and_deleted_through_the_api_reach_and_leave_every_br_tun(bed: checks.Bed) -> None:
    made, removed = checks.neutron_port_lifecycle(bed)
    passes(made)
    passes(removed)


# ----- faults ---------------------------------------------------------------------------------------

def test_rabbitmq_killed_and_restarted_forwarding_goes_on_and_every_agent_resyncs(cloud: Built) -> None:
    server = cloud.neutron
    assert server is not None
    before = neutron_state(cloud)
    with Watch(cloud, 20) as watch:
        time.sleep(1)
        killed = server.kill("rabbitmq")
        time.sleep(4)
        alive = [name for name, host in cloud.hosts.items() if host.agent is not None and host.agent.running]
        restarted = server.restart("rabbitmq")
        started = time.monotonic()
        settled(cloud, before, "resyncs", "every agent's resync after RabbitMQ came back")
        resynced = time.monotonic() - started
    after = neutron_state(cloud)
    counts = {h: sum(after[h]["resyncs"].values()) - sum(before[h]["resyncs"].values()) for h in after}
    print(f"RabbitMQ (PID {killed}) killed for 4 s, back in {restarted:.1f} s; every agent resynced "
          f"{resynced:.1f} s later ({counts}); vm1 -> vm2 every 10 ms: {watch.received}/{watch.sent}; "
          f"flow-mods {watch.flow_mods}; failed calls "
          f"{ {h: sum(after[h]['rpc_failures'].values()) - sum(before[h]['rpc_failures'].values()) for h in after} }")
    assert killed is not None and sorted(alive) == sorted(cloud.hosts)
    assert watch.received == watch.sent  # forwarding never depended on the bus
    assert not any(watch.flow_mods.values())  # nothing changed meanwhile: the resync changed nothing
    assert all(count >= 1 for count in counts.values())
    passes(checks.ping_across_hosts(checks.Bed(cloud.state, cloud.spec, cloud.config)))


def test_the_rpc_server_killed_and_restarted_a_port_plugged_meanwhile_comes_up_after(cloud: Built,
                                                                                     bed: checks.Bed) -> None:
    """Nova plugs a VM while the RPC server is away: its agent cannot ask about it (the call fails and is
    counted); once the server is back every agent resyncs and the port comes up and is reachable."""
    server = cloud.neutron
    assert server is not None
    before = neutron_state(cloud)
    killed = server.kill("neutron-rpc-server")
    away: dict[str, float] = {}

    def restart_later() -> None:
        time.sleep(5)
        away["restart"] = server.restart("neutron-rpc-server")

    _, plugged_on = bed.pair_across_hosts()  # where neutron_port_lifecycle plugs the new VM

    def resyncs_settled() -> None:
        """Before the port is deleted: a resync reports every port up again, and l2population answers with
        its full entries, the new port's included; a cast of those still in flight when the port is deleted
        would re-add it after its removal (Neutron's own agent has the same race)."""
        resynced_where_calls_failed(cloud, before, "a resync by every agent whose calls failed", timeout=40)
        time.sleep(2)  # the casts the resyncs cause arrive within a second here

    with Watch(cloud, 16) as watch:
        made, removed = checks.neutron_port_lifecycle(bed, timeout=60, meanwhile=restart_later,
                                                      before_delete=resyncs_settled)
    after = neutron_state(cloud)
    counts = {h: grew(after, before, h, "resyncs") for h in after}
    failures = {h: grew(after, before, h, "rpc_failures") for h in after}
    print(f"neutron-rpc-server (PID {killed}) killed for 5 s, back in {away['restart']:.1f} s; resyncs {counts}; "
          f"failed calls while away {failures}; vm1 -> vm2 every 10 ms: {watch.received}/{watch.sent}")
    passes(made)
    passes(removed)
    assert killed is not None
    assert failures[plugged_on.host] >= 1 and counts[plugged_on.host] >= 1  # it had to ask about the new port
    assert all(counts[h] >= 1 for h in after if failures[h])
    # forwarding goes on; a VM port added to and removed from br-int meanwhile reconfigures the userspace
    # datapath, which may drop a packet in flight on a busy machine (0 or 1 of 1,400 here)
    assert watch.received >= watch.sent - 3


def test_an_agent_restarted_over_its_switch_sends_no_flow_mod(cloud: Built) -> None:
    host = cloud.hosts["compute1"]
    assert host.agent is not None
    with Watch(cloud, 12) as watch:
        time.sleep(1)
        host.agent.stop()
        time.sleep(1)
        started = time.monotonic()
        host.agent.start()
        log = host.agent.wait_in_sync(timeout=60)
        in_sync = time.monotonic() - started
    resync = [line for line in log.splitlines() if "neutron: in sync with neutron-server" in line]
    print(f"compute1's agent restarted: in sync {in_sync:.1f} s after its start ({resync[0].split('neutron: ')[-1]}); "
          f"vm1 -> vm2 every 10 ms: {watch.received}/{watch.sent}; flow-mods {watch.flow_mods}")
    assert "br-tun: read" in log and "in sync, nothing sent" in log.split("br-tun: read")[1].splitlines()[0]
    assert not any(watch.flow_mods.values())
    assert watch.received == watch.sent


def test_duplicate_and_reordered_fdb_messages_change_each_flow_once_and_end_where_in_order_would(
        cloud: Built) -> None:
    net = network_id(cloud)
    hosts = {h.name: h for h in cloud.config.hosts}
    full = {net: {"segment_id": 1, "network_type": "gre", "ports": {
        h.local_ip: [FLOOD, *[[p.mac, p.ip] for p in h.ports]] for h in cloud.config.hosts}}}
    before = neutron_state(cloud)
    original = {h: ours(cloud, h) for h in cloud.hosts}
    with Watch(cloud, 3) as repeated:
        cast(cloud, [l2pop("add_fdb_entries", full)] * 3)  # what a refresh sends, three times over
        time.sleep(1.5)
    assert not any(repeated.flow_mods.values())
    # four new MACs on compute2 and the network host, each announced twice, in a shuffled order, then gone
    extra = [("192.168.100.12", f"fa:16:3e:aa:00:0{i}", f"10.0.0.{100 + i}") for i in (1, 2)] + \
            [("192.168.100.10", f"fa:16:3e:aa:00:0{i}", f"10.0.0.{100 + i}") for i in (3, 4)]
    adds = [l2pop("add_fdb_entries", fdb(agent, [mac, ip], net=net)) for agent, mac, ip in extra] * 2
    removes = [l2pop("remove_fdb_entries", fdb(agent, [mac, ip], net=net)) for agent, mac, ip in extra] * 2
    shuffled = random.Random(17)
    results = []
    for order in (list(adds), list(reversed(adds))):
        shuffled.shuffle(order)
        with Watch(cloud, 3) as added:
            cast(cloud, order)
            wait_until(lambda: all(all(mac in "".join(ours(cloud, h)) for a, mac, _ in extra
                                       if a != hosts[h].local_ip) for h in cloud.hosts), 15, "the new entries")
            time.sleep(0.5)
        results.append(({h: ours(cloud, h) for h in cloud.hosts}, added.flow_mods))
        gone = list(removes)
        shuffled.shuffle(gone)
        cast(cloud, gone)
        wait_until(lambda: {h: ours(cloud, h) for h in cloud.hosts} == original, 15, "the entries to go")
    (first, first_mods), (second, second_mods) = results
    assert first == second and first_mods == second_mods  # the order they came in made no difference
    for host in cloud.hosts:
        expected = sum(1 for agent, _, _ in extra if agent != hosts[host].local_ip)
        assert first_mods[f"{host} br-tun"] == expected  # one add per new MAC, duplicates sent nothing
    after = neutron_state(cloud)
    print("duplicates: the full network 3 times and 4 new MACs twice each, in two orders: "
          f"flow-mods per host {first_mods}; outcomes "
          f"{ {h: {k: v - before[h]['outcomes'].get(k, 0) for k, v in after[h]['outcomes'].items() if 'fdb' in k} for h in after} }")


HOSTILE_FDB = [
    None, [], "x", {"not a network!": {}}, {"NET": None}, {"NET": {"segment_id": 1, "network_type": "gre"}},
    {"NET": {"segment_id": "1", "network_type": "gre", "ports": {}}},
    {"NET": {"segment_id": 1, "network_type": "vlan", "ports": {}}},
    {"NET": {"segment_id": 2**33, "network_type": "gre", "ports": {}}},
    {"NET": {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["fa:16:3e:bb:00:01"]]}}},
    {"NET": {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["zz", "10.0.0.150"]]}}},
    {"NET": {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": [["ff:ff:ff:ff:ff:ff", "10.0.0.9"]]}}},
    {"NET": {"segment_id": 1, "network_type": "gre", "ports": {"not-an-ip": [FLOOD]}}},
    {"NET": {"segment_id": 1, "network_type": "gre", "ports": {"192.168.100.12": "nope"}}},
]


def test_malformed_entries_and_unknown_networks_are_counted_ignored_and_never_half_applied(cloud: Built) -> None:
    net = network_id(cloud)
    malformed = [json.loads(json.dumps(entries).replace('"NET"', json.dumps(net))) for entries in HOSTILE_FDB]
    # a good part beside a malformed one: nothing of the message may be applied
    half = {**fdb("192.168.100.12", ["fa:16:3e:cc:00:01", "10.0.0.160"], net=net),
            "0c1d2e3f-0000-4000-8000-000000000001": {"segment_id": 1, "network_type": "gre",
                                                     "ports": {"192.168.100.13": [["fa:16:3e:cc:00:02", "bad"]]}}}
    unknown = fdb("192.168.100.12", FLOOD, ["fa:16:3e:dd:00:01", "10.9.0.1"], net="0c1d2e3f-0000-4000-8000-0000000000ff",
                  segment=77)
    conflicting = [fdb("192.168.100.12", ["fa:16:3e:ee:00:01", "10.0.0.170"], net=net, segment=2),  # another segment
                   fdb("192.168.100.13", ["fa:16:3e:ee:00:02", "10.0.0.171"], ["fa:16:3e:ee:00:03", "10.0.0.171"],
                       net=net)]  # one address, two MACs
    others = [{"topic": "q-agent-notifier-tunnel-update", "method": "tunnel_update",
               "kwargs": {"tunnel_ip": "not an ip", "tunnel_type": "gre"}},
              {"topic": "q-agent-notifier-tunnel-update", "method": "tunnel_update", "kwargs": {}},
              {"topic": "q-agent-notifier-port-update", "method": "port_update", "kwargs": {"port": None}},
              {"topic": "q-agent-notifier-port-delete", "method": "port_delete", "kwargs": {"port_id": 7}},
              {"topic": "q-agent-notifier-network-delete", "method": "network_delete", "kwargs": {"network_id": ["x"]}},
              {"topic": "q-agent-notifier-network-update", "method": "network_update", "kwargs": {"network": "x"}},
              {"topic": L2POP, "method": "update_fdb_entries", "kwargs": {"fdb_entries": {"chg_ip": 5}}},
              {"topic": L2POP, "method": "add_fdb_entries", "kwargs": {}}]
    messages = ([l2pop("add_fdb_entries", m) for m in malformed] + [l2pop("remove_fdb_entries", m) for m in malformed]
                + [l2pop("add_fdb_entries", half), l2pop("add_fdb_entries", unknown)]
                + [l2pop("add_fdb_entries", c) for c in conflicting] + others)
    wanted_malformed = 2 * len(malformed) + 1 + len(others)
    before = neutron_state(cloud)
    original = {h: ours(cloud, h) for h in cloud.hosts}
    with Watch(cloud, 4) as watch:
        cast(cloud, messages)
        wait_until(lambda: all(sum(s["received"].values()) - sum(before[h]["received"].values()) >= len(messages)
                               for h, s in neutron_state(cloud).items()), 20, "every message to arrive")
    after = neutron_state(cloud)

    def grew(host: str, table: str, word: str) -> int:
        return sum(v for k, v in after[host][table].items() if word in k) - \
            sum(v for k, v in before[host][table].items() if word in k)

    counts = {h: {"malformed": grew(h, "outcomes", "malformed"), "conflicting": grew(h, "outcomes", "conflicting"),
                  "unknown network": grew(h, "ignored", "unknown network")} for h in after}
    print(f"{len(messages)} hostile messages to each of {len(after)} agents: {counts}; flow-mods {watch.flow_mods}; "
          f"vm1 -> vm2 every 10 ms: {watch.received}/{watch.sent}")
    for host in cloud.hosts:
        assert cloud.hosts[host].agent.running
        assert counts[host] == {"malformed": wanted_malformed, "conflicting": len(conflicting), "unknown network": 1}
    assert {h: ours(cloud, h) for h in cloud.hosts} == original  # nothing applied, not even the good half
    assert not any(watch.flow_mods.values()) and watch.received == watch.sent
    # and the bus still works: a good message after them is applied
    cast(cloud, [l2pop("add_fdb_entries", fdb("192.168.100.12", ["fa:16:3e:cc:00:09", "10.0.0.169"], net=net))])
    wait_until(lambda: "fa:16:3e:cc:00:09" in "".join(ours(cloud, "compute1")), 15, "a good message after them")
    cast(cloud, [l2pop("remove_fdb_entries", fdb("192.168.100.12", ["fa:16:3e:cc:00:09", "10.0.0.169"], net=net))])
    wait_until(lambda: {h: ours(cloud, h) for h in cloud.hosts} == original, 15, "the good entry to go")
