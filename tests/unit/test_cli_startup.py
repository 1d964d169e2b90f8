"""`brtun apply` is a short-lived client: what it imports is start-up time on every change (issue 16, P3)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT

LOADED = """
import json, sys
from controller import cli
cli.parser(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(command: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", LOADED, command], capture_output=True, text=True, cwd=PROJECT,
                            timeout=60, check=True)
    return set(json.loads(result.stdout))


def test_apply_state_and_edit_load_no_flow_pipeline_parser_agent_or_testbed() -> None:
    loaded = _loaded_by("apply")
    heavy = {m for m in loaded if m.split(".")[0] in ("os_ken", "mininet", "ovs", "pyparsing", "netaddr", "eventlet")
             or m in ("flows.flow", "flows.actions", "flows.pipeline", "flows.model", "controller.inspect",
                      "controller.trace", "controller.replay", "mininet_topos.cli")}
    assert not heavy, f"`brtun apply` loads {sorted(heavy)}"


def test_the_full_parser_still_has_every_command() -> None:
    from controller import cli

    commands = cli.parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(cli.COMMAND_MODULES) | {"check", "render", "run"} == set(commands)
