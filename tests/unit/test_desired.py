"""The agent keeps its desired br-tun between reconciles; the pure pipeline keeps nothing."""

from __future__ import annotations

import gc
from pathlib import Path

from bench import bigconfig
from controller.desired import DesiredBrTun
from flows.model import build_bridge, requested_ofports
from flows.pipeline import build
from flows.template import ShapedFlow


def test_the_desired_br_tun_is_kept_while_config_and_ofports_stay(tmp_path: Path) -> None:
    config = bigconfig.write(300, tmp_path / "c.yaml", hosts=3)
    ofports = requested_ofports(config.host("h0"), config)
    desired = DesiredBrTun("h0")
    first = desired.flows(config, ofports)
    assert desired.flows(config, dict(ofports)) is first
    assert desired.flows(config, {**ofports, "patch-int": 99}) is not first
    assert len(first) > 290 and any(isinstance(flow, ShapedFlow) for flow in first)
    # An unshaped flow's bytes are made once and kept; a shaped flow keeps none (flows.template).
    assert all(flow.encoded is flow.encoded for flow in first if not isinstance(flow, ShapedFlow))
    assert all(not hasattr(flow, "_encoded") for flow in first if isinstance(flow, ShapedFlow))


def test_building_a_pipeline_leaves_the_garbage_collector_alone(tmp_path: Path) -> None:
    config = bigconfig.write(300, tmp_path / "c.yaml", hosts=3)
    gc.unfreeze()
    try:
        assert len(build(build_bridge(config, "h0"))) > 300
        assert gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_the_agents_desired_br_tun_is_frozen_out_of_full_collections(tmp_path: Path) -> None:
    config = bigconfig.write(300, tmp_path / "c.yaml", hosts=3)
    gc.unfreeze()
    try:
        DesiredBrTun("h0").flows(config, {"patch-int": 1})
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
