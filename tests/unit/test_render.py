"""`brtun render`: byte-for-byte what Open vSwitch prints."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.cli import main
from flows.actions import Output, PopVlan, SetField
from flows.flow import Flow, Match, MatchField
from tests.conftest import CONFIG_NAMES, CONFIGS, EXPECTED


def test_example_compute1_is_byte_for_byte_what_ovs_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CONFIGS / "example.yaml"), "--host", "compute1"]) == 0
    assert capsys.readouterr().out == (EXPECTED / "example-compute1.flows").read_text()


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_render_of_every_host_matches_the_reviewed_golden_file(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CONFIGS / f"{name}.yaml")]) == 0
    assert capsys.readouterr().out == (EXPECTED / f"{name}.flows").read_text()


def test_render_without_host_puts_a_header_before_each_host(capsys: pytest.CaptureFixture[str]) -> None:
    main(["render", str(CONFIGS / "example.yaml")])
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert headers == ["# host compute1", "# host compute2", "# host network"]


def test_render_of_an_unknown_host_fails_with_the_host_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CONFIGS / "example.yaml"), "--host", "compute9"]) == 2
    err = capsys.readouterr().err
    assert "no host 'compute9'" in err and "compute1, compute2, network" in err


def test_the_console_script_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "render", str(CONFIGS / "example.yaml"),
         "--host", "compute1"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (EXPECTED / "example-compute1.flows").read_text()


def test_zero_cookie_table_zero_and_default_priority_are_not_printed() -> None:
    assert Flow(0, 32768).render() == " actions=drop"
    assert Flow(1, 32768, cookie=5).render() == " cookie=0x5, table=1, actions=drop"
    assert Flow(0, 0).render() == " priority=0 actions=drop"


def test_timeouts_come_before_the_match() -> None:
    flow = Flow(20, 1, Match.of(dl_dst="fa:16:3e:aa:bb:cc"), (Output(3),), cookie=1,
                idle_timeout=10, hard_timeout=300)
    assert flow.render() == (" cookie=0x1, table=20, idle_timeout=10, hard_timeout=300, "
                             "priority=1,dl_dst=fa:16:3e:aa:bb:cc actions=output:3")


def test_vlan_is_dl_vlan_when_exact_and_vlan_tci_otherwise() -> None:
    assert Match.of(dl_vlan=5).render() == ["dl_vlan=5"]
    assert Match((MatchField("vlan_tci", 2, 0x0FFF),)).render() == ["vlan_tci=0x0002/0x0fff"]
    assert Match((MatchField("vlan_tci", 0, 0x1FFF),)).render() == ["vlan_tci=0x0000/0x1fff"]
    assert Match((MatchField("vlan_tci", 0x7005, None),)).render() == ["dl_vlan=5", "dl_vlan_pcp=3"]


def test_protocol_shorthand_replaces_dl_type_and_nw_proto() -> None:
    assert Match.of(dl_type=0x0806, arp_tpa="10.0.0.1").render() == ["arp", "arp_tpa=10.0.0.1"]
    assert Match.of(dl_type=0x86DD, nw_proto=58, icmp_type=136).render() == ["icmp6", "icmp_type=136"]
    assert Match.of(dl_type=0x0800, nw_proto=99).render() == ["ip", "nw_proto=99"]
    assert Match.of(dl_type=0x1234).render() == ["dl_type=0x1234"]


def test_masked_values_print_as_ovs_prints_them() -> None:
    assert Match.of(tun_id=(5, 0xFF)).render() == ["tun_id=0x5/0xff"]
    assert Match.of(tun_id=0).render() == ["tun_id=0"]
    assert Match.of(dl_type=0x0800, nw_src="10.0.0.0/24").render() == ["ip", "nw_src=10.0.0.0/24"]
    assert Match.of(dl_type=0x0800, nw_src=("10.0.0.0", "255.0.255.0")).render() == [
        "ip", "nw_src=10.0.0.0/255.0.255.0"]


def test_match_fields_print_in_ovs_order_whatever_order_they_were_given() -> None:
    match = Match.of(dl_dst="ff:ff:ff:ff:ff:ff", in_port=3, dl_type=0x0806, tun_id=1, dl_vlan=2)
    assert match.render() == ["arp", "tun_id=0x1", "in_port=3", "dl_vlan=2", "dl_dst=ff:ff:ff:ff:ff:ff"]


def test_set_field_prints_each_field_in_its_own_base() -> None:
    actions = (PopVlan(), SetField("tun_id", 0x3E9), SetField("vlan_vid", 4097), SetField("arp_op", 2),
               Output(0xFFFFFFF8), Output(0xFFFFFFFD, 65535))
    assert Flow(22, 1, actions=actions).render_actions() == (
        "pop_vlan,set_field:0x3e9->tun_id,set_field:4097->vlan_vid,set_field:2->arp_op,"
        "IN_PORT,CONTROLLER:65535")


def test_a_mask_of_zero_drops_the_field_and_values_are_masked() -> None:
    assert Match.of(tun_id=(0x1234, 0)) == Match()
    assert Match.of(tun_id=(0x1234, 0xFF)).fields[0].value == 0x34


@pytest.mark.parametrize("kwargs, message", [
    ({"arp_tpa": "10.0.0.1"}, "arp_tpa needs dl_type"),
    ({"dl_type": 0x86DD, "icmp_type": 134}, "icmp_type needs nw_proto"),
    ({"tun_id": 2**64}, "does not fit tun_id"),
    ({"bogus": 1}, "unknown match field"),
])
def test_matches_open_vswitch_would_refuse_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Match.of(**kwargs)


def test_goto_must_go_forward() -> None:
    with pytest.raises(ValueError, match="must go forward"):
        Flow(20, 0, goto=10)
