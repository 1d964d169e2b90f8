"""controller.canary: the content comparison and its schedule, on the flows the pipeline builds."""

from __future__ import annotations

from dataclasses import replace

from controller.canary import Canary
from flows.actions import Output
from flows.config import load_config
from flows.model import build_bridge
from flows.pipeline import build
from flows.tables import UCAST_TO_TUN
from flows.wire import content_key
from tests.conftest import CONFIGS

CONFIG = load_config(str(CONFIGS / "example.yaml"))
DESIRED = tuple(build(build_bridge(CONFIG, "compute1")))
COOKIE = CONFIG.cookie


def keys(flows: object) -> list[bytes]:
    """Each flow's bytes as the canary reads an entry the switch reports for it."""
    return [content_key(flow.encoded.key) for flow in flows]  # type: ignore[attr-defined]


def canary() -> Canary:
    watch = Canary(1.0)
    watch.expect("br-tun", DESIRED, set())
    return watch


def test_the_installed_pipeline_is_no_drift() -> None:
    assert canary().content_drift("br-tun", keys(DESIRED), COOKIE) is None


def test_a_missing_flow_hidden_by_a_learned_one_is_drift() -> None:
    l2pop = [f for f in DESIRED if f.table == UCAST_TO_TUN and f.priority == 2]
    installed = [f for f in DESIRED if f is not l2pop[0]] + [replace(l2pop[0], priority=1, hard_timeout=300)]
    drift = canary().content_drift("br-tun", keys(installed), COOKIE)
    assert drift == ("content: table 20: 1 of our flows missing or changed", "changed")


def test_a_flow_changed_in_place_is_drift_in_its_table() -> None:
    for table in sorted({f.table for f in DESIRED}):
        victim = next(f for f in DESIRED if f.table == table)
        changed = replace(victim, actions=(Output(9),), goto=None)
        installed = [changed if f is victim else f for f in DESIRED]
        detail, reason = canary().content_drift("br-tun", keys(installed), COOKIE)  # type: ignore[misc]
        assert detail == (f"content: table {table}: 1 of our flows missing or changed and 1 flows with our "
                          "cookie that we did not write") and reason == "changed", table


def test_a_wiped_table_is_called_wiped() -> None:
    installed = [f for f in DESIRED if f.table != 22]
    drift = canary().content_drift("br-tun", keys(installed), COOKIE)
    assert drift is not None and drift[1] == "wiped"


def test_learned_flows_and_other_cookies_are_not_the_canarys() -> None:
    l2pop = next(f for f in DESIRED if f.table == UCAST_TO_TUN and f.priority == 2)
    extra = [replace(l2pop, priority=1, hard_timeout=300), replace(DESIRED[0], cookie=0x1234, priority=77)]
    assert canary().content_drift("br-tun", keys([*DESIRED, *extra]), COOKIE) is None
    forged = replace(l2pop, priority=1)  # table 20, priority 1, but no hard timeout: not learned
    assert canary().content_drift("br-tun", keys([*DESIRED, forged]), COOKIE) is not None


def test_content_is_checked_every_interval_while_that_costs_at_most_5_percent() -> None:
    watch = canary()
    assert watch.content_due("br-tun", 100.0)
    watch.checked("br-tun", 100.0, 100.03)  # 30 ms: 3% of a second
    assert not watch.content_due("br-tun", 100.4) and watch.content_due("br-tun", 100.6)
    watch.checked("br-tun", 101.0, 101.6)  # 0.6 s: at most every 12 s
    assert not watch.content_due("br-tun", 112.0) and watch.content_due("br-tun", 112.6)
    watch.forget("br-tun")
    assert not watch.content_due("br-tun", 200.0)


def test_an_entry_as_the_switch_reports_it_reads_as_the_flow_it_reports() -> None:
    """flows.wire: entry_content of a flow-stats entry (counters, age and flags in it) is content_key of its flow."""
    import struct

    from flows import ofp
    from flows.flow import instructions
    from flows.wire import entry_content

    for name, host in (("example", "compute1"), ("mixed", "h1"), ("geneve", "a"), ("gre_no_l2pop", "compute1")):
        flows = build(build_bridge(load_config(str(CONFIGS / f"{name}.yaml")), host))
        for flow in flows:
            match, body = ofp.pad8(flow.match.encode()), instructions(flow.actions, flow.goto, reported=True)
            entry = struct.pack("!HBxIIHHHH4xQQQ", 48 + len(match) + len(body), flow.table, 12, 345, flow.priority,
                                flow.idle_timeout, flow.hard_timeout, 1, flow.cookie, 99, 9900) + match + body
            assert entry_content(b"junk" + entry + b"more", 4) == content_key(flow.encoded.key), flow.render()
