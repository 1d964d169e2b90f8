"""Small builders shared by the unit tests."""

from __future__ import annotations

from flows.config import Config, load_config, parse_config
from flows.flow import Flow
from flows.model import build_bridge
from flows.pipeline import build
from tests.conftest import CONFIGS


def config(name: str) -> Config:
    return load_config(str(CONFIGS / f"{name}.yaml"))


def desired(cfg: Config, host: str) -> tuple[Flow, ...]:
    return build(build_bridge(cfg, host))


def from_yaml(text: str) -> Config:
    return parse_config(text)


def table(flows: tuple[Flow, ...] | list[Flow], number: int) -> list[Flow]:
    return [flow for flow in flows if flow.table == number]
