"""The scale benchmark runs end to end: a real neutron-server, 6 agents (2 with a switch, 4 --no-switch) and
Neutron's fanout to plain consumers; its figures come from full runs only (bench/bench_neutron.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT
from tests.integration.conftest import require_environment

pytestmark = pytest.mark.integration


def test_the_neutron_scale_benchmark_runs_and_every_agent_gets_every_port() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_neutron.py", "--sizes", "6", "--repeat", "3",
                             "--work-sizes", "10,100", "--output", "neutron-smoke"], capture_output=True, text=True, cwd=PROJECT, timeout=600,
                            check=False)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = json.loads((PROJECT / "bench" / "results" / "neutron-smoke.json").read_text())
    (row,) = written["rounds"]
    assert row["n"] == 6 and row["samples"] == 3 * 5  # every other agent, every port
    assert row["floor_p50_s"] > 0 and row["floor_p50_s"] <= row["p99_s"]
    assert [w["remote_hosts"] for w in written["own_work"]] == [10, 100]
