"""controller.sandbox: the agent's parser child, its time and memory bounds, and what it may send back.
Real child processes (`python -m controller.sandbox`), as the agent runs them."""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from controller.sandbox import Refused, Sandbox, _loads
from flows import edits
from flows.config import Config, InvalidConfig
from tests.conftest import CONFIGS, PROJECT

EXAMPLE = (CONFIGS / "example.yaml").read_text()


def big_config(flows: int) -> str:
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        import bigconfig
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    return yaml.safe_dump(bigconfig.generate(flows), default_flow_style=None, sort_keys=False, width=200)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    try:
        yield box
    finally:
        box.close()


def test_a_config_comes_back_validated_and_an_invalid_one_with_its_errors(sandbox: Sandbox) -> None:
    config = sandbox.parse(EXAMPLE)
    assert isinstance(config, Config) and config.host_names == ("compute1", "compute2", "network")
    assert sandbox.parse(EXAMPLE) is config  # validate, then apply of the same text: parsed once
    with pytest.raises(InvalidConfig) as caught:
        sandbox.parse(EXAMPLE.replace("segmentation_id: 1001", "segmentation_id: 0"))
    assert str(caught.value.errors[0]) == "networks.net1.segmentation_id: 0 is outside 1..4294967295 (line 8)"
    assert sandbox.restarts == 1


def test_an_edit_is_made_in_the_child(sandbox: Sandbox) -> None:
    text = sandbox.edit(EXAMPLE, "compute1", "add-network", {"name": "n9", "type": "gre", "segmentation_id": 9})
    assert sandbox.parse(text).network("n9").segmentation_id == 9
    with pytest.raises(edits.EditError, match="argument 'name' must be a string"):
        sandbox.edit(EXAMPLE, "compute1", "add-network", {"name": 1})


def test_text_that_takes_too_long_is_refused_and_the_child_replaced() -> None:
    text = big_config(50_000)
    box = Sandbox(seconds=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(Refused, match=r"reading it took longer than 0\.2 s"):
            box.parse(text)
        assert time.monotonic() - started < 2
        assert box.parse(EXAMPLE).host_names  # a fresh child
        assert box.restarts == 2
    finally:
        box.close()


def test_text_that_needs_too_much_memory_is_refused() -> None:
    box = Sandbox(memory=200 << 20)
    try:
        # a MemoryError the child reports, or, at such a tight bound, one that ends the child: refused either way
        # an anchor: the fast reader declines it and libyaml builds the whole node tree (the fast
        # reader alone reads this config within the bound)
        with pytest.raises(Refused, match=r"needs more than 200 MiB|ended while reading it \(exit 1; it has 200 MiB\)"):
            box.parse("anchor: &a 1\n" + big_config(100_000))
        assert box.parse(EXAMPLE).host_names
    finally:
        box.close()


def test_the_childs_answer_may_hold_config_values_only() -> None:
    """Even a child that hostile text had taken over could not make the agent run anything."""
    assert _loads(pickle.dumps(("config", Config(1, None, (), ())))) is not None  # type: ignore[arg-type]
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system"):
        _loads(pickle.dumps(("config", os.system)))


def test_closing_ends_the_child(sandbox: Sandbox) -> None:
    sandbox.parse(EXAMPLE)
    child = sandbox._child
    assert child is not None and child.poll() is None
    sandbox.close()
    assert child.poll() is not None
