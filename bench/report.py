"""Where a benchmark's results go, and what says where they came from."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def provenance() -> dict[str, Any]:
    """The commit, date and machine: figures from a noisy machine mean little without them."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip()
    return {"commit": commit, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.node(), "cpus": os.cpu_count()}


def write(name: str, result: dict[str, Any], markdown: str) -> None:
    """bench/results/NAME.json and NAME.md (the directory is git-ignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
