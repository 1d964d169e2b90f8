"""`brtun replay` as a user runs it: offline, --live, --record, and a failing case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, PROJECT
from tests.integration.conftest import require_environment

pytestmark = pytest.mark.integration
CASES = sorted(str(p) for p in (PROJECT / "tests" / "replay").glob("*.yaml"))


def brtun(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *argv], capture_output=True, text=True,
                          cwd=PROJECT, timeout=120, check=False)


def test_every_shipped_case_passes_offline_and_live() -> None:
    require_environment()
    for mode in ([], ["--live"]):
        result = brtun("replay", "-q", *mode, *CASES)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(CASES)} cases," in result.stdout and "all passed" in result.stdout


def test_record_writes_a_case_that_replays_offline_and_live(tmp_path: Path) -> None:
    require_environment()
    case = tmp_path / "recorded.yaml"
    result = brtun("replay", "--record", str(CONFIGS / "gre_no_l2pop.yaml"), "--host", "compute2",
                   "--packet", "in_port=gre-c0a8640b,tun_id=0x64,dl_src=fa:16:3e:77:00:01,dl_dst=ff:ff:ff:ff:ff:ff",
                   "--packet", "in_port=patch-int,dl_vlan=7,dl_src=fa:16:3e:00:01:02,dl_dst=fa:16:3e:77:00:01",
                   "--packet", "advance=121,in_port=patch-int,dl_vlan=7,dl_src=fa:16:3e:00:01:02,"
                   "dl_dst=fa:16:3e:77:00:01", "-o", str(case))
    assert result.returncode == 0, result.stderr
    text = case.read_text()
    assert "learned:\n    - vlan: 7" in text and "output:\n    - gre-c0a8640b" in text
    for mode in ([], ["--live"]):
        replayed = brtun("replay", *mode, str(case))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "3 packets" in replayed.stdout


def test_a_wrong_expectation_fails_with_exit_1_and_says_what_differs(tmp_path: Path) -> None:
    case = tmp_path / "wrong.yaml"
    case.write_text(
        f"config: {CONFIGS / 'example.yaml'}\nhost: compute1\npackets:\n"
        "  - in_port: patch-int\n    packet: {dl_vlan: 1, dl_src: 'fa:16:3e:00:00:01', dl_dst: 'ff:ff:ff:ff:ff:ff'}\n"
        "    expect: {output: [gre-c0a8640d], key: 0x1388}\n")
    result = brtun("replay", str(case))
    assert result.returncode == 1
    assert "FAIL #1" in result.stdout and "key: expected 5000, got 1001" in result.stdout
