"""`brtun flows` and `brtun diff` on a real switch: annotations, foreign flows, each kind of difference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIGS, EXPECTED, PROJECT

pytestmark = pytest.mark.integration
EXAMPLE = CONFIGS / "example.yaml"
FOREIGN = "cookie=0x99,table=20,priority=100,dl_dst=fa:16:3e:99:99:99,actions=drop"


def brtun(ovs: PrivateOvs, *argv: str) -> subprocess.CompletedProcess[str]:
    """brtun run against the private switch, as an operator on that host would run it."""
    return subprocess.run(["ip", "netns", "exec", ovs.name, sys.executable, "-m", "controller.cli", *argv],
                          capture_output=True, text=True, env=ovs.env, cwd=PROJECT, timeout=60, check=False)


@pytest.fixture
def compute1(private_ovs: PrivateOvs) -> PrivateOvs:
    """compute1's br-tun of the example, as the agent leaves it, plus one learned flow."""
    private_ovs.add_bridge("br-tun", "fail_mode=secure", "protocols=OpenFlow13")
    for name, number, kind in (("patch-int", 1, "internal"), ("gre-c0a8640d", 2, "gre"),
                               ("vxlan-c0a8640c", 3, "vxlan")):
        extra = [f"options:remote_ip=192.168.100.{13 if kind == 'gre' else 12}", "options:key=flow"] \
            if kind != "internal" else []
        private_ovs.vsctl("add-port", "br-tun", name, "--", "set", "Interface", name, f"type={kind}",
                          f"ofport_request={number}", *extra)
    private_ovs.ofctl("--bundle", "add-flows", "br-tun", str(EXPECTED / "example-compute1.flows"))
    private_ovs.run("ovs-appctl", "ofproto/trace", "br-tun",
                    "in_port=3,tun_id=0x1388,dl_src=fa:16:3e:aa:bb:cc,dl_dst=ff:ff:ff:ff:ff:ff", "-generate")
    return private_ovs


def flows_json(ovs: PrivateOvs) -> list[dict[str, object]]:
    result = brtun(ovs, "flows", "--bridge", "br-tun", "--config", str(EXAMPLE), "--as-host", "compute1", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["flows"]


def test_every_flow_of_the_example_is_annotated_and_a_foreign_one_shows_as_foreign(compute1: PrivateOvs) -> None:
    compute1.ofctl("add-flow", "br-tun", FOREIGN)
    rows = flows_json(compute1)
    kinds = [row["kind"] for row in rows]
    assert kinds.count("static") == 25 and kinds.count("learned") == 1 and kinds.count("foreign") == 1
    by_flow = {row["flow"].split(" actions")[0]: row["annotation"] for row in rows}
    assert by_flow[" cookie=0x5e1ec7ab1e, priority=1,in_port=2".strip()] == \
        "from gre-c0a8640d (network) -> table 3 (GRE_TUN_TO_LV)"
    assert by_flow["cookie=0x5e1ec7ab1e, table=3, priority=1,tun_id=0x3e9"] == \
        "net1: key 0x3e9 -> local VLAN 1, then table 10 (LEARN_FROM_TUN)"
    assert by_flow["cookie=0x5e1ec7ab1e, table=20, priority=2,dl_vlan=2,dl_dst=fa:16:3e:00:00:03"] == \
        ("l2population: fa:16:3e:00:00:03 (compute2's port on net2) on VLAN 2 (net2): key 0x1388 to "
         "vxlan-c0a8640c (compute2)")
    assert by_flow["cookie=0x5e1ec7ab1e, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.1.0.2"] == \
        "answer ARP for 10.1.0.2 on VLAN 1 (net1) with fa:16:3e:00:00:04"
    assert by_flow["cookie=0x5e1ec7ab1e, table=22, priority=1,dl_vlan=2"] == \
        "flood VLAN 2 (net2) with key 0x1388 to vxlan-c0a8640c (compute2)"
    learned = next(row for row in rows if row["kind"] == "learned")
    assert learned["annotation"] == "learned fa:16:3e:aa:bb:cc on VLAN 2 (net2): key 0x1388 to vxlan-c0a8640c (compute2)"
    foreign = next(row for row in rows if row["kind"] == "foreign")
    assert foreign["annotation"] == "cookie 0x99 is not brtun's (0x5e1ec7ab1e): never touched"
    assert all(row["annotation"] for row in rows) and all(row["packets"] is not None for row in rows)


def test_the_listing_fits_80_columns_and_names_every_table(compute1: PrivateOvs) -> None:
    result = brtun(compute1, "flows", "--bridge", "br-tun", "--config", str(EXAMPLE), "--as-host", "compute1")
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for name in ("LOCAL_SWITCHING", "PATCH_LV_TO_TUN", "GRE_TUN_TO_LV", "VXLAN_TUN_TO_LV", "GENEVE_TUN_TO_LV",
                 "LEARN_FROM_TUN", "UCAST_TO_TUN", "ARP_RESPONDER", "FLOOD_TO_TUN"):
        assert f" {name}:" in result.stdout


def diff(ovs: PrivateOvs, *extra: str) -> subprocess.CompletedProcess[str]:
    return brtun(ovs, "diff", "--bridge", "br-tun", "--config", str(EXAMPLE), "--as-host", "compute1", *extra)


def test_diff_of_a_switch_equal_to_the_config_exits_0(compute1: PrivateOvs) -> None:
    compute1.ofctl("add-flow", "br-tun", FOREIGN)
    result = diff(compute1)
    assert result.returncode == 0, result.stdout
    assert "IN SYNC" in result.stdout and "learned flows (kept): 1" in result.stdout
    assert "foreign flows (other cookies, never touched): 1" in result.stdout


def test_diff_reports_a_deleted_an_extra_and_a_changed_flow_precisely(compute1: PrivateOvs) -> None:
    compute1.ofctl("--strict", "del-flows", "br-tun", "table=21,priority=1,arp,dl_vlan=1,arp_tpa=10.1.0.2")
    compute1.ofctl("add-flow", "br-tun", "cookie=0x5e1ec7ab1e,table=22,priority=1,dl_vlan=9,actions=pop_vlan,output:2")
    compute1.ofctl("--strict", "mod-flows", "br-tun",
                   "table=22,priority=1,dl_vlan=1,actions=pop_vlan,set_field:0x3e9->tun_id,output:2,output:3")
    result = diff(compute1)
    assert result.returncode == 1
    out = result.stdout
    assert "missing (the config wants them, the switch lacks them): 1" in out
    assert "+ cookie=0x5e1ec7ab1e, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.1.0.2" in out
    assert "extra (brtun's cookie, not in the config): 1" in out
    assert "- cookie=0x5e1ec7ab1e, table=22, priority=1,dl_vlan=9 actions=pop_vlan,output:2" in out
    assert "different (same table, priority and match; other actions): 1" in out
    assert "~ cookie=0x5e1ec7ab1e, table=22, priority=1,dl_vlan=1" in out
    assert "was actions=pop_vlan,set_field:0x3e9->tun_id,output:2,output:3" in out
    assert out.rstrip().endswith("DIFFERENT")


def test_diff_from_a_saved_dump_gives_the_same_answer_as_live(compute1: PrivateOvs, tmp_path: Path) -> None:
    compute1.ofctl("--strict", "del-flows", "br-tun", "table=4,priority=1,tun_id=0x1388")
    live = diff(compute1)
    dump = tmp_path / "br-tun.dump"
    dump.write_text(compute1.ofctl("dump-flows", "br-tun"))
    show = tmp_path / "br-tun.show"
    show.write_text(compute1.ofctl("show", "br-tun"))
    saved = brtun(compute1, "diff", "--from", str(dump), "--ports", str(show), "--config", str(EXAMPLE),
                  "--as-host", "compute1")
    assert live.returncode == saved.returncode == 1
    assert live.stdout.split("\n", 1)[1] == saved.stdout.split("\n", 1)[1]  # all but the source line


def test_a_neutron_dump_with_its_own_cookie_and_port_numbers_is_normalised_on_request(tmp_path: Path) -> None:
    neutron = tmp_path / "neutron.dump"
    text = (EXPECTED / "example-compute1.flows").read_text().replace("0x5e1ec7ab1e", "0xb1e55ed0ffc0ffee")
    text = text.replace("in_port=2 ", "in_port=7 ").replace("output:2", "output:7")
    neutron.write_text(text)
    show = tmp_path / "show"
    show.write_text(" 1(patch-int): addr:aa:aa:aa:aa:aa:aa\n 7(gre-c0a8640d): addr:bb:bb:bb:bb:bb:bb\n"
                    " 3(vxlan-c0a8640c): addr:cc:cc:cc:cc:cc:cc\n LOCAL(br-tun): addr:dd:dd:dd:dd:dd:dd\n")
    plain = subprocess.run([sys.executable, "-m", "controller.cli", "diff", "--from", str(neutron), "--config",
                            str(EXAMPLE), "--as-host", "compute1"], capture_output=True, text=True, cwd=PROJECT,
                           check=False)
    assert plain.returncode == 1 and "foreign flows (other cookies, never touched): 25" in plain.stdout
    normalised = subprocess.run([sys.executable, "-m", "controller.cli", "diff", "--from", str(neutron), "--ports",
                                 str(show), "--ignore-cookies", "--config", str(EXAMPLE), "--as-host", "compute1"],
                                capture_output=True, text=True, cwd=PROJECT, check=False)
    assert normalised.returncode == 0, normalised.stdout
