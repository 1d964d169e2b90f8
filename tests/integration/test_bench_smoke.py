"""The benchmarks run (a tiny smoke version; the figures come from full runs, never from tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT
from tests.integration.conftest import require_environment

pytestmark = pytest.mark.integration


def test_the_replay_benchmark_runs_and_writes_its_results() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_replay.py", "--packets", "300", "--traced", "5",
                             "--repeat", "1"], capture_output=True, text=True, cwd=PROJECT, timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1 only says the ratio goal was missed
    written = json.loads((PROJECT / "bench" / "results" / "replay.json").read_text())
    assert written["id"] == "P4" and written["simulator_pps_median"] > 0 and written["trace_pps_median"] > 0
