"""The layers stay as README's Layout draws them: each package imports only the ones below it, no cycles.

    flows/  <  ovshost/  <  mininet_topos/  <  controller/

Every import counts, wherever it is written (module level, inside a
function, under `if TYPE_CHECKING:`): an import moved into a function
still makes the dependency, it only hides it from a reader.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PROJECT

LAYERS = ("flows", "ovshost", "mininet_topos", "controller")  # lowest first
ALLOWED = {package: set(LAYERS[:index + 1]) for index, package in enumerate(LAYERS)}
OS_KEN_RUNTIME = ("os_ken", "eventlet", "ovsdbapp", "prometheus_client")  # the agent's libraries: controller/ only
MININET = "mininet"  # the testbeds' library: mininet_topos/ only


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. controller.trace
    target: str  # the module imported, e.g. flows.tracetext (a project module when it is one)
    where: str  # path:line

    @property
    def top(self) -> str:
        return self.target.split(".")[0]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for package in LAYERS for path in sorted((PROJECT / package).glob("*.py"))}


def _imports() -> Iterator[Import]:
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(PROJECT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, where)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package upwards
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base == "__future__":
                    continue
                for alias in node.names:  # `from flows import fields` imports the module flows.fields
                    submodule = f"{base}.{alias.name}"
                    yield Import(name, submodule if submodule in MODULES else base, where)


IMPORTS = list(_imports())


def test_every_layer_has_modules_and_every_module_parses() -> None:
    assert {name.split(".")[0] for name in MODULES} == set(LAYERS)
    assert IMPORTS


def test_each_package_imports_only_the_packages_below_it() -> None:
    wrong = [f"{i.where}: {i.importer} imports {i.target}" for i in IMPORTS
             if i.top in LAYERS and i.top not in ALLOWED[i.importer.split(".")[0]]]
    assert not wrong, "imports against the layers (" + " < ".join(LAYERS) + "):\n" + "\n".join(wrong)


def test_only_mininet_topos_imports_mininet() -> None:
    wrong = [f"{i.where}: {i.importer} imports {i.target}" for i in IMPORTS
             if i.top == MININET and not i.importer.startswith("mininet_topos.")]
    assert not wrong, "Mininet outside mininet_topos/:\n" + "\n".join(wrong)


def test_only_controller_imports_os_ken_and_the_agents_libraries() -> None:
    """flows/ is pure and ovshost/ and mininet_topos/ run no agent."""
    wrong = [f"{i.where}: {i.importer} imports {i.target}" for i in IMPORTS
             if i.top in OS_KEN_RUNTIME and not i.importer.startswith("controller.")]
    assert not wrong, "the agent's libraries outside controller/:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in edges.get(module, ()):
                groups.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return [_path_around(group, edges) for group in groups]


def _path_around(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = group[0]
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in sorted(edges.get(path[-1], ())):
            if target == start:
                return [*path, start]
            if target in group and target not in path:
                paths.append([*path, target])
    raise AssertionError(f"no cycle through {start}")


def test_cycles_are_found_and_named() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    """Fails before issue 12 item 1 lands (the codec branch) on flows.flow -> flows.wire -> flows.flow."""
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.importer:
            edges.setdefault(i.importer, set()).add(i.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


LOADED = """
import importlib, json, sys
def loaded(prefixes):
    return sorted(m for m in sys.modules if m.split(".")[0] in prefixes)
first = {}
for name in sys.argv[1:]:
    before = set(loaded(("os_ken",)))
    importlib.import_module(name)
    for module in set(loaded(("os_ken",))) - before:
        first.setdefault(name, []).append(module)
flows_os_ken = loaded(("os_ken",))
import controller.cli
controller.cli.parser()  # what `brtun check` and `brtun render` load before they run
print(json.dumps({"flows": flows_os_ken, "by": sorted(first), "cli_os_ken": loaded(("os_ken",)),
                  "cli_mininet": loaded(("mininet",))}))
"""


def _loaded() -> dict[str, list[str]]:
    flows_modules = [name for name in MODULES if name.startswith("flows.")]
    result = subprocess.run([sys.executable, "-c", LOADED, *flows_modules], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120, check=True)
    loaded: dict[str, list[str]] = json.loads(result.stdout)
    return loaded


def test_importing_every_flows_module_loads_no_os_ken() -> None:
    """flows/ encodes OpenFlow itself (flows.ofp, flows.wire): no OpenFlow library comes with it."""
    loaded = _loaded()
    direct = sorted({i.where for i in IMPORTS if i.top == "os_ken" and i.importer.startswith("flows.")})
    assert not loaded["flows"], (f"importing flows loads {len(loaded['flows'])} os_ken modules "
                                 f"(from {', '.join(loaded['by'])} on); flows/ imports os_ken at "
                                 f"{', '.join(direct) or 'no line of its own (a library it imports does)'}")


def test_the_command_line_starts_without_mininet_or_more_of_os_ken_than_flows_loads() -> None:
    """`brtun check` and `brtun render` must not pay for Mininet or the agent's libraries."""
    loaded = _loaded()
    assert not loaded["cli_mininet"], f"building brtun's parser loads Mininet: {loaded['cli_mininet']}"
    assert set(loaded["cli_os_ken"]) <= set(loaded["flows"]), (
        "building brtun's parser loads os-ken beyond what flows/ does: "
        f"{sorted(set(loaded['cli_os_ken']) - set(loaded['flows']))}")
