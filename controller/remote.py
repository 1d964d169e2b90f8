"""`brtun apply`, `brtun state`, `brtun edit`: the command line side of the agents' control sockets.

`apply` is a two-phase change: every agent validates the new config (dry
run, nothing touched) and only when all accept does any of them apply it;
if one then fails, those that applied go back to the config they had.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.control import ControlError, request, request_all
from flows import edits
from flows.config import InvalidConfig, load_config
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ovshost import state as states


@dataclass(frozen=True)
class Target:
    host: str
    socket: Path


class Unreachable(RuntimeError):
    pass


def targets(args: argparse.Namespace) -> tuple[list[Target], Path | None]:
    """The agents to talk to, and the testbed's config copy when they are a testbed's."""
    if args.socket:
        return [Target(str(path), Path(path)) for path in args.socket], None
    names = [args.testbed] if args.testbed else states.names()
    if not names:
        raise Unreachable("no testbed is up; name the agents with --socket PATH")
    if len(names) > 1:
        raise Unreachable(f"several testbeds are up ({', '.join(names)}): choose one with --testbed")
    try:
        state = states.load(names[0])
    except states.NoTestbed as error:
        raise Unreachable(str(error)) from None
    found = [Target(h.name, h.control_socket) for h in state.hosts.values()]
    if args.host:
        unknown = set(args.host) - {t.host for t in found}
        if unknown:
            raise Unreachable(f"testbed {state.name} has no host {', '.join(sorted(unknown))}")
        found = [t for t in found if t.host in args.host]
    return found, Path(state.config) if state.config else None


def _ask(target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return request(target.socket, payload)
    except ControlError as error:
        raise Unreachable(f"{target.host}: {error}") from None


def _errors(target: Target, reply: dict[str, Any]) -> None:
    for error in reply.get("errors", []):
        print(f"{target.host}: {error}", file=sys.stderr)


def _describe(reply: dict[str, Any]) -> str:
    flows = ", ".join(f"{bridge} +{c['add']} ~{c['modify']} -{c['delete']}"
                      for bridge, c in sorted(reply.get("flows", {}).items()))
    database = len(reply.get("database", []))
    return f"{flows or 'no bridge connected'}; {database} database change{'s' * (database != 1)}"


@dataclass
class Rollout:
    """What happened to one change, agent by agent."""

    verdicts: dict[str, dict[str, Any]]  # host -> its validate reply
    applied: dict[str, dict[str, Any]]  # host -> its apply reply (empty after a rejection or dry run)
    failed: dict[str, dict[str, Any]]  # host -> the reply of an agent that could not apply
    seconds: float  # first request to the last agent's last barrier
    validate_seconds: float  # of which every agent validating

    @property
    def rejected(self) -> list[str]:
        return [host for host, reply in self.verdicts.items() if not reply["ok"]]


def each(agents: list[Target], payload: Callable[[Target], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Ask every agent at once: a change reaches ten hosts in the time of the slowest."""
    replies = request_all({t.host: (t.socket, payload(t)) for t in agents})
    for host, reply in replies.items():
        if isinstance(reply, ControlError):
            raise Unreachable(f"{host}: {reply}")
    return replies  # type: ignore[return-value]  (every one a reply, checked above)


def rollout(agents: list[Target], text: str, path: str | None, dry_run: bool = False,
            edit: str | None = None) -> Rollout:
    """Validate everywhere; only if all accept, apply everywhere; roll back if any fails.

    `path` is the file the text came from (the agents' source of truth from then on), or
    None for a run-time edit, described by `edit`."""
    source = {"path": path} if path is not None else {"edit": edit or "run-time edit"}
    started = time.perf_counter()
    verdicts = each(agents, lambda t: {"op": "validate", "config": text})
    validated = time.perf_counter()
    if dry_run or any(not reply["ok"] for reply in verdicts.values()):
        return Rollout(verdicts, {}, {}, validated - started, validated - started)
    replies = each(agents, lambda t: {"op": "apply", "config": text, **source})
    seconds = time.perf_counter() - started
    failed = {host: reply for host, reply in replies.items() if not reply["ok"]}
    if failed:  # each validate reply carries the config that agent had: put it back
        went_back = [t for t in agents if t.host not in failed]
        each(went_back, lambda t: {"op": "apply", "config": verdicts[t.host]["current"]["text"],
                                    "path": verdicts[t.host]["current"]["path"]})
    applied = {host: reply for host, reply in replies.items() if reply["ok"]}
    return Rollout(verdicts, applied, failed, seconds, validated - started)


def cmd_apply(args: argparse.Namespace) -> int:
    path = Path(args.config).resolve()
    try:
        load_config(str(path))
    except InvalidConfig as error:
        for problem in error.errors:
            print(f"{args.config}: {problem}", file=sys.stderr)
        print(f"{args.config}: rejected; no agent was asked", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        agents, testbed_config = targets(args)
        result = rollout(agents, path.read_text(), str(path), args.dry_run)
    except Unreachable as error:
        print(f"brtun apply: {error}; nothing applied", file=sys.stderr)
        return EXIT_FAILED
    status = _report("brtun apply", args.config, agents, result, args.dry_run)
    if status == EXIT_OK and not args.dry_run and testbed_config is not None and testbed_config != path:
        shutil.copyfile(path, testbed_config)  # the testbed's copy stays its source of truth
    return status


def _report(command: str, what: str, agents: list[Target], result: Rollout, dry_run: bool) -> int:
    """Each agent's verdict and outcome, one line each; the exit status."""
    for target in agents:
        reply = result.verdicts[target.host]
        if reply["ok"]:
            print(f"{target.host}: accepts: {_describe(reply)} ({reply['steps']})")
            for change in reply.get("database", []) if dry_run else []:
                print(f"  database: {change}")
        else:
            _errors(target, reply)
    if result.rejected:
        print(f"{command}: {len(result.rejected)} of {len(agents)} agents rejected {what}; nothing applied",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if dry_run:
        print("dry run: nothing applied")
        return EXIT_OK
    for target in agents:
        if target.host in result.failed:
            _errors(target, result.failed[target.host])
        else:
            print(f"{target.host}: applied, {result.applied[target.host]['flow_changes']} flow changes, "
                  "barrier confirmed")
    if result.failed:
        print(f"{command}: {len(result.failed)} agents failed to apply; the other {len(result.applied)} "
              "went back to their previous config", file=sys.stderr)
        return EXIT_FAILED
    print(f"applied on {len(agents)} agents in {result.seconds * 1000:.0f} ms (validate everywhere, then apply)")
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    try:
        agents, _ = targets(args)
        replies = {t.host: _ask(t, {"op": "state"}) for t in agents}
    except Unreachable as error:
        print(f"brtun state: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(replies, indent=2, sort_keys=True))
        return EXIT_OK
    for host, reply in replies.items():
        edits = reply["config"]["edits"]
        if reply["config"].get("neutron"):
            print(f"{host}: config from Neutron ({reply['config']['neutron']})")
        else:
            print(f"{host}: config {reply['config']['path']}" + (f" + {len(edits)} run-time edits" if edits else ""))
        vlans = ", ".join(f"{n}={v}" for n, v in sorted(reply["local_vlans"].items()))
        print(f"  local VLANs: {vlans or 'none'}")
        for bridge, figures in sorted(reply["bridges"].items()):
            if not figures["connected"]:
                print(f"  {bridge}: not connected")
                continue
            if "error" in figures:
                print(f"  {bridge}: connected; {figures['error']}")
                continue
            print(f"  {bridge}: connected; {figures['desired']} flows desired, {figures['installed']} installed "
                  f"({figures['learned']} learned, {figures['foreign']} foreign): "
                  f"{'in sync' if figures['in_sync'] else 'DIFFERENT'}")
        counters = reply["counters"]
        print("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counters.items()))
        if "neutron" in reply:
            _print_neutron(reply["neutron"])
    return EXIT_OK


def _print_neutron(info: dict[str, Any]) -> None:
    """The Neutron source's side of `brtun state`: what arrived and what became of it."""
    print(f"  neutron: {'answering' if info['healthy'] else 'NOT ANSWERING'}; {info['local_ports']} local ports, "
          f"{info['networks']} networks, {info['endpoints']} endpoints; {info['changes']} changes "
          f"({info['flow_changes']} flow changes, {info['refused_changes']} refused); devices reported "
          f"{info['devices_up']} up, {info['devices_down']} down")
    for title, counts in (("received", info["received"]), ("outcomes", info["outcomes"]),
                          ("ignored", info["ignored"]), ("resyncs", info["resyncs"]),
                          ("failed calls", info["rpc_failures"])):
        if counts:
            print(f"    {title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def cmd_edit(args: argparse.Namespace) -> int:
    """The edit is made once, here, on the config every agent runs, then rolled out like a file."""
    fields = {k: getattr(args, k) for k in ("name", "type", "segmentation_id", "local_vlan", "network", "mac",
                                            "ip", "port_name", "local_ip", "tunnel_types", "datapath_id")
              if getattr(args, k, None) is not None}
    if "port_name" in fields:
        fields["name"] = fields.pop("port_name")
    if getattr(args, "on_host", None):
        fields["host"] = args.on_host
    try:
        agents, _ = targets(args)
        current = each(agents, lambda t: {"op": "config"})
    except Unreachable as error:
        print(f"brtun edit: {error}; nothing changed", file=sys.stderr)
        return EXIT_FAILED
    texts = {reply["text"] for reply in current.values()}
    if len(texts) != 1:
        print("brtun edit: the agents run different configs; bring them to one with `brtun apply FILE` first",
              file=sys.stderr)
        return EXIT_FAILED
    hosts = {reply["host"] for reply in current.values()}
    if "host" not in fields and args.edit in ("add-port", "remove-port") and len(hosts) > 1:
        print(f"brtun edit {args.edit}: which host is the port on? (--on-host NAME)", file=sys.stderr)
        return EXIT_BAD_INPUT
    own = hosts.pop() if len(hosts) == 1 else ""
    try:
        text = edits.apply_edit(texts.pop(), own, args.edit, fields)
    except edits.EditError as error:
        print(f"brtun edit {args.edit}: {error}; nothing changed", file=sys.stderr)
        return EXIT_BAD_INPUT
    described = f"{args.edit} {' '.join(f'{k}={v}' for k, v in sorted(fields.items()))}"
    try:
        result = rollout(agents, text, None, args.dry_run, edit=described)
    except Unreachable as error:
        print(f"brtun edit: {error}; nothing changed", file=sys.stderr)
        return EXIT_FAILED
    return _report("brtun edit", args.edit, agents, result, args.dry_run)


def _agents(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--testbed", metavar="NAME", help="the agents of this running testbed (default: the "
                                                          "only one up)")
    parser.add_argument("--host", action="append", metavar="NAME", help="only this host of the testbed "
                                                                         "(repeatable)")
    parser.add_argument("--socket", action="append", metavar="PATH", type=Path,
                        help="an agent's control socket (`brtun run --control-socket`), instead of a testbed; "
                             "repeatable")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = commands.add_parser(
        "apply", help="carry a changed config to every running agent (validate everywhere, then apply)",
        description="Validate CONFIG, ask every agent (of the running testbed, or each --socket) to "
                    "validate the change as a dry run, and only if all accept, apply it: each agent "
                    "changes its switches in steps that never send a packet with the wrong key "
                    "(new flows, then VM port tags, then the old flows go), each step one bundle "
                    "confirmed by a barrier. Unchanged flows are never touched; learned flows stay "
                    "unless their network or tunnel port goes. A rejected change changes nothing "
                    "anywhere. Exit 0 applied, 1 an agent unreachable or failed (rolled back), 2 rejected.")
    apply.add_argument("config", metavar="CONFIG", help="the new brtun YAML config")
    apply.add_argument("--dry-run", action="store_true", help="only validate, and show what would change")
    _agents(apply)
    apply.set_defaults(func=cmd_apply)

    state = commands.add_parser("state", help="ask running agents what they hold",
                                description="Each agent's config, local VLANs, bridges (connected, flows "
                                            "desired, installed, learned, foreign) and counters.")
    state.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    _agents(state)
    state.set_defaults(func=cmd_state)

    edit = commands.add_parser(
        "edit", help="change one thing on running agents (network, port, tunnel endpoint) without a file",
        description="What Neutron's server tells its agents at run time. The edit is made on the config "
                    "the agents run (they must all run the same one) and the result is validated by "
                    "every agent and applied by all, exactly like `brtun apply`; it lasts until the "
                    "next `brtun apply` or SIGHUP re-reads the config file (the file stays the source "
                    "of truth).")
    kinds = edit.add_subparsers(dest="edit", metavar="EDIT", required=True)
    net = kinds.add_parser("add-network", help="a new network (type, segmentation ID)")
    net.add_argument("name")
    net.add_argument("type", choices=("gre", "vxlan", "geneve"))
    net.add_argument("segmentation_id", type=int)
    net.add_argument("--local-vlan", type=int, help="this host's local VLAN for it (default: the lowest free)")
    gone = kinds.add_parser("remove-network", help="a network and every port on it")
    gone.add_argument("name")
    port = kinds.add_parser("add-port", help="a VM port (l2population announces it)")
    port.add_argument("network")
    port.add_argument("mac")
    port.add_argument("--ip")
    port.add_argument("--name", dest="port_name", help="its br-int port name (default: found by MAC)")
    port.add_argument("--on-host", metavar="NAME", help="the host the port is on (default: each agent's own)")
    unplug = kinds.add_parser("remove-port", help="a VM port, by MAC")
    unplug.add_argument("mac")
    unplug.add_argument("--on-host", metavar="NAME", help="the host the port is on (default: each agent's own)")
    endpoint = kinds.add_parser("add-endpoint", help="a remote host (tunnel endpoint)")
    endpoint.add_argument("name")
    endpoint.add_argument("local_ip")
    endpoint.add_argument("--tunnel-types", nargs="+", choices=("gre", "vxlan", "geneve"))
    endpoint.add_argument("--datapath-id", help="its br-tun datapath ID (default: derived from its address)")
    drop = kinds.add_parser("remove-endpoint", help="a remote host and its tunnel ports")
    drop.add_argument("name")
    for sub in (net, gone, port, unplug, endpoint, drop):
        sub.add_argument("--dry-run", action="store_true", help="only validate, and show what would change")
        _agents(sub)
        sub.set_defaults(func=cmd_edit)
