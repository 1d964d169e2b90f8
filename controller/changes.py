"""Config changes on a running agent: validate (dry run), apply, reload, edit.

Every change takes the same path: text -> validated Config -> the checks a
running agent adds -> steps (flows.transition) -> bundles and database
transactions.  A change that fails any check touches nothing; one the
switch refuses is rolled back to the config the agent had.  All of it runs
on the agent's worker thread (`Agent.call`), between reconciles.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from typing import Any

from controller import dbplan
from controller.agent import Agent
from flows import edits, transition
from flows.config import Config, InvalidConfig, parse_config
from flows.diff import Kind, diff

LOG = logging.getLogger("brtun.changes")


class Rejected(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> Config:
    """Configs are immutable values: `validate` then `apply` of the same text parse it once."""
    return parse_config(text)


def _parse(text: str) -> Config:
    try:
        return _parsed(text)
    except InvalidConfig as error:
        raise Rejected([str(problem) for problem in error.errors]) from None


def running_checks(agent: Agent, new: Config) -> list[str]:
    """What a valid config may still not do to a running agent."""
    name, old = agent.host.name, agent.config
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


def _prepare(agent: Agent, text: str) -> tuple[Config, transition.Steps]:
    new = _parse(text)
    problems = running_checks(agent, new)
    if problems:
        raise Rejected(problems)
    effective = transition.pin_local_vlans(new, agent.host.name, agent.local_vlans())
    old_model, old_flows = agent.pipeline()
    new_model, new_flows = agent.pipeline(effective)
    steps = transition.steps(old_model, old_flows, new_model, new_flows, effective)
    if steps.held and not agent.connected(dbplan.BR_TUN):
        raise Rejected([f"local VLAN {', '.join(map(str, sorted(steps.held)))} would change network while "
                        "br-tun is not connected: that needs br-tun and br-int to change in step"])
    return effective, steps


def preview(agent: Agent, text: str) -> dict[str, Any]:
    """The dry run: everything `apply` would check, and what it would change."""
    effective, steps = _prepare(agent, text)
    plan = dbplan.plan(effective, agent.host.name, agent.observe(), agent.settings.controller,
                       agent.settings.datapath_type)
    flows: dict[str, Any] = {}
    for bridge in (dbplan.BR_TUN, dbplan.BR_INT):
        # against the pipeline the agent keeps the switch at (the canary repairs any drift):
        # no switch round trip, so a dry run costs nothing at any scale
        result = diff(agent.desired(bridge, effective), agent.desired(bridge), effective.cookie)
        flows[bridge] = {kind.value: len(result.of_kind(kind)) for kind in Kind}
    return {"database": [op.describe() for op in plan.operations], "flows": flows,
            "local_vlans": agent.local_vlans(effective),
            "steps": steps.describe() if _moves_ports(agent, steps, effective) else "one bundle",
            # what `brtun apply` gives back should another agent fail to apply the change
            "current": {"path": agent.config_path, "text": agent.config_text}}


def apply(agent: Agent, text: str, path: str | None, edit: str | None = None) -> dict[str, Any]:
    effective, _ = _prepare(agent, text)
    old_config = agent.config
    progress = _Progress()
    try:
        summary = _carry_out(agent, effective, progress)
    except Exception as error:  # the database refused, or a switch stopped answering
        LOG.exception("applying the change failed after step %d; going back to the previous config",
                      progress.done)
        _go_back(agent, old_config, progress)
        agent.metrics.config_changes.labels("failed").inc()
        raise Rejected([f"applying it failed: {error}"]) from None
    if summary["refused"]:
        LOG.error("the switch refused the change; going back to the previous config")
        _go_back(agent, old_config, progress)
        agent.metrics.config_changes.labels("refused").inc()
        raise Rejected([f"the switch refused it: {e}" for e in summary["refused"]])
    agent.config_text = text
    if edit is not None:
        agent.edits.append(edit)
    else:
        agent.edits.clear()
        if path is not None and os.path.isfile(path):
            agent.config_path = path
    agent.metrics.config_changes.labels("applied").inc()
    LOG.info("config applied (%s): %s", edit or agent.config_path or "text", summary["steps"])
    return summary


class _Progress:
    done = 0  # the last step whose flows or database change the switch confirmed


def _go_back(agent: Agent, old_config: Config, progress: _Progress) -> None:
    """Undo a change that stopped part way.

    Up to step 3 br-tun still holds every old flow (step 1 only adds; a refused bundle changes
    nothing), so the ports return to their old VLANs first, then the flows follow.  Once step 3
    is confirmed the old flows are gone: going back is then a change like any other."""
    if progress.done >= 3:
        _carry_out(agent, old_config, _Progress())
        return
    agent.config = old_config
    agent.sync_database(only=(dbplan.SetTag,))
    agent.reconcile(dbplan.BR_TUN)
    agent.sync_database()


def _moves_ports(agent: Agent, steps: transition.Steps, effective: Config) -> bool:
    """Whether a VM port changes VLAN: only then must br-tun change in steps around it."""
    return any(isinstance(op, dbplan.SetTag) for config in (steps.database_config, effective)
               for op in agent.db_plan(config).operations)


def _carry_out(agent: Agent, effective: Config, progress: _Progress) -> dict[str, Any]:
    """The steps of flows.transition, each confirmed before the next."""
    old_model, old_flows = agent.pipeline()
    agent.config = effective
    # Step 0: new tunnel ports first, so that their flows can be written.
    agent.sync_database(only=(dbplan.EnsureBridge, dbplan.AddPort, dbplan.FixPort))
    new_model, new_flows = agent.pipeline(effective)
    steps = transition.steps(old_model, old_flows, new_model, new_flows, effective)
    refused: list[str] = []
    sent = 0

    def flows(bridge: str, desired: Any = None) -> None:
        nonlocal sent
        result = agent.reconcile(bridge, desired)
        if result is not None:
            sent += len(result.changes)
            refused.extend(agent.refused.get(bridge, []))

    if not _moves_ports(agent, steps, effective):
        # No VM port changes VLAN: br-tun's whole difference is one ordered, atomic bundle.
        progress.done = 2
        flows(dbplan.BR_TUN, new_flows)
        if refused:
            return {"steps": "one bundle", "flow_changes": sent, "refused": refused}
        progress.done = 3
        agent.sync_database()  # ports no longer implied go
        progress.done = 4
        return {"steps": "one bundle", "flow_changes": sent, "refused": refused, "local_vlans": agent.local_vlans()}
    if set(steps.bridge_flows) != set(old_flows):  # 1: make before break
        flows(dbplan.BR_TUN, steps.bridge_flows)
    if refused:
        return {"steps": steps.describe(), "flow_changes": sent, "refused": refused}
    progress.done = 1
    agent.sync_database(steps.database_config, only=(dbplan.SetTag,))  # 2: retag, parked on 4095
    progress.done = 2
    flows(dbplan.BR_TUN, new_flows)  # 3: exactly the new pipeline
    if refused:
        return {"steps": steps.describe(), "flow_changes": sent, "refused": refused}
    progress.done = 3  # br-int's flows depend on the cookie alone, which cannot change here
    agent.sync_database()  # 4: parked ports take their VLAN; ports no longer implied go
    progress.done = 4
    return {"steps": steps.describe(), "flow_changes": sent, "refused": refused,
            "local_vlans": agent.local_vlans()}


def reload(agent: Agent) -> dict[str, Any]:
    """SIGHUP: read the config file again and apply it like `brtun apply`."""
    path = agent.config_path
    if path is None:
        raise Rejected(["the agent was started without a config file"])
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise Rejected([f"{path}: cannot read: {error.strerror}"]) from None
    return apply(agent, text, path)


def edit(agent: Agent, name: str, args: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    try:
        text = edits.apply_edit(agent.config_text, agent.host.name, name, args)
    except edits.EditError as error:
        raise Rejected([f"{name}: {error}"]) from None
    described = f"{name} {' '.join(f'{k}={v}' for k, v in sorted(args.items()))}"
    try:
        return preview(agent, text) if dry_run else apply(agent, text, None, edit=described)
    except Rejected as rejected:  # line numbers would point into text nobody wrote
        raise Rejected([re.sub(r" \(line \d+\)$", "", error) for error in rejected.errors]) from None


_FIELDS = {"state": set(), "config": set(), "validate": {"config", "path"}, "apply": {"config", "path", "edit"},
           "reload": set(), "edit": {"edit", "args", "dry_run"}}


def handle(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    """A control-socket request -> its reply.  Bad requests are rejected before any work."""
    op = request["op"]
    if op not in _FIELDS:
        return _error(f"unknown op {op!r} (known: {', '.join(_FIELDS)})")
    unknown = set(request) - _FIELDS[op] - {"op"}
    if unknown:
        return _error(f"{op}: unknown field {', '.join(sorted(unknown))}")
    for key in ("config", "path", "edit"):
        if key in request and not isinstance(request[key], str):
            return _error(f"{op}: {key!r} must be a string")
    if op in ("validate", "apply") and "config" not in request:
        return _error(f'{op}: needs "config", the config text')
    if op == "edit" and ("edit" not in request or not isinstance(request.get("args", {}), dict)):
        return _error('edit: needs "edit" (its name) and "args" (an object)')
    if op == "config":  # what `brtun apply` needs to put a host back
        return {"ok": True, "host": agent.host.name, "path": agent.config_path, "text": agent.config_text,
                "edits": list(agent.edits)}
    if op == "state":
        return {"ok": True, **agent.call(agent.state),
                "config_sha256": hashlib.sha256(agent.config_text.encode()).hexdigest()}
    work = {
        "validate": lambda: preview(agent, request["config"]),
        "apply": lambda: apply(agent, request["config"], request.get("path"), edit=request.get("edit")),
        "reload": lambda: reload(agent),
        "edit": lambda: edit(agent, request["edit"], request.get("args", {}), bool(request.get("dry_run"))),
    }[op]
    started, cpu = time.perf_counter(), time.process_time()
    try:
        reply = {"ok": True, **agent.call(work)}
        reply.update(agent_ms=round((time.perf_counter() - started) * 1000, 2),
                     agent_cpu_ms=round((time.process_time() - cpu) * 1000, 2))
        return reply
    except Rejected as rejected:
        if op != "validate":
            agent.metrics.config_changes.labels("rejected").inc()
        LOG.warning("%s rejected: %s", op, "; ".join(rejected.errors))
        return {"ok": False, "errors": rejected.errors}


def _error(message: str) -> dict[str, Any]:
    LOG.warning("control socket: %s", message)
    return {"ok": False, "errors": [message]}


def sighup(agent: Agent) -> None:
    """From the signal handler: queue a reload (the worker logs, not the handler)."""
    def work() -> None:
        LOG.info("received SIGHUP; reading %s again", agent.config_path)
        try:
            summary = reload(agent)
        except Rejected as rejected:
            agent.metrics.config_changes.labels("rejected").inc()
            LOG.error("SIGHUP: %s rejected; nothing changed: %s", agent.config_path, "; ".join(rejected.errors))
        else:
            LOG.info("SIGHUP: %s applied (%d flow changes)", agent.config_path, summary["flow_changes"])
    agent.post(work)
