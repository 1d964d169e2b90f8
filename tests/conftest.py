"""Shared test helpers: where the test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
CONFIGS = DATA / "configs"
EXPECTED = DATA / "expected"
CONFIG_NAMES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))


@pytest.fixture
def example_path() -> Path:
    return CONFIGS / "example.yaml"
