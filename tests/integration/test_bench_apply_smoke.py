"""P3's benchmark runs end to end (a 2-host mesh, two cycles); its figures come from full runs only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT
from tests.integration.conftest import require_environment

pytestmark = pytest.mark.integration


def test_the_apply_benchmark_runs_checks_the_flows_and_writes_its_results() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_apply.py", "--hosts", "2", "--repeat", "2",
                             "--cli-runs", "1"], capture_output=True, text=True, cwd=PROJECT, timeout=300, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1 only says the goal was missed
    written = json.loads((PROJECT / "bench" / "results" / "apply.json").read_text())
    assert written["id"] == "P3" and written["hosts"] == 2
    assert written["flow_changes_per_add"] == 4  # purple: provision and flood on each of the two hosts
    assert written["add_ms_median"] > 0 and written["cli_ms_median"] > 0
