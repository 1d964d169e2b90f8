"""The agent's two spellings of its controller target (controller.targets)."""

from __future__ import annotations

import pytest

from controller.dbplan import BR_TUN, PROTOCOLS, BridgeSpec, EnsureBridge, ObservedBridge, _plan_bridge
from controller.targets import other_spelling, spellings


@pytest.mark.parametrize(("target", "other"), [
    ("tcp:127.0.0.1:6653", "tcp:[127.0.0.1]:6653"),
    ("tcp:[127.0.0.1]:6653", "tcp:127.0.0.1:6653"),
    ("ssl:10.0.0.1:6654", "ssl:[10.0.0.1]:6654"),
    ("tcp:[::1]:6653", "tcp:[::1]"),
    ("tcp:[::1]", "tcp:[::1]:6653"),
    ("tcp:127.0.0.1", "tcp:[127.0.0.1]:6653"),
    ("unix:/run/brtun/openflow-h.sock", "unix:/run/brtun/./openflow-h.sock"),  # brtun's default listener
    ("unix:/run/brtun/./openflow-h.sock", "unix:/run/brtun/openflow-h.sock"),
    ("unix:of.sock", "unix:./of.sock"),
])
def test_each_target_has_a_second_spelling_of_the_same_listener(target: str, other: str) -> None:
    assert other_spelling(target) == other
    assert other_spelling(other) in (target, None) or other_spelling(other_spelling(other) or "") == other


@pytest.mark.parametrize("target", ["tcp:[::1]:6654", "unix:", "punix:/x", "tcp:"])
def test_some_targets_have_no_second_spelling(target: str) -> None:
    assert other_spelling(target) is None
    assert spellings(target) == (target,)


def test_the_plan_takes_either_spelling_as_the_agents_own_controller() -> None:
    spec = BridgeSpec(BR_TUN, 0x1000, "netdev", "tcp:127.0.0.1:6653")
    for seen_target in spellings(spec.controller):
        seen = ObservedBridge(BR_TUN, "netdev", "secure", PROTOCOLS, spec.other_config, (seen_target,))
        operations: list[object] = []
        _plan_bridge(spec, seen, operations, [])  # type: ignore[arg-type]
        assert operations == []
    foreign = ObservedBridge(BR_TUN, "netdev", "secure", PROTOCOLS, spec.other_config, ("tcp:10.0.0.9:6653",))
    operations = []
    _plan_bridge(spec, foreign, operations, [])  # type: ignore[arg-type]
    assert operations == [EnsureBridge(spec, create=False, set_controller=True)]
