"""flows.edits and the control socket's request decoding: pure, no agent needed."""

from __future__ import annotations

import json

import pytest

from controller.control import MAX_REQUEST, decode_request
from flows.config import parse_config
from flows.edits import EditError, apply_edit
from tests.conftest import CONFIGS

EXAMPLE = (CONFIGS / "example.yaml").read_text()


def test_add_network_then_port_makes_the_host_carry_it() -> None:
    text = apply_edit(EXAMPLE, "compute1", "add-network",
                      {"name": "net3", "type": "gre", "segmentation_id": 7, "local_vlan": 9})
    text = apply_edit(text, "compute1", "add-port", {"network": "net3", "mac": "fa:16:3e:00:03:01"})
    config = parse_config(text)
    assert config.network("net3").segmentation_id == 7
    assert "net3" in config.host("compute1").carried_networks
    assert dict(config.host("compute1").local_vlans)["net3"] == 9


def test_remove_network_takes_its_ports_and_vlans_everywhere() -> None:
    config = parse_config(apply_edit(EXAMPLE, "compute1", "remove-network", {"name": "net2"}))
    assert [n.name for n in config.networks] == ["net1"]
    assert all(p.network == "net1" for h in config.hosts for p in h.ports)
    assert "net2" not in dict(config.host("compute1").local_vlans)


def test_endpoints_come_and_go_and_macs_survive_the_round_trip() -> None:
    text = apply_edit(EXAMPLE, "compute1", "add-endpoint", {"name": "c9", "local_ip": "192.168.100.19"})
    text = apply_edit(text, "compute1", "add-port", {"network": "net1", "mac": "52:54:00:12:34:56", "host": "c9"})
    config = parse_config(text)  # a MAC YAML would read as a number stays text
    assert config.host("c9").datapath_id == 0xE0 << 56 | 0xC0A86413
    assert config.host("c9").ports[0].mac == "52:54:00:12:34:56"
    back = parse_config(apply_edit(text, "compute1", "remove-endpoint", {"name": "c9"}))
    assert back.host_names == ("compute1", "compute2", "network")


@pytest.mark.parametrize(("edit", "args", "message"), [
    ("add-network", {"name": "net1", "type": "gre", "segmentation_id": 1}, "exists already"),
    ("remove-network", {"name": "nope"}, "no network"),
    ("add-port", {"network": "net1"}, "missing argument 'mac'"),
    ("remove-port", {"mac": "fa:16:3e:ff:ff:ff"}, "no port with MAC"),
    ("remove-endpoint", {"name": "compute1"}, "own host"),
    ("explode", {}, "unknown edit"),
])
def test_impossible_edits_say_why(edit: str, args: dict[str, object], message: str) -> None:
    with pytest.raises(EditError, match=message):
        apply_edit(EXAMPLE, "compute1", edit, args)


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "not JSON"),
    (b"\xff", "not UTF-8"),
    (b"3", "must be a JSON object, not int"),
    (b'{"op": null}', 'needs "op"'),
    (json.dumps({"op": "x", "pad": "y" * MAX_REQUEST}).encode(), "larger than"),
])
def test_malformed_requests_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_request(data)


def test_a_request_is_an_object_with_an_op() -> None:
    assert decode_request(b'{"op": "state"}') == {"op": "state"}
