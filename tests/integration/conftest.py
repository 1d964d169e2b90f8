"""Integration fixtures: root, real Open vSwitch, each test with its own private instance.

These tests are not skipped quietly: without root or Open vSwitch they fail
with a message that says what is missing (CI runs them as root).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovshost.agentproc import AgentProcess
from ovshost.privateovs import PrivateOvs
from tests.conftest import CONFIGS

RUN_ROOT = Path("/run/brtun-tests")


def require_environment() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (they create network namespaces and switches); "
                    "run them with sudo, or run only tests/unit", pytrace=False)
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"integration tests need {tool}: run ./run setup first", pytrace=False)


@pytest.fixture
def private_ovs() -> Iterator[PrivateOvs]:
    """A fresh ovsdb-server + ovs-vswitchd in a fresh namespace, removed afterwards even on failure."""
    require_environment()
    name = f"brtun-t-{uuid.uuid4().hex[:8]}"
    instance = PrivateOvs(name, RUN_ROOT / name)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def agent(private_ovs: PrivateOvs, tmp_path: Path) -> Iterator[AgentProcess]:
    """compute1's agent on the example config, in sync; a module may define its own `agent` instead."""
    config = tmp_path / "brtun.yaml"
    config.write_text((CONFIGS / "example.yaml").read_text())
    process = AgentProcess(private_ovs, config, "compute1")
    try:
        process.start()
        process.wait_in_sync()
        yield process
    finally:
        process.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report on the item (`item.rep_call`), so a fixture can tell a failed test afterwards."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
