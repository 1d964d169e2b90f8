"""Mutated configs: bytes mangled, YAML's sharp tokens spliced in, fields replaced by any JSON value,
run-time edits with any arguments.  Each is a Config (which must then build every host's pipeline) or
InvalidConfig/EditError, within the watchdog."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import edits, yamlsource
from flows.config import Config, InvalidConfig, parse_config
from flows.model import build_bridge
from flows.pipeline import build
from tests.conftest import CONFIGS, PROJECT
from tests.fuzz.conftest import bounded, outcome

SEEDS = [path.read_bytes() for path in sorted(CONFIGS.glob("*.yaml"))] + [(PROJECT / "examples/seed.yaml").read_bytes()]
TOKENS = [b"&a ", b"*a", b"&b [*b]", b"<<: *a\n", b"[", b"]", b"{", b"}", b": ", b"- ", b"? ", b"!!binary ",
          b"!!python/object/apply:os.system ['true']", b"!!set ", b"!!omap ", b"!!timestamp ", b"\n  ", b"\n",
          b"'", b'"', b"\t", b"~", b"---\n", b"...\n", b"%YAML 1.1\n", b"9" * 5000, b"0x" + b"f" * 100,
          b"1:2:3:4:5:6", b"2001-13-45", b"\xff", b"\x00", b"\xe9", b"\xef\xbb\xbf", b".inf", b"-.nan", b"no",
          b"0o777777777777777777777", b"0b" + b"1" * 200, b"\\u0000", b"#", b"|", b">", b"%", b"@", b"`"]
SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    database=None)


def read(data: bytes) -> Config | str:
    """A config's bytes as `brtun check` reads them: the Config, or the first error."""
    try:
        return parse_config(yamlsource.decode(data))
    except yamlsource.YamlError as error:
        return f"YamlError: {error}"
    except InvalidConfig as error:
        return f"InvalidConfig: {error.errors[0]}"


def judge(target: str, result: Config | str) -> None:
    """A Config must build every host's pipeline; an error is an outcome too."""
    if isinstance(result, Config):
        for host in result.host_names:
            build(build_bridge(result, host))
        outcome(target, "valid")
    else:
        outcome(target, result.split(":", 1)[0])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 4))
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == 1:
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == 2:
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == 3:
            piece = data[at:at + draw(st.integers(1, 256))]
            data[at:at] = piece * draw(st.integers(1, 20))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@SETTINGS
@given(mutated())
def test_mutated_config_bytes(data: bytes) -> None:
    with bounded("configs: mutated bytes"):
        judge("configs: mutated bytes", read(data))


BASE: dict[str, Any] = yaml.safe_load((CONFIGS / "example.yaml").read_text())


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


PATHS = _paths(BASE)[1:]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=40) | st.sampled_from(["gre", "vxlan", "geneve", "net1", "compute1", "0xb01",
                                                    "192.168.100.11", "fa:16:3e:00:00:01", "patch-int", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | st.integers(-5, 5), inner, max_size=4), max_leaves=12)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=4))
def test_configs_with_fields_replaced_by_any_value(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = copy.deepcopy(BASE)
    for path, value in changes:
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change took the path away
    with bounded("configs: fields replaced"):
        judge("configs: fields replaced", read(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()))


WORDS = st.sampled_from(["net1", "net2", "net9", "gre", "vxlan", "geneve", "stt", "compute1", "compute2", "network",
                         "compute9", "fa:16:3e:00:09:09", "fa:16:3e:00:00:01", "01:00:5e:00:00:01", "10.9.0.1",
                         "192.168.100.19", "192.168.100.12", "0xe0", "tap9", ""]) | st.text(max_size=20)
TYPED = {str: WORDS, int: st.integers(-5, 2**33) | st.sampled_from([1, 7, 4094, 4095, 2**24, 2**32]),
         list: st.lists(st.sampled_from(["gre", "vxlan", "geneve", "stt"]), max_size=3)}


@st.composite
def edit_arguments(draw: st.DrawFn, name: str) -> Any:
    """Mostly each argument of the edit with a value of its type; sometimes anything at all."""
    known = edits.ARGUMENTS.get(name, {"name": (str,)})
    if draw(st.integers(0, 9)) == 0:
        return draw(st.dictionaries(st.sampled_from([*known, "mtu"]), VALUES, max_size=5) | VALUES)
    args = {}
    for argument, types in known.items():
        if draw(st.booleans()) or argument in ("name", "mac", "network", "type", "segmentation_id", "local_ip"):
            args[argument] = draw(TYPED[draw(st.sampled_from(types))] if draw(st.integers(0, 9)) else VALUES)
    return args


@settings(max_examples=800, deadline=None, database=None)
@given(st.sampled_from([*edits.ARGUMENTS, "rename-network", ""]).flatmap(lambda n: st.tuples(st.just(n),
                                                                                           edit_arguments(n))))
def test_run_time_edits_with_any_arguments(edit: tuple[str, Any]) -> None:
    name, args = edit
    text = (CONFIGS / "example.yaml").read_text()
    with bounded("edits: any arguments"):
        try:
            edited = edits.apply_edit(text, "compute1", name, args)
        except edits.EditError as error:
            outcome("edits: any arguments", "EditError")
            assert str(error)
            return
        judge("edits: any arguments", read(edited.encode()))


def test_the_seeds_are_valid() -> None:
    """The mutations start from configs that are valid: the fuzz explores around real ones."""
    for data in SEEDS:
        assert isinstance(read(data), Config)


assert Path(CONFIGS).is_dir()
