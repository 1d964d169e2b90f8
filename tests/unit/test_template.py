"""Shaped flows (flows.template) are the flows their builders make, in every form a reader sees."""

from __future__ import annotations

import dataclasses
import pickle
import random
from pathlib import Path

import pytest

from bench import bigconfig
from flows import fields, pipeline, wire
from flows.flow import Flow, render_flows
from flows.model import BridgeModel, LocalNetwork, RemotePort, build_bridge
from flows.pipeline import (
    PER_REMOTE_PORT,
    REMOTE_MAC,
    build,
    install_arp_responder,
    install_unicast_to_tun,
)
from flows.tables import TableViolation
from flows.template import Shape, ShapedFlow, Value
from tests.conftest import CONFIGS
from tests.unit.helpers import config


def _same(made: Flow, real: Flow) -> None:
    assert made.render() == real.render()
    assert made.encoded == real.encoded
    assert made.match == real.match and made.key == real.key
    assert (made.table, made.priority, made.goto, made.cookie, made.idle_timeout, made.hard_timeout) == (
        real.table, real.priority, real.goto, real.cookie, real.idle_timeout, real.hard_timeout)
    assert made.actions == real.actions
    assert made == real and real == made and hash(made) == hash(real)
    assert wire.flow_mod(made, "add", 7) == wire.flow_mod(real, "add", 7)


def _model(tmp_path: Path) -> BridgeModel:
    return build_bridge(bigconfig.write(2000, tmp_path / "c.yaml", hosts=5), "h0")


def _random_pair(rng: random.Random, model: BridgeModel) -> tuple[LocalNetwork, RemotePort]:
    network = dataclasses.replace(rng.choice(model.networks), local_vlan=rng.randint(1, 4094),
                                  segmentation_id=rng.randint(1, (1 << 24) - 1))
    port = dataclasses.replace(rng.choice(model.remote_ports), mac=rng.getrandbits(48) & ~(1 << 40),
                               ip=rng.getrandbits(32), ofport=rng.randint(1, 0xFFFFFF00))
    return network, port


@pytest.mark.parametrize("builder", [install_unicast_to_tun, install_arp_responder])
def test_a_shaped_flow_is_its_builders_flow_for_any_values(tmp_path: Path, builder: object) -> None:
    model = _model(tmp_path)
    shape = Shape(builder, model, PER_REMOTE_PORT)  # type: ignore[arg-type]
    rng = random.Random(16)
    for _ in range(300):
        network, port = _random_pair(rng, model)
        made = shape.flow(network, port)
        assert isinstance(made, ShapedFlow)
        _same(made, builder(model, network, port))  # type: ignore[operator]


CONFIG_NAMES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _always_shaped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped configs have a few remote ports each: shape them anyway."""
    monkeypatch.setattr(pipeline, "SHAPE_FROM", 1)


def test_every_shipped_config_has_shaped_flows() -> None:
    assert len(CONFIG_NAMES) >= 6
    for name in ("example", "mixed", "ipv6_underlay"):
        cfg = config(name)
        assert any(isinstance(flow, ShapedFlow) for host in cfg.hosts for flow in build(build_bridge(cfg, host.name)))


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_the_pipeline_with_shapes_is_the_pipeline_without(name: str) -> None:
    """Every host of every shipped config: the shaped flows are, one for one, the builders' flows."""
    cfg = config(name)
    for host in cfg.hosts:
        model = build_bridge(cfg, host.name)
        flows = build(model)
        networks = {network.name: network for network in model.networks}
        plain = [install_unicast_to_tun(model, networks[port.network], port) for port in model.remote_ports]
        shaped = [flow for flow in flows if isinstance(flow, ShapedFlow)]
        if model.options.arp_responder:
            plain += [install_arp_responder(model, networks[port.network], port) for port in model.remote_ports]
        assert len(shaped) == len(plain)
        assert sorted(flow.render() for flow in shaped) == sorted(flow.render() for flow in plain)
        by_text = {flow.render(): flow for flow in plain}
        for flow in shaped:
            _same(flow, by_text[flow.render()])
        assert render_flows(flows) == render_flows([f.built if isinstance(f, ShapedFlow) else f for f in flows])


def test_a_changed_or_pickled_shaped_flow_is_a_plain_flow(tmp_path: Path) -> None:
    model = _model(tmp_path)
    flow = next(f for f in build(model) if isinstance(f, ShapedFlow))
    moved = dataclasses.replace(flow, priority=7)
    assert type(moved) is Flow and moved.priority == 7 and moved.match == flow.match
    copy = pickle.loads(pickle.dumps(flow))
    assert type(copy) is Flow and copy == flow and copy.render() == flow.render()


def test_a_sample_that_is_no_value_of_the_flow_is_built_by_the_builder(tmp_path: Path) -> None:
    """A MAC sample whose bytes also occur in the sample flow's constants (here: it is the port MAC
    of every sample, so ARP's eth_src and arp_sha hold it as the value they are) is fine; one whose
    first sample equals another value's makes the holes ambiguous: the shape must notice and build
    every flow through the builder, which gives the same flows."""
    model = _model(tmp_path)
    clash = Value(1, "mac", fields.BY_NAME["dl_dst"], (4001 | fields.OFPVID_PRESENT, *REMOTE_MAC.samples[1:]))
    values = tuple(clash if value is REMOTE_MAC else value for value in PER_REMOTE_PORT)
    shape = Shape(install_unicast_to_tun, model, values)
    network, port = model.networks[0], model.remote_ports[0]
    made = shape.flow(network, port)
    assert not isinstance(made, ShapedFlow)
    _same(made, install_unicast_to_tun(model, network, port))


def test_a_small_br_tun_is_made_without_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below SHAPE_FROM remote ports making the shapes would cost more than it saves: the same flows."""
    cfg = config("mixed")
    host = cfg.hosts[0].name
    shaped = build(build_bridge(cfg, host))
    monkeypatch.setattr(pipeline, "SHAPE_FROM", 10_000)
    direct = build(build_bridge(cfg, host))
    assert not any(isinstance(flow, ShapedFlow) for flow in direct)
    assert any(isinstance(flow, ShapedFlow) for flow in shaped)
    assert list(shaped) == list(direct)


@pytest.mark.parametrize("shape_from", [1, 10_000])
def test_two_flows_with_one_identity_are_refused_shaped_or_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               shape_from: int) -> None:
    """The pipeline's own check: a remote port given twice (one network, one MAC) would make two
    table-20 flows with one (table, priority, match); by shape it is caught by its match values."""
    monkeypatch.setattr(pipeline, "SHAPE_FROM", shape_from)
    model = _model(tmp_path)
    build(model)  # the model as it is: no repeat
    again = dataclasses.replace(model.remote_ports[3], ip=model.remote_ports[3].ip + 1)
    doubled = dataclasses.replace(model, remote_ports=(*model.remote_ports, again))
    with pytest.raises(TableViolation, match="two flows with one identity"):
        build(doubled)
