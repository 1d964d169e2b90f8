"""The control socket's operations and SIGHUP: requests checked, then handed to the agent's worker.

Each request is checked completely (op, fields, their exact JSON types)
before any work.  Config text from a request or a file is parsed by the
agent's parser child (controller.sandbox: bounded in time and memory) while
the request's own hub thread waits, so neither the worker nor the switches'
connections wait for YAML; the change itself (`controller.changes`) then
runs on the agent's worker, so it never interleaves with a reconcile.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from controller.agent import Agent
from controller.changes import Rejected, apply, edited, preview, validated_last, without_lines
from controller.sandbox import Refused, Sandbox
from flows import edits
from flows.config import Config, InvalidConfig, read_config_text
from flows.flow import render_flows

LOG = logging.getLogger("brtun.changes")

# Each op's fields: the JSON types each may have, and whether it must be given.  Types are checked
# exactly (a bool is not a number, "no" is not false) before any work.
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "state": {},
    "config": {},
    "desired": {"bridge": ((str,), False)},
    "validate": {"config": ((str,), True), "path": ((str, type(None)), False)},
    "apply": {"config": ((str,), True), "path": ((str, type(None)), False), "edit": ((str,), False)},
    "reload": {},
    "edit": {"edit": ((str,), True), "args": ((dict,), False), "dry_run": ((bool,), False)},
}
_TYPE_NAMES = {str: "a string", dict: "an object", bool: "true or false", type(None): "null"}
_NEEDS = {"config": "the config text", "edit": "its name"}
BRIDGES = ("br-tun", "br-int")


def check_request(request: dict[str, Any]) -> str | None:
    """What is wrong with a decoded request (its op, its fields, their types), or None."""
    op = request["op"]
    if op not in _FIELDS:
        return f"unknown op {op[:40]!r} (known: {', '.join(_FIELDS)})"
    fields = _FIELDS[op]
    unknown = sorted(str(key)[:40] for key in set(request) - set(fields) - {"op"})
    if unknown:
        return f"{op}: unknown field {', '.join(unknown)}"
    for key, (types, required) in fields.items():
        if key not in request:
            if required:
                return f'{op}: needs "{key}", {_NEEDS.get(key, _TYPE_NAMES[types[0]])}'
            continue
        value = request[key]
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            return f"{op}: {key!r} must be {' or '.join(_TYPE_NAMES[t] for t in types)}, not {_json_type(value)}"
    if op == "desired" and request.get("bridge", "br-tun") not in BRIDGES:
        return f"desired: 'bridge' must be {' or '.join(BRIDGES)}"
    return None


def _json_type(value: object) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class Operations:
    """The agent's operations, as the control socket and SIGHUP ask for them."""

    def __init__(self, agent: Agent, sandbox: Sandbox) -> None:
        self.agent = agent
        self.sandbox = sandbox

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control-socket request -> its reply.  Bad requests are rejected before any work."""
        problem = check_request(request)
        if problem is not None:
            return _error(problem)
        agent, op = self.agent, request["op"]
        if op == "config":  # what `brtun apply` needs to put a host back
            origin = agent.origin
            return {"ok": True, "host": agent.host_name, "path": origin.path, "text": origin.text,
                    "edits": list(origin.edits)}
        if op == "state":
            return {"ok": True, **agent.call(agent.state), "config_sha256": _sha256(agent.origin.text)}
        if op == "desired":
            return self._desired(request.get("bridge", "br-tun"))
        if op in ("validate", "apply", "reload", "edit") and agent.origin.neutron:
            return _error(f"{op}: this agent's config comes from Neutron ({agent.origin.neutron}); change it "
                          "through Neutron's API (brtun run --neutron)")
        try:
            work = self._work(request)
            started, cpu = time.perf_counter(), time.process_time()
            reply = {"ok": True, **agent.call(work)}
        except Rejected as rejected:
            if op != "validate":
                agent.count_change("rejected")
            LOG.warning("%s rejected: %s", op, "; ".join(rejected.errors))
            return {"ok": False, "errors": rejected.errors}
        reply.update(agent_ms=round((time.perf_counter() - started) * 1000, 2),
                     agent_cpu_ms=round((time.process_time() - cpu) * 1000, 2))
        return reply

    def _work(self, request: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """What the worker is to do for a change request, its text already parsed (Rejected if not)."""
        agent, op = self.agent, request["op"]
        if op == "validate":
            config = self.parse(request["config"])
            return lambda: preview(agent, request["config"], config)
        if op == "apply":
            # the text the agent just validated (in the parser child) is not parsed again: the change
            # it proposed then is applied (controller.changes.Change.proposed)
            config = None if validated_last(agent, request["config"]) else self.parse(request["config"])
            return lambda: apply(agent, request["config"], request.get("path"), request.get("edit"), config)
        if op == "reload":
            text, path, config = self.read_file()
            return lambda: apply(agent, text, path, parsed=config)
        name, args, dry_run = request["edit"], request.get("args", {}), request.get("dry_run", False)
        base = agent.origin.text
        try:
            text = self.sandbox.edit(base, agent.host_name, name, args)
        except edits.EditError as error:
            raise Rejected([f"{name}: {error}"]) from None
        except Refused as error:
            raise Rejected([f"{name}: {error}"]) from None
        try:
            config = self.parse(text)
        except Rejected as rejected:
            raise without_lines(rejected) from None

        def work() -> dict[str, Any]:
            if agent.origin.text != base:  # another change came first: the edit was made on old text
                raise Rejected([f"{name}: the running config changed while the edit was made; nothing changed "
                                "(try again)"])
            return edited(agent, name, args, dry_run, text, config)
        return work

    def parse(self, text: str) -> Config:
        """`text` parsed and validated by the parser child; Rejected with every error if it cannot be."""
        try:
            return self.sandbox.parse(text)
        except InvalidConfig as error:
            raise Rejected([str(problem) for problem in error.errors]) from None
        except Refused as error:
            raise Rejected([f"(file): {error}"]) from None

    def read_file(self) -> tuple[str, str, Config]:
        """The agent's config file, read again and parsed (SIGHUP, `reload`)."""
        path = self.agent.origin.path
        if path is None:
            raise Rejected(["the agent was started without a config file"])
        try:
            text = read_config_text(path)
        except InvalidConfig as error:
            raise Rejected([f"{path}: {problem}" for problem in error.errors]) from None
        return text, path, self.parse(text)

    def _desired(self, bridge: str) -> dict[str, Any]:
        """The flows the agent keeps `bridge` at, and the config they come from (`brtun diff HOST`)."""
        agent = self.agent
        flows, connected = agent.call(lambda: (agent.desired(bridge), agent.connected(bridge)))
        origin = agent.origin
        return {"ok": True, "host": agent.host_name, "bridge": bridge, "connected": connected,
                "config": {"path": origin.path, "edits": list(origin.edits)},
                "config_sha256": _sha256(origin.text), "cookie": agent.config.cookie,
                "flows": render_flows(flows).splitlines()}

    def sighup(self) -> None:
        """From the signal handler: queue a reload (the worker spawns it; nothing here may block)."""
        from os_ken.lib import hub

        self.agent.post(lambda: hub.spawn(self._reload_on_sighup))

    def _reload_on_sighup(self) -> None:
        agent = self.agent
        LOG.info("received SIGHUP; reading %s again", agent.origin.path)
        try:
            text, path, config = self.read_file()
            summary = agent.call(lambda: apply(agent, text, path, parsed=config))
        except Rejected as rejected:
            agent.count_change("rejected")
            LOG.error("SIGHUP: %s rejected; nothing changed: %s", agent.origin.path, "; ".join(rejected.errors))
        else:
            LOG.info("SIGHUP: %s applied (%d flow changes)", agent.origin.path, summary["flow_changes"])


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _error(message: str) -> dict[str, Any]:
    LOG.warning("control socket: %s", message)
    return {"ok": False, "errors": [message]}
