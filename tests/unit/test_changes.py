"""controller.changes: a config change as an object, carried out against a fake agent.

The fake holds a switch database (dbplan's operations applied to an Observed snapshot) and
each bridge's flows, and does what `controller.changes.ChangeTarget` promises; the integration tests
(tests/integration/test_control.py) do the same on real Open vSwitch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import dbplan
from controller.changes import Change, Reconciled, Rejected
from controller.dbplan import Observed, ObservedBridge, ObservedPort
from controller.running import Origin
from flows import br_int, naming
from flows.config import Config, parse_config
from flows.diff import diff
from flows.flow import Flow
from flows.model import BridgeModel, build_bridge, local_vlans
from flows.pipeline import build
from tests.conftest import CONFIGS

HOST = "compute1"
CONTROLLER = "tcp:127.0.0.1:6653"
EXAMPLE = (CONFIGS / "example.yaml").read_text()


def edited(change: Callable[[dict[str, Any]], None]) -> str:
    raw = yaml.safe_load(EXAMPLE)
    change(raw)
    return yaml.safe_dump(raw)


def swap_vlans(raw: dict[str, Any]) -> None:
    raw["hosts"][HOST]["local_vlans"] = {"net1": 2, "net2": 1}


def add_remote_port(raw: dict[str, Any]) -> None:
    raw["hosts"]["network"]["ports"].append({"network": "net1", "mac": "fa:16:3e:00:00:09", "ip": "10.1.0.9"})


class FakeAgent:
    """A host whose database and switches do at once what they are asked (or refuse, or fail)."""

    def __init__(self, text: str = EXAMPLE) -> None:
        self.host_name = HOST
        self.config = parse_config(text)
        self.origin = Origin(text, "/etc/brtun.yaml")
        self.outcomes: list[str] = []
        self.db = Observed({}, {})
        self.flows: dict[str, tuple[Flow, ...]] = {}
        self.calls: list[str] = []
        self.refuse: Callable[[int], bool] = lambda number: False  # by reconcile number, from 1
        self.fail_sync: Callable[[int], bool] = lambda number: False  # by sync number, from 1
        self._reconciles = self._syncs = 0
        self.sync_database(self.config)
        host = self.config.host(HOST)
        vlans = local_vlans(host, self.config)
        for i, port in enumerate(host.ports):
            name = f"qvo{i}"
            self.db.ports[name] = ObservedPort(name, dbplan.BR_INT, "", tag=vlans[port.network],
                                               external_ids={"attached-mac": port.mac})
        for bridge in (dbplan.BR_TUN, dbplan.BR_INT):
            self.flows[bridge] = self.desired(bridge, self.config)
        self.calls.clear()
        self._reconciles = self._syncs = 0

    def tags(self) -> dict[str, int | None]:
        return {name: port.tag for name, port in sorted(self.db.ports.items()) if name.startswith("qvo")}

    # ----- controller.changes.ChangeTarget ------------------------------------
    def connected(self, bridge: str) -> bool:
        return True

    def pipeline(self, config: Config) -> tuple[BridgeModel, tuple[Flow, ...]]:
        model = build_bridge(config, HOST, observed_ofports=self.db.ofports(dbplan.BR_TUN))
        return model, build(model)

    def desired(self, bridge: str, config: Config) -> tuple[Flow, ...]:
        return br_int.build(config.cookie) if bridge == dbplan.BR_INT else self.pipeline(config)[1]

    def database_plan(self, config: Config) -> dbplan.Plan:
        return dbplan.plan(config, HOST, self.db, CONTROLLER, "netdev")

    def sync_database(self, config: Config, only: tuple[type, ...] | None = None) -> None:
        self._syncs += 1
        if self.fail_sync(self._syncs):
            raise RuntimeError("the database refused the transaction")
        for op in self.database_plan(config).operations:
            if only is not None and not isinstance(op, only):
                continue
            self.calls.append(op.describe())
            ports = self.db.ports
            if isinstance(op, dbplan.EnsureBridge):
                self.db.bridges[op.spec.name] = ObservedBridge(
                    op.spec.name, op.spec.datapath_type, "secure", dbplan.PROTOCOLS, op.spec.other_config,
                    (op.spec.controller,))
            elif isinstance(op, dbplan.AddPort | dbplan.FixPort):
                ports[op.spec.name] = ObservedPort(op.spec.name, op.spec.bridge, op.spec.type, dict(op.spec.options),
                                                   op.spec.ofport_request, external_ids={"brtun": op.owner})
            elif isinstance(op, dbplan.DeletePort):
                del ports[op.name]
            else:
                ports[op.name] = dataclasses.replace(ports[op.name], tag=op.tag)

    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None,
                  forget: frozenset[tuple[int, int]] = frozenset()) -> Reconciled | None:
        self._reconciles += 1
        desired = desired if desired is not None else self.desired(bridge, self.config)
        result = diff(desired, self.flows[bridge], self.config.cookie, forget=forget)
        if self.refuse(self._reconciles):
            self.calls.append(f"{bridge}: refused")
            return Reconciled(result, ("OpenFlow error type=1 code=2",))
        self.calls.append(f"{bridge}: {len(result.changes)} changes")
        self.flows[bridge] = desired
        return Reconciled(result)

    def use(self, config: Config) -> None:
        self.config = config

    def adopt(self, config: Config, origin: Origin) -> None:
        self.config, self.origin = config, origin

    def count_change(self, outcome: str) -> None:
        self.outcomes.append(outcome)


def test_a_change_that_moves_no_port_is_one_bundle_and_then_the_running_config() -> None:
    agent = FakeAgent()
    text = edited(add_remote_port)
    change = Change.proposed(agent, text, "/nonexistent/brtun.yaml")
    assert change.preview(agent)["steps"] == "one bundle"
    summary = change.apply(agent)
    assert summary["steps"] == "one bundle" and summary["flow_changes"] == 2  # unicast and ARP entry
    assert agent.calls == ["br-tun: 2 changes"]
    assert agent.config is change.new and agent.origin == Origin(text, "/etc/brtun.yaml")
    assert agent.flows[dbplan.BR_TUN] == agent.desired(dbplan.BR_TUN, change.new)
    assert agent.outcomes == ["applied"]


def test_a_dry_run_changes_nothing_and_gives_back_the_config_to_roll_back_to() -> None:
    agent = FakeAgent()
    before = dict(agent.flows)
    preview = Change.proposed(agent, edited(swap_vlans)).preview(agent)
    assert preview["current"] == {"path": "/etc/brtun.yaml", "text": EXAMPLE}
    assert preview["local_vlans"] == {"net1": 2, "net2": 1}
    assert "VLAN 1, 2 changes network" in preview["steps"]
    assert agent.calls == [] and agent.flows == before and agent.config.host(HOST).local_vlans == (
        ("net1", 1), ("net2", 2))


def test_a_retag_goes_in_steps_with_the_ports_waiting_on_the_dead_vlan() -> None:
    agent = FakeAgent()
    summary = Change.proposed(agent, edited(swap_vlans)).apply(agent)
    assert "changes network" in summary["steps"]
    dead = naming.DEAD_VLAN
    assert agent.calls == [  # no step 1: every new flow is about a VLAN that changes hands
        f"tag qvo0 with VLAN {dead}: no config port has its MAC (dead VLAN)",
        f"tag qvo1 with VLAN {dead}: no config port has its MAC (dead VLAN)",
        "br-tun: 12 changes",  # step 3: br-tun remapped
        "tag qvo0 with VLAN 2: port of net1 (fa:16:3e:00:00:01)",
        "tag qvo1 with VLAN 1: port of net2 (fa:16:3e:00:00:02)",
    ]
    assert summary["local_vlans"] == {"net1": 2, "net2": 1}


def test_a_refused_step_3_puts_the_ports_back_first_then_the_flows_and_keeps_the_origin() -> None:
    agent = FakeAgent()
    old_config, old_flows, old_tags = agent.config, dict(agent.flows), agent.tags()
    agent.refuse = lambda number: number == 1  # step 3
    with pytest.raises(Rejected, match="the switch refused it: OpenFlow error"):
        Change.proposed(agent, edited(swap_vlans)).apply(agent)
    assert agent.calls[2:] == ["br-tun: refused", "tag qvo0 with VLAN 1: port of net1 (fa:16:3e:00:00:01)",
                               "tag qvo1 with VLAN 2: port of net2 (fa:16:3e:00:00:02)", "br-tun: 0 changes"]
    assert agent.config is old_config and agent.origin == Origin(EXAMPLE, "/etc/brtun.yaml")
    assert agent.flows == old_flows and agent.tags() == old_tags
    assert agent.outcomes == ["refused"]


def test_a_failure_after_step_3_goes_back_as_a_change_like_any_other() -> None:
    agent = FakeAgent()
    old_config, old_flows, old_tags = agent.config, dict(agent.flows), agent.tags()
    agent.fail_sync = lambda number: number == 3  # step 0, step 2, then step 4 fails
    with pytest.raises(Rejected, match="applying it failed: the database refused"):
        Change.proposed(agent, edited(swap_vlans)).apply(agent)
    assert agent.calls[3:] == [  # after steps 2 and 3, the steps back (its ports already wait on 4095)
        "br-tun: 12 changes",
        "tag qvo0 with VLAN 1: port of net1 (fa:16:3e:00:00:01)",
        "tag qvo1 with VLAN 2: port of net2 (fa:16:3e:00:00:02)",
    ]
    assert agent.config is old_config and agent.origin.text == EXAMPLE
    assert agent.flows == old_flows and agent.tags() == old_tags
    assert agent.outcomes == ["failed"]


def test_a_cookie_change_is_rejected_before_anything_is_touched() -> None:
    agent = FakeAgent()
    with pytest.raises(Rejected, match="cookie: 0x5e1ec7ab1e -> 0x1"):
        Change.proposed(agent, EXAMPLE.replace("cookie: 0x5e1ec7ab1e", "cookie: 0x1"))
    assert agent.calls == [] and agent.outcomes == []


def test_an_edit_keeps_the_file_it_was_made_on_and_a_whole_config_starts_the_edits_over(tmp_path: Path) -> None:
    origin = Origin("a", "/etc/brtun.yaml").after("b", None, "add-network name=x")
    assert origin == Origin("b", "/etc/brtun.yaml", ("add-network name=x",))
    assert origin.source == "add-network name=x"
    assert origin.after("c", "/nonexistent.yaml", None) == Origin("c", "/etc/brtun.yaml")
    (tmp_path / "new.yaml").write_text("c")
    assert origin.after("c", str(tmp_path / "new.yaml"), None) == Origin("c", str(tmp_path / "new.yaml"))
    assert Origin("c").source == "text"
