"""Validation: every rule with its message; all errors at once; nothing half-applied."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from controller.cli import main
from flows import fastyaml, yamlsource
from flows.config import DEFAULT_COOKIE, InvalidConfig, parse_config, validate
from tests.conftest import PROJECT

BASE: dict[str, Any] = {
    "options": {"l2_population": True, "arp_responder": True},
    "networks": {
        "net1": {"type": "gre", "segmentation_id": 1001},
        "net2": {"type": "vxlan", "segmentation_id": 5000},
    },
    "hosts": {
        "c1": {"datapath_id": 0xB01, "local_ip": "192.168.100.11",
               "ports": [{"network": "net1", "mac": "fa:16:3e:00:00:01", "ip": "10.1.0.11"},
                         {"network": "net2", "mac": "fa:16:3e:00:00:02", "ip": "10.2.0.11"}]},
        "c2": {"datapath_id": 0xB02, "local_ip": "192.168.100.12",
               "ports": [{"network": "net1", "mac": "fa:16:3e:00:00:03", "ip": "10.1.0.12"}]},
    },
}


def with_change(path: str, value: Any) -> str:
    """BASE with one field set (value DELETE removes it), dumped as YAML."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value == "DELETE":
        del node[key]
    else:
        node[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    return [f"{error.path}: {error.reason}" for error in caught.value.errors]


def test_the_base_config_is_valid() -> None:
    config = parse_config(yaml.safe_dump(BASE))
    assert config.cookie == DEFAULT_COOKIE
    assert [n.name for n in config.networks] == ["net1", "net2"]


CHANGES = [
    ("hosts.c2.local_vlans", {"net1": 4095},
     "hosts.c2.local_vlans.net1: 4095 is outside 1..4094 (4095 is Neutron's dead VLAN)"),
    ("hosts.c2.local_vlans", {"net1": 0}, "hosts.c2.local_vlans.net1: 0 is outside 1..4094"),
    ("hosts.c1.local_vlans", {"net1": 3, "net2": 3},
     "hosts.c1.local_vlans.net2: VLAN 3 is already the local VLAN of net1"),
    ("hosts.c1.local_vlans", {"net9": 3},
     "hosts.c1.local_vlans.net9: unknown network 'net9' (networks: net1, net2)"),
    ("networks.net1.segmentation_id", 0, "networks.net1.segmentation_id: 0 is outside 1..4294967295"),
    ("networks.net1.segmentation_id", 2**32, "networks.net1.segmentation_id: 4294967296 is outside 1..4294967295"),
    ("networks.net2.segmentation_id", 2**24, "networks.net2.segmentation_id: 16777216 is outside 1..16777215"),
    ("networks.net3", {"type": "geneve", "segmentation_id": 2**24},
     "networks.net3.segmentation_id: 16777216 is outside 1..16777215"),
    ("networks.net3", {"type": "gre", "segmentation_id": 1001},
     "networks.net3.segmentation_id: 1001 is already the key of gre network net1"),
    ("networks.net3", {"type": "mpls", "segmentation_id": 7},
     "networks.net3.type: unknown tunnel type 'mpls' (known: gre, vxlan, geneve)"),
    ("networks.net3", {"type": "gre"}, "networks.net3.segmentation_id: missing"),
    ("networks.net3", {"type": "gre", "segmentation_id": "7"},
     "networks.net3.segmentation_id: must be a whole number (gre key), not the text '7'"),
    ("networks.net3", {"type": "gre", "segmentation_id": 7, "mtu": 1450},
     "networks.net3.mtu: unknown key (known: type, segmentation_id)"),
    ("networks.bad name", {"type": "gre", "segmentation_id": 7},
     "networks.bad name: a name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"),
    ("hosts.c1.ports.0.network", "net9", "hosts.c1.ports[0].network: unknown network 'net9' (networks: net1, net2)"),
    ("hosts.c1.ports.0.mac", "fa:16:3e:00:00", "hosts.c1.ports[0].mac: 'fa:16:3e:00:00' is not a MAC address "
     "(six hex pairs, colon separated)"),
    ("hosts.c1.ports.0.mac", "01:00:5e:00:00:01",
     "hosts.c1.ports[0].mac: 01:00:5e:00:00:01 is a multicast MAC; a port needs a unicast one"),
    ("hosts.c1.ports.0.mac", "00:00:00:00:00:00", "hosts.c1.ports[0].mac: 00:00:00:00:00:00 is not a usable MAC"),
    ("hosts.c2.ports.0.mac", "FA:16:3E:00:00:01",
     "hosts.c2.ports[0].mac: fa:16:3e:00:00:01 is already used on net1 by hosts.c1.ports[0]"),
    ("hosts.c2.ports.0.ip", "10.1.0.11", "hosts.c2.ports[0].ip: 10.1.0.11 is already used on net1 by hosts.c1.ports[0]"),
    ("hosts.c1.ports.0.ip", "10.1.0.300", "hosts.c1.ports[0].ip: '10.1.0.300' is not an IP address"),
    ("hosts.c1.ports.0.ip", "fd00::11", "hosts.c1.ports[0].ip: fd00::11 is IPv6; port addresses are IPv4 (the ARP "
     "responder and the testbed's tenant subnets are IPv4)"),
    ("hosts.c1.ports.0.vlan", 5, "hosts.c1.ports[0].vlan: unknown key (known: network, mac, ip, name)"),
    ("hosts.c1.ports.0.mac", "DELETE", "hosts.c1.ports[0].mac: missing"),
    ("hosts.c1.ports.0.name", "tap-with-a-very-long-name", "hosts.c1.ports[0].name: 'tap-with-a-very-long-name' "
     "is not a port name (1-15 characters, no spaces or '/')"),
    ("hosts.c1.local_ip", "192.168.100.256", "hosts.c1.local_ip: '192.168.100.256' is not an IP address"),
    ("hosts.c1.local_ip", "2001:db8::11", "hosts.c1.local_ip: 2001:db8::11 is IPv6, but hosts.c2.local_ip "
     "192.168.100.12 is IPv4 and both speak gre: Neutron makes no tunnel between address families (give every "
     "host of a tunnel type the same family)"),
    ("hosts.c1.local_ip", "fe80::1", "hosts.c1.local_ip: fe80::1 is not a unicast address (link-local)"),
    ("options.underlay_mtu", 1000, "options.underlay_mtu: 1000 is outside 1280..9216"),
    ("options.geneve_max_header_size", 20, "options.geneve_max_header_size: 20 is outside 30..260"),
    ("hosts.c1.local_ip", "224.0.0.5", "hosts.c1.local_ip: 224.0.0.5 is not a unicast address"),
    ("hosts.c1.local_ip", "127.0.0.1", "hosts.c1.local_ip: 127.0.0.1 is not a unicast address"),
    ("hosts.c2.local_ip", "192.168.100.11", "hosts.c2.local_ip: 192.168.100.11 is already the local_ip of c1"),
    ("hosts.c1.local_ip", "DELETE", "hosts.c1.local_ip: missing"),
    ("hosts.c1.locl_ip", "1.2.3.4", "hosts.c1.locl_ip: unknown key; did you mean local_ip?"),
    ("hosts.c2.datapath_id", 0xB01, "hosts.c2.datapath_id: 0xb01 is already the datapath ID of c1's br-tun"),
    ("hosts.c2.int_datapath_id", 0xB01, "hosts.c2.int_datapath_id: 0xb01 is already the datapath ID of c1's br-tun"),
    ("hosts.c2.datapath_id", 0, "hosts.c2.datapath_id: 0x0 is outside 0x1..0xffffffffffffffff"),
    ("hosts.c2.datapath_id", "zz", "hosts.c2.datapath_id: 'zz' is not a hexadecimal datapath ID"),
    ("hosts.c1.tunnel_types", ["gre", "gre"], "hosts.c1.tunnel_types[1]: gre is listed twice"),
    ("hosts.c2.tunnel_types", ["gre", "stt"],
     "hosts.c2.tunnel_types[1]: unknown tunnel type 'stt' (known: gre, vxlan, geneve)"),
    ("hosts.c1.tunnel_types", ["gre"],
     "hosts.c1.ports[1].network: net2 is a vxlan network, but this host's tunnel_types are [gre]"),
    ("hosts.c1.ofports", {"patch-int": 70000}, "hosts.c1.ofports.patch-int: 70000 is outside 1..65279"),
    ("hosts.c1.ofports", {"gre-c0a86463": 5},
     "hosts.c1.ofports.gre-c0a86463: no such port on this host's br-tun (its ports: patch-int, "
     "gre-c0a8640c, vxlan-c0a8640c)"),
    ("hosts.c1.ofports", {"patch-int": 2, "gre-c0a8640c": 2},
     "hosts.c1.ofports.gre-c0a8640c: 2 is already the ofport of patch-int"),
    ("hosts.c3", {"datapath_id": 0xB03, "local_ip": "192.168.116.12"}, None),  # same low 12 bits: allocated
    ("hosts.c1.ports", {"network": "net1"}, "hosts.c1.ports: must be a list, not a mapping"),
    ("options.arp_responder", True, None),  # valid: l2_population is on in BASE
    ("options.l2_population", False,
     "options.arp_responder: works only with l2_population: true (Neutron turns it off otherwise)"),
    ("options.l2_population", "yes please", "options.l2_population: must be true or false, not the text 'yes please'"),
    ("options.learn_hard_timeout", 0, "options.learn_hard_timeout: 0 is outside 1..65535"),
    ("options.learn_hard_timeout", 65536, "options.learn_hard_timeout: 65536 is outside 1..65535"),
    ("options.l2pop", True, "options.l2pop: unknown key (known: l2_population, arp_responder, learn_hard_timeout, "
     "dont_fragment, tunnel_csum, dscp, dscp_inherit, vxlan_udp_port, underlay_mtu, geneve_max_header_size)"),
    ("options.dscp", 64, "options.dscp: 64 is outside 0..63"),
    ("options.dscp_inherit", "yes", "options.dscp_inherit: must be true or false, not the text 'yes'"),
    ("options.vxlan_udp_port", 0, "options.vxlan_udp_port: 0 is outside 1..65535"),
    ("options.tunnel_csum", 1, "options.tunnel_csum: must be true or false, not the number 1"),
    ("cookie", 0, "cookie: 0x0 is outside 0x1..0xfffffffffffffffe"),
    ("netwroks", {}, "netwroks: unknown key; did you mean networks?"),
    ("hosts", "DELETE", "hosts: missing"),
    ("networks", [], "networks: must be a mapping, not a list"),
]


@pytest.mark.parametrize("path, value, message", CHANGES, ids=[c[0] + "=" + str(c[1])[:20] for c in CHANGES])
def test_each_rule_reports_the_field_and_the_reason(path: str, value: Any, message: str | None) -> None:
    text = with_change(path, value)
    if message is None:
        parse_config(text)
        return
    assert message in errors_of(text)


YAML_TRAPS = [
    ("an unquoted MAC of digits is a base-60 number in YAML 1.1",
     "hosts:\n  c1:\n    datapath_id: 1\n    local_ip: 192.168.100.1\n    ports:\n"
     "      - {network: n, mac: 52:54:00:12:34:56}\nnetworks: {n: {type: gre, segmentation_id: 1}}\n",
     'hosts.c1.ports[0].mac: YAML read 52:54:00:12:34:56 as the number 41135085296; quote it: "52:54:00:12:34:56"'),
    ("a network called no is the boolean false",
     "networks:\n  no: {type: gre, segmentation_id: 1}\nhosts: {}\n",
     'networks.no: YAML read no as false; quote it: "no"'),
    ("a tunnel type on is the boolean true",
     "networks:\n  n: {type: on, segmentation_id: 1}\nhosts: {}\n",
     'networks.n.type: YAML read on as true; quote it: "on"'),
    ("a network named by a number",
     "networks:\n  1001: {type: gre, segmentation_id: 1}\nhosts: {}\n",
     'networks.1001: YAML read 1001 as the number 1001; quote it: "1001"'),
    ("a key given twice is silently overwritten by YAML",
     "networks:\n  n: {type: gre, segmentation_id: 1}\n  n: {type: gre, segmentation_id: 2}\nhosts: {}\n",
     "networks.n: given twice (YAML would silently keep the last)"),
    ("text that is not YAML", "networks: {n: [}\n", None),
    ("a document that is a list", "- networks\n- hosts\n", "(top level): must be a mapping, not a list"),
]


@pytest.mark.parametrize("title, text, message", YAML_TRAPS, ids=[t[0] for t in YAML_TRAPS])
def test_yaml_traps_are_named_with_what_was_written(title: str, text: str, message: str | None) -> None:
    errors = errors_of(text)
    if message is None:
        assert len(errors) == 1 and errors[0].startswith("(file): not valid YAML")
    else:
        assert message in errors


def test_every_error_is_reported_at_once_with_its_line() -> None:
    text = (
        "cookie: 0\n"
        "networks:\n"
        "  net1: {type: gre, segmentation_id: 0}\n"
        "hosts:\n"
        "  c1:\n"
        "    datapath_id: 0xb01\n"
        "    local_ip: ff02::1\n"
        "    local_vlans: {net1: 4095}\n"
    )
    with pytest.raises(InvalidConfig) as caught:
        parse_config(text)
    assert [str(error) for error in caught.value.errors] == [
        "cookie: 0x0 is outside 0x1..0xfffffffffffffffe (line 1)",
        "networks.net1.segmentation_id: 0 is outside 1..4294967295 (line 3)",
        "hosts.c1.local_ip: ff02::1 is not a unicast address (line 7)",
        "hosts.c1.local_vlans.net1: unknown network 'net1' (networks: none) (line 8)",
    ]


def test_the_same_key_on_two_tunnel_types_is_allowed() -> None:
    parse_config(with_change("networks.net3", {"type": "vxlan", "segmentation_id": 1001}))


def test_the_same_mac_and_ip_on_two_networks_is_allowed() -> None:
    text = with_change("hosts.c2.ports", [
        {"network": "net1", "mac": "fa:16:3e:00:00:09", "ip": "10.9.0.1"},
        {"network": "net2", "mac": "fa:16:3e:00:00:09", "ip": "10.9.0.1"}])
    parse_config(text)


def test_hex_text_datapath_ids_are_accepted_as_ovs_prints_them() -> None:
    config = parse_config(with_change("hosts.c2.datapath_id", "0000000000000b02"))
    assert config.host("c2").datapath_id == 0xB02


def test_check_exits_2_and_prints_every_error_to_stderr(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(with_change("hosts.c2.datapath_id", 0xB01).replace("4095", "x"))
    with pytest.raises(SystemExit) as caught:
        main(["check", str(path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}: hosts.c2.datapath_id: 0xb01 is already the datapath ID of c1's br-tun" in err
    assert f"{path}: 1 error; nothing applied" in err


def test_check_of_a_valid_config_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "tests/data/configs/example.yaml"]) == 0
    assert "valid (2 networks, 3 hosts)" in capsys.readouterr().out


def test_a_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "/nonexistent/brtun.yaml"])
    assert "/nonexistent/brtun.yaml: cannot read: No such file or directory" in capsys.readouterr().err


VALID = [*sorted(p.name for p in (PROJECT / "tests" / "data" / "configs").glob("*.yaml")),
         "../../../examples/seed.yaml"]


@pytest.mark.parametrize("name", VALID)
def test_a_valid_config_read_fast_is_the_config_read_exactly_with_its_origins(name: str) -> None:
    """parse_config validates what the fast reader gives (origins read only for errors): the same config."""
    text = (PROJECT / "tests" / "data" / "configs" / name).read_text()
    fast = yamlsource.load(text)
    assert fast.data == yamlsource._exact(text).data
    assert parse_config(text) == validate(yamlsource._exact(text))


def test_the_fast_reader_declines_what_needs_the_exact_one_and_the_bounds_still_hold() -> None:
    for text in ("a: 1\na: 2\n", "base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n", "[1, 2]: x\n",
                 "a: " + "1" * 81 + "\n", "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n"):
        with pytest.raises(fastyaml.Unsupported):
            fastyaml.load(text)
    deep = "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n"
    with pytest.raises(yamlsource.YamlError, match="nested more than 32 deep"):
        yamlsource.load(deep)
    assert isinstance(yamlsource.load("a: " + "1" * 81 + "\n").data["a"], yamlsource.HugeNumber)
