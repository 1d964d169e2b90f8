"""Config changes on a running agent: validate (dry run), apply, reload, edit.

Every change takes the same path: text -> validated Config -> the checks a
running agent adds -> a `Change` (old and new config, their origins, the
steps of flows.transition between them) -> bundles and database
transactions.  A change that fails any check touches nothing; one the
switch refuses is rolled back to the config the agent had.  All of it runs
on the agent's worker thread (`Agent.call`), between reconciles, and asks
of the agent only what `ChangeTarget` lists.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from controller import dbplan
from controller.running import Origin
from flows import edits, transition
from flows.config import Config, InvalidConfig, parse_config
from flows.diff import Diff, Kind, diff
from flows.flow import Flow
from flows.model import BridgeModel, local_vlans

LOG = logging.getLogger("brtun.changes")


class Rejected(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# id(agent) -> the text of its latest proposed change, and that change (see Change.proposed)
_last_proposed: dict[int, tuple[str, Change]] = {}


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> Config:
    """Configs are immutable values: `validate` then `apply` of the same text parse it once."""
    return parse_config(text)


def _parse(text: str) -> Config:
    try:
        return _parsed(text)
    except InvalidConfig as error:
        raise Rejected([str(problem) for problem in error.errors]) from None


def running_checks(name: str, old: Config, new: Config) -> list[str]:
    """What a valid config may still not do to host `name`'s running agent."""
    if name not in new.host_names:
        return [f"hosts.{name}: missing; this agent's own host cannot leave the config "
                "(stop the agent instead)"]
    problems = []
    before, after = old.host(name), new.host(name)
    if before.datapath_id != after.datapath_id:
        problems.append(f"hosts.{name}.datapath_id: {before.datapath_id:#x} -> {after.datapath_id:#x}: "
                        "br-tun's datapath ID cannot change under a running agent (restart it)")
    if before.br_int_datapath_id != after.br_int_datapath_id:
        problems.append(f"hosts.{name}.int_datapath_id: {before.br_int_datapath_id:#x} -> "
                        f"{after.br_int_datapath_id:#x}: br-int's datapath ID cannot change under a "
                        "running agent (restart it)")
    if old.cookie != new.cookie:
        problems.append(f"cookie: {old.cookie:#x} -> {new.cookie:#x}: every installed flow carries the "
                        "old cookie and would become foreign (restart the agent to change it)")
    return problems


@dataclass(frozen=True)
class Reconciled:
    """One reconcile's outcome: the difference it found (and sent), and why the switch refused
    it, if it did (then the switch is unchanged: a bundle is all or nothing)."""

    difference: Diff
    refused: tuple[str, ...] = ()

    @property
    def changes(self) -> int:
        return len(self.difference.changes)


class ChangeTarget(Protocol):
    """What a change asks of the agent it changes (controller.agent.Agent): nothing else."""

    @property
    def host_name(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def origin(self) -> Origin: ...
    def connected(self, bridge: str) -> bool: ...
    def pipeline(self, config: Config) -> tuple[BridgeModel, tuple[Flow, ...]]: ...
    def desired(self, bridge: str, config: Config) -> tuple[Flow, ...]: ...
    def database_plan(self, config: Config) -> dbplan.Plan: ...
    def sync_database(self, config: Config, only: tuple[type, ...] | None = None) -> None: ...
    def reconcile(self, bridge: str, desired: tuple[Flow, ...] | None = None,
                  forget: frozenset[tuple[int, int]] = frozenset()) -> Reconciled | None: ...
    def use(self, config: Config) -> None: ...
    def adopt(self, config: Config, origin: Origin) -> None: ...
    def count_change(self, outcome: str) -> None: ...


@dataclass(frozen=True)
class Change:
    """One change of a running agent's config: the old and the new, each with where it came from,
    and the steps between them (flows.transition).

    `new` is the config as this host runs it (its networks kept on the local VLANs they use now).
    `planned` are the steps as the switch database stands before the change; carried out, they are
    computed again once step 0 has made the new tunnel ports, whose ofports the new flows use."""

    old: Config
    old_origin: Origin
    new: Config
    new_origin: Origin
    planned: transition.Steps

    @classmethod
    def proposed(cls, agent: ChangeTarget, text: str, path: str | None = None, edit: str | None = None,
                 parsed: Config | None = None) -> Change:
        """The change to `text`, checked as `brtun apply` checks it; Rejected if it cannot be made.

        `parsed` is `text` already parsed and validated (by the agent's bounded parser child).
        `brtun apply` asks for the same change twice, to validate it and then to apply it: unless the
        agent's config changed in between, the second time is the first one's change (the same
        effective config, so the same pipeline, built once), its one check that depends on the
        moment (is br-tun connected?) made again."""
        last = _still_proposed(agent, text)
        if last is not None:
            change = dataclasses.replace(last, new_origin=agent.origin.after(text, path, edit))
            change.check_connected(agent)
            return change
        new = parsed if parsed is not None else _parse(text)
        change = cls.to(agent, new, agent.origin.after(text, path, edit))
        _last_proposed.clear()  # one agent per process: the latest proposal is the one apply follows
        _last_proposed[id(agent)] = (text, change)
        return change

    @classmethod
    def to(cls, agent: ChangeTarget, new: Config, new_origin: Origin) -> Change:
        """The change to a config given as a value (the Neutron source's), checked as any other."""
        old, origin, host = agent.config, agent.origin, agent.host_name
        problems = running_checks(host, old, new)
        if problems:
            raise Rejected(problems)
        effective = transition.pin_local_vlans(new, host, _local_vlans(host, old))
        steps = transition.steps(*agent.pipeline(old), *agent.pipeline(effective), effective)
        change = cls(old, origin, effective, new_origin, steps)
        change.check_connected(agent)
        return change

    def check_connected(self, agent: ChangeTarget) -> None:
        """Rejected if a local VLAN changes network while br-tun is not connected."""
        if self.planned.held and not agent.connected(dbplan.BR_TUN):
            raise Rejected([f"local VLAN {', '.join(map(str, sorted(self.planned.held)))} would change network "
                            "while br-tun is not connected: that needs br-tun and br-int to change in step"])

    def preview(self, agent: ChangeTarget) -> dict[str, Any]:
        """The dry run: everything `apply` would check, and what it would change."""
        flows: dict[str, Any] = {}
        for bridge in (dbplan.BR_TUN, dbplan.BR_INT):
            # against the pipeline the agent keeps the switch at (the canary repairs any drift):
            # no switch round trip, so a dry run costs nothing at any scale
            new, old = agent.desired(bridge, self.new), agent.desired(bridge, self.old)
            if new is old:  # br-int's flows, built once per cookie, which a change cannot change
                flows[bridge] = {kind.value: 0 for kind in Kind}
                continue
            result = diff(new, old, self.new.cookie)
            flows[bridge] = {kind.value: len(result.of_kind(kind)) for kind in Kind}
        return {"database": [op.describe() for op in agent.database_plan(self.new).operations], "flows": flows,
                "local_vlans": _local_vlans(agent.host_name, self.new),
                "steps": self.planned.describe() if _moves_ports(agent, self.planned, self.new) else "one bundle",
                # what `brtun apply` gives back should another agent fail to apply the change
                "current": {"path": self.old_origin.path, "text": self.old_origin.text}}

    def apply(self, agent: ChangeTarget) -> dict[str, Any]:
        """Carry the change out; on any failure, go back to the old config and raise Rejected."""
        progress = _Progress()
        try:
            summary = _carry_out(agent, self.old, self.new, progress)
        except Exception as error:  # the database refused, or a switch stopped answering
            LOG.exception("applying the change failed after step %d; going back to the previous config",
                          progress.done)
            self._go_back(agent, progress)
            agent.count_change("failed")
            raise Rejected([f"applying it failed: {error}"]) from None
        if summary["refused"]:
            LOG.error("the switch refused the change; going back to the previous config")
            self._go_back(agent, progress)
            agent.count_change("refused")
            raise Rejected([f"the switch refused it: {e}" for e in summary["refused"]])
        agent.adopt(self.new, self.new_origin)
        agent.count_change("applied")
        LOG.info("config applied (%s): %s", self.new_origin.source, summary["steps"])
        return summary

    def _go_back(self, agent: ChangeTarget, progress: _Progress) -> None:
        """Undo a change that stopped part way.

        Up to step 3 br-tun still holds every old flow (step 1 only adds; a refused bundle changes
        nothing), so the ports return to their old VLANs first, then the flows follow.  Once step 3
        is confirmed the old flows are gone: going back is then a change like any other."""
        if progress.done >= 3:
            _carry_out(agent, self.new, self.old, _Progress())
            return
        agent.use(self.old)
        agent.sync_database(self.old, only=(dbplan.SetTag,))
        agent.reconcile(dbplan.BR_TUN)
        agent.sync_database(self.old)


def _local_vlans(host: str, config: Config) -> dict[str, int]:
    return local_vlans(config.host(host), config)


class _Progress:
    done = 0  # the last step whose flows or database change the switch confirmed


def _moves_ports(agent: ChangeTarget, steps: transition.Steps, effective: Config) -> bool:
    """Whether a VM port changes VLAN: only then must br-tun change in steps around it."""
    return any(isinstance(op, dbplan.SetTag) for config in (steps.database_config, effective)
               for op in agent.database_plan(config).operations)


def _carry_out(agent: ChangeTarget, old: Config, new: Config, progress: _Progress) -> dict[str, Any]:
    """The steps of flows.transition from `old` (what the switches hold) to `new`, each confirmed
    before the next; the summary lists what the switch refused, if it refused a step."""
    old_model, old_flows = agent.pipeline(old)
    agent.use(new)
    # Step 0: new tunnel ports first, so that their flows can be written.
    agent.sync_database(new, only=(dbplan.EnsureBridge, dbplan.AddPort, dbplan.FixPort))
    new_model, new_flows = agent.pipeline(new)
    steps = transition.steps(old_model, old_flows, new_model, new_flows, new)
    in_steps = _moves_ports(agent, steps, new)
    summary: dict[str, Any] = {"steps": steps.describe() if in_steps else "one bundle", "flow_changes": 0,
                               "refused": []}

    def br_tun_holds(desired: tuple[Flow, ...], forget: frozenset[tuple[int, int]] = frozenset()) -> bool:
        result = agent.reconcile(dbplan.BR_TUN, desired, forget)
        if result is not None:
            summary["flow_changes"] += result.changes
            summary["refused"].extend(result.refused)
        return not summary["refused"]

    if in_steps:
        if set(steps.bridge_flows) != set(old_flows) and not br_tun_holds(steps.bridge_flows):
            return summary  # 1: make before break
        progress.done = 1
        agent.sync_database(steps.database_config, only=(dbplan.SetTag,))  # 2: retag, parked on 4095
    # Without steps no VM port changes VLAN: br-tun's whole difference is one ordered, atomic bundle.
    progress.done = 2
    # 3: exactly the new pipeline; learned flows of ports that left their host go with it
    if not br_tun_holds(new_flows, transition.forgotten_macs(old, new, agent.host_name)):
        return summary
    progress.done = 3  # br-int's flows depend on the cookie alone, which cannot change here
    agent.sync_database(new)  # 4: parked ports take their VLAN; ports no longer implied go
    progress.done = 4
    summary["local_vlans"] = _local_vlans(agent.host_name, new)
    return summary


def preview(agent: ChangeTarget, text: str, parsed: Config | None = None) -> dict[str, Any]:
    """The dry run of `brtun apply --dry-run` and `brtun edit --dry-run`."""
    return Change.proposed(agent, text, parsed=parsed).preview(agent)


def _still_proposed(agent: ChangeTarget, text: str) -> Change | None:
    """The change last proposed to this agent for `text`, if the agent's config has not changed since."""
    last = _last_proposed.get(id(agent))
    if last is None or last[0] != text or last[1].old is not agent.config or last[1].old_origin is not agent.origin:
        return None
    return last[1]


def validated_last(agent: ChangeTarget, text: str) -> bool:
    """Whether `text` is what this agent validated last, its config unchanged since: `brtun apply`
    sends the text it validated, whose parse (in the bounded child) need not be done again."""
    return _still_proposed(agent, text) is not None


def apply(agent: ChangeTarget, text: str, path: str | None, edit: str | None = None,
          parsed: Config | None = None) -> dict[str, Any]:
    return Change.proposed(agent, text, path, edit, parsed).apply(agent)


def reload(agent: ChangeTarget) -> dict[str, Any]:
    """SIGHUP: read the config file again and apply it like `brtun apply`."""
    path = agent.origin.path
    if path is None:
        raise Rejected(["the agent was started without a config file"])
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise Rejected([f"{path}: cannot read: {error.strerror}"]) from None
    return apply(agent, text, path)


def edit(agent: ChangeTarget, name: str, args: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    try:
        text = edits.apply_edit(agent.origin.text, agent.host_name, name, args)
    except edits.EditError as error:
        raise Rejected([f"{name}: {error}"]) from None
    return edited(agent, name, args, dry_run, text)


def edited(agent: ChangeTarget, name: str, args: dict[str, Any], dry_run: bool, text: str,
           parsed: Config | None = None) -> dict[str, Any]:
    """The dry run or the change of an edit whose result is `text` (and `parsed`, if already parsed)."""
    described = f"{name} {' '.join(f'{k}={v}' for k, v in sorted(args.items()))}"
    try:
        return preview(agent, text, parsed) if dry_run else apply(agent, text, None, edit=described, parsed=parsed)
    except Rejected as rejected:
        raise without_lines(rejected) from None


def without_lines(rejected: Rejected) -> Rejected:
    """An edit's errors: line numbers would point into text nobody wrote."""
    return Rejected([re.sub(r" \(line \d+\)$", "", error) for error in rejected.errors])
