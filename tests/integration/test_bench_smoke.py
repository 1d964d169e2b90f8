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
                             "--repeat", "1", "--output", "replay-smoke"], capture_output=True, text=True, cwd=PROJECT,
                            timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1 only says the ratio goal was missed
    written = json.loads((PROJECT / "bench" / "results" / "replay-smoke.json").read_text())
    assert written["id"] == "P4" and written["simulator_pps_median"] > 0 and written["trace_pps_median"] > 0


def test_the_agent_benchmark_runs_installs_identical_flows_and_restarts_without_a_flow_mod() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_agent.py", "--sizes", "300", "--repeat", "1",
                             "--output", "agent-smoke"], capture_output=True, text=True, cwd=PROJECT, timeout=240,
                            check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1 only says a ratio goal was missed
    written = json.loads((PROJECT / "bench" / "results" / "agent-smoke.json").read_text())
    (size,) = written["sizes"]
    assert size["flows"] >= 250 and size["identical_flows"] and size["p2_flow_mods"] == 0
    assert size["p1_agent_s"] > 0 and size["p1_ofctl_s"] > 0 and size["p2_agent_s"] > 0 and size["p2_ofctl_s"] > 0
    assert size["rss_mib"] > 10 and written["commit"] and written["machine"]


def test_the_iperf_benchmark_measures_both_paths() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_iperf.py", "--seconds", "1", "--repeat", "1",
                             "--output", "iperf-smoke"],
                            capture_output=True, text=True, cwd=PROJECT, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads((PROJECT / "bench" / "results" / "iperf-smoke.json").read_text())
    assert written["id"] == "P5" and written["gre_gbits_median"] > 0 and written["same_host_gbits_median"] > 0


def test_the_apply_benchmark_adds_never_seen_networks_and_writes_its_results() -> None:
    require_environment()
    result = subprocess.run([sys.executable, "bench/bench_apply.py", "--hosts", "2", "--repeat", "2", "--cli-runs", "1",
                             "--output", "apply-smoke"], capture_output=True, text=True, cwd=PROJECT, timeout=240,
                            check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1 only says a goal was missed
    written = json.loads((PROJECT / "bench" / "results" / "apply-smoke.json").read_text())
    assert written["id"] == "P3" and written["flow_changes_per_add"] > 0 and written["commit"]
    for figure in ("add_ms", "remove_ms", "cli_ms", "round_trip_to_all_ms", "ofctl_bundle_all_ms"):
        assert 0 < written[figure]["min"] <= written[figure]["median"] <= written[figure]["max"], figure
