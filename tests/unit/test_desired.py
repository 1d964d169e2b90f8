"""The agent keeps its desired br-tun between reconciles; the pure pipeline keeps nothing."""

from __future__ import annotations

import gc
from pathlib import Path

from bench import bigconfig
from controller.desired import DesiredBrTun
from flows.model import build_bridge
from flows.pipeline import build


def test_the_desired_br_tun_is_kept_while_config_and_ofports_stay(tmp_path: Path) -> None:
    config = bigconfig.write(300, tmp_path / "c.yaml", hosts=3)
    desired = DesiredBrTun("h0")
    first = desired.flows(config, {"patch-int": 1})
    assert desired.flows(config, {"patch-int": 1}) is first
    assert desired.flows(config, {"patch-int": 2}) is not first
    assert all("encoded" in flow.__dict__ for flow in first)


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
