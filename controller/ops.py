"""The control socket's operations and SIGHUP: requests checked, then handed to the agent's worker.

Each request is checked completely (op, fields, their types) before any
work; the work itself (`controller.changes`) runs on the agent's worker, so
it never interleaves with a reconcile.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from controller.agent import Agent
from controller.changes import Rejected, apply, edit, preview, reload

LOG = logging.getLogger("brtun.changes")


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
    if op in ("validate", "apply", "reload", "edit") and agent.origin.neutron:
        return _error(f"{op}: this agent's config comes from Neutron ({agent.origin.neutron}); change it through "
                      "Neutron's API (brtun run --neutron)")
    if op == "config":  # what `brtun apply` needs to put a host back
        origin = agent.origin
        return {"ok": True, "host": agent.host_name, "path": origin.path, "text": origin.text,
                "edits": list(origin.edits)}
    if op == "state":
        return {"ok": True, **agent.call(agent.state),
                "config_sha256": hashlib.sha256(agent.origin.text.encode()).hexdigest()}
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
            agent.count_change("rejected")
        LOG.warning("%s rejected: %s", op, "; ".join(rejected.errors))
        return {"ok": False, "errors": rejected.errors}


def _error(message: str) -> dict[str, Any]:
    LOG.warning("control socket: %s", message)
    return {"ok": False, "errors": [message]}


def sighup(agent: Agent) -> None:
    """From the signal handler: queue a reload (the worker logs, not the handler)."""
    def work() -> None:
        LOG.info("received SIGHUP; reading %s again", agent.origin.path)
        try:
            summary = reload(agent)
        except Rejected as rejected:
            agent.count_change("rejected")
            LOG.error("SIGHUP: %s rejected; nothing changed: %s", agent.origin.path, "; ".join(rejected.errors))
        else:
            LOG.info("SIGHUP: %s applied (%d flow changes)", agent.origin.path, summary["flow_changes"])
    agent.post(work)
