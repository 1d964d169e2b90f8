"""pytest collects every case file here twice: on the simulator, and live on Open vSwitch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.replay import Case, StepResult, load_case, run_offline

HERE = Path(__file__).parent


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and file_path.parent == HERE:
        return ReplayFile.from_parent(parent, path=file_path)
    return None


class ReplayFailure(AssertionError):
    pass


class ReplayFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        case = load_case(self.path)
        yield ReplayItem.from_parent(self, name="offline", case=case, live=False)
        live = ReplayItem.from_parent(self, name="live", case=case, live=True)
        live.add_marker(pytest.mark.integration)
        yield live


class ReplayItem(pytest.Item):
    def __init__(self, *, case: Case, live: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.live = live

    def runtest(self) -> None:
        results: list[StepResult]
        if self.live:
            from controller.replay import run_live
            from tests.integration.conftest import require_environment

            require_environment()
            results = run_live([self.case])[0]
        else:
            results = run_offline(self.case)
        failed = [r for r in results if not r.ok]
        if failed:
            lines = [f"{r.step.describe()}: {r.outcome.describe()}\n    " + "\n    ".join(r.problems)
                     for r in failed]
            raise ReplayFailure("\n".join(lines))
        assert len(results) == sum(1 for step in self.case.steps if hasattr(step, "expect"))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ReplayFailure):
            return f"replay case {self.case.name!r} ({'live' if self.live else 'simulator'}):\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"replay {self.path.name} [{self.name}]"
