"""`brtun flows` and `brtun diff`: read a br-tun and say what is on it, against the config.

A flow source is a host of a running testbed (by name), any bridge
`ovs-ofctl` can reach (`--bridge`), or, for diff, a saved `dump-flows`
text (`--from`, e.g. taken on a real Neutron node).

`brtun diff HOST` compares with what HOST's agent runs: it asks the agent
(its control socket, op `desired`) for the flows it keeps br-tun at, which
are those of its config file plus every run-time edit, with the local VLANs
it keeps; so `brtun diff` and `brtun state` judge the same thing.  With
`--config FILE` it compares with that file instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

from controller.control import ControlError, request
from controller.takeover import parse_cookies
from flows import tables
from flows.actions import Learn
from flows.annotate import Annotation, annotate, context
from flows.config import Config, InvalidConfig, load_config
from flows.diff import Kind, diff
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from flows.flow import Flow, sorted_flows
from flows.model import BridgeModel, build_bridge
from flows.naming import tunnel_type_of
from flows.pipeline import build
from flows.textparse import FlowStats, parse_dump_stats, parse_flow
from ovshost import state as states
from ovshost.privateovs import PrivateOvs

WIDTH = 80


class SourceError(RuntimeError):
    pass


@dataclass
class Source:
    """Where the flows come from and the config that explains them."""

    label: str
    dump: str  # dump-flows text, with statistics when the switch was asked
    ports: dict[str, int] | None  # br-tun port name -> ofport, when known
    config: Config | None
    host: str | None
    running: Running | None = None  # what the host's agent runs, when it was asked


@dataclass(frozen=True)
class Running:
    """The desired br-tun a running agent keeps, and where its config came from."""

    flows: tuple[Flow, ...]
    cookie: int
    described: str  # "FILE + 2 run-time edits (...)"


def ask_agent(control_socket: Path, host: str) -> Running:
    """The flows `host`'s agent keeps br-tun at (SourceError when it cannot be asked)."""
    try:
        reply = request(control_socket, {"op": "desired", "bridge": "br-tun"}, timeout=60)
    except ControlError as error:
        raise SourceError(f"cannot ask {host}'s agent what it runs ({error}); --config FILE compares with a "
                          "file instead") from None
    if not reply.get("ok"):
        raise SourceError(f"{host}'s agent: {'; '.join(reply.get('errors', ['no reason given']))}")
    try:
        flows = tuple(parse_flow(line) for line in reply["flows"])
    except (KeyError, TypeError, ValueError) as error:
        raise SourceError(f"{host}'s agent sent flows brtun cannot read: {error}") from None
    origin = reply["config"]
    edits = origin.get("edits") or []
    described = origin.get("path") or "config text"
    if edits:
        described += f" + {len(edits)} run-time edit{'s' * (len(edits) != 1)} ({'; '.join(edits)})"
    return Running(flows, int(reply["cookie"]), described)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flows = commands.add_parser(
        "flows", help="show a br-tun's flows by table, each explained from the config",
        description="Installed flows grouped by table, each table named as Neutron names it, each flow "
                    "annotated from the config (network, local VLAN <-> key, the host behind a tunnel port; "
                    "static, learned or foreign) with its packet and byte counts and age.")
    _source_options(flows)
    flows.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    flows.set_defaults(func=cmd_flows)

    check = commands.add_parser(
        "diff", help="compare a br-tun with what the config wants (exit 1 when they differ)",
        description="Installed vs desired flows: missing, extra and different flows, learned flows (kept, or "
                    "stale) and foreign flows apart. Exit status 0 in sync, 1 different, 2 bad input.")
    _source_options(check)
    check.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                       help="a saved `ovs-ofctl -O OpenFlow13 dump-flows br-tun` instead of a live bridge")
    check.add_argument("--ports", type=Path, metavar="FILE",
                       help="with --from: a saved `ovs-ofctl show br-tun`, so the config's flows use the dump's "
                            "port numbers (normalises ofports)")
    check.add_argument("--ignore-cookies", action="store_true",
                       help="treat every cookie as brtun's (a Neutron dump has its own random cookie)")
    check.add_argument("--takeover", nargs="?", const="all", metavar="COOKIES",
                       help="report what `brtun run --takeover` would do with the flows of these cookies "
                            "(default: every other cookie in the bridge): replaced in place, deleted, learned kept")
    check.set_defaults(func=cmd_diff)


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", nargs="?", metavar="HOST", help="a host of a running testbed")
    parser.add_argument("--bridge", metavar="TARGET", help="any bridge ovs-ofctl reaches (br-tun, unix:PATH, ...)")
    parser.add_argument("--config", type=Path, help="compare with this config file (default: diff HOST compares "
                        "with what HOST's agent runs, asked over its control socket; flows uses the testbed's file)")
    parser.add_argument("--as-host", dest="as_host", metavar="NAME",
                        help="which host of the config the bridge is (default: HOST)")


def _ports_from_show(text: str) -> dict[str, int]:
    """`ovs-ofctl show` lines ` 2(gre-c0a8640d): addr:...` -> name -> ofport."""
    ports = {}
    for line in text.splitlines():
        head = line.strip().split(":", 1)[0]
        number, _, rest = head.partition("(")
        if rest.endswith(")") and number.isdigit():
            ports[rest[:-1]] = int(number)
    return ports


def _ofctl(target: str, *argv: str) -> str:
    result = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *argv, target], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SourceError(f"ovs-ofctl {' '.join(argv)} {target}: {result.stderr.strip()}")
    return result.stdout


def _load(path: Path) -> Config:
    try:
        return load_config(str(path))
    except InvalidConfig as error:
        raise SourceError(f"{path}: invalid config:\n{error}") from None


def source(args: argparse.Namespace, ask: bool = False) -> Source:
    """Where the flows come from; `ask`: a testbed host's desired flows come from its agent."""
    config = _load(args.config) if args.config else None
    host = args.as_host or args.host
    if getattr(args, "from_file", None):
        ports = _ports_from_show(args.ports.read_text()) if getattr(args, "ports", None) else None
        return Source(str(args.from_file), args.from_file.read_text(), ports, config, host)
    if args.bridge:
        return Source(args.bridge, _ofctl(args.bridge, "dump-flows"), _ports_from_show(_ofctl(args.bridge, "show")),
                      config, host)
    if not args.host:
        raise SourceError("name a HOST of a running testbed, or give --bridge TARGET (or --from FILE for diff)")
    try:
        state, found = states.find_host(args.host)
    except states.NoTestbed as error:
        raise SourceError(str(error)) from None
    ovs = PrivateOvs(found.netns, Path(found.rundir))
    running = ask_agent(found.control_socket, args.host) if ask and config is None else None
    ports = _ports_from_show(ovs.ofctl("show", "br-tun"))
    return Source(f"br-tun of {args.host} (testbed {state.name})", ovs.ofctl("dump-flows", "br-tun"), ports,
                  config or _load(Path(state.config)), host, running)


def _model_flows(src: Source) -> tuple[BridgeModel, tuple[Flow, ...]] | tuple[None, tuple[()]]:
    if src.config is None or src.host is None:
        return None, ()
    if src.host not in src.config.host_names:
        raise SourceError(f"no host {src.host!r} in the config (hosts: {', '.join(src.config.host_names)})")
    observed = {name: number for name, number in src.ports.items()
                if name == "patch-int" or tunnel_type_of(name)} if src.ports else None
    model = build_bridge(src.config, src.host, observed_ofports=observed)
    return model, build(model)


def _age(stats: FlowStats) -> str:
    if stats.packets is None:
        return ""
    age = f", age {stats.duration:.0f} s" if stats.duration is not None else ""
    idle = f", idle {stats.idle_age:.0f} s" if stats.idle_age is not None else ""
    return f"{stats.packets} packets, {stats.bytes} bytes{age}{idle}"


def cmd_flows(args: argparse.Namespace) -> int:
    try:
        src = source(args)
        model, _ = _model_flows(src)
    except SourceError as error:
        print(f"brtun flows: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    entries = parse_dump_stats(src.dump)
    ctx = context(model) if model is not None else None
    rows = []
    for flow, stats in sorted(entries, key=lambda e: e[0].sort_key()):
        note = annotate(ctx, flow) if ctx else None
        rows.append({"table": flow.table, "table_name": tables.table_name(flow.table), "priority": flow.priority,
                     "kind": note.kind if note else "unknown", "annotation": note.text if note else "",
                     "flow": flow.render().strip(), "short": _short(flow, note), "packets": stats.packets,
                     "bytes": stats.bytes, "age": stats.duration, "idle_age": stats.idle_age})
    if args.json:
        json.dump({"source": src.label, "host": src.host, "flows": rows}, sys.stdout, indent=2)
        print()
        return EXIT_OK
    counts = {kind: sum(r["kind"] == kind for r in rows) for kind in ("static", "learned", "foreign")}
    print(f"{src.label}: {len(rows)} flows ({counts['static']} static, {counts['learned']} learned, "
          f"{counts['foreign']} foreign)")
    current = None
    for row, (_, stats) in zip(rows, sorted(entries, key=lambda e: e[0].sort_key()), strict=True):
        if row["table"] != current:
            current = row["table"]
            spec = tables.TABLES.get(current)
            heading = f"table {current} {row['table_name']}" + (f": {spec.role}" if spec else "")
            print()
            print("\n".join(textwrap.wrap(heading, WIDTH, subsequent_indent="    ")))
        _print_wrapped(f"  {row['kind']:<8}", row["short"])
        if row["annotation"]:
            _print_wrapped("          ", row["annotation"])
        if _age(stats):
            print(f"          {_age(stats)}")
    return EXIT_OK


def _short(flow: Flow, note: Annotation | None) -> str:
    """The flow as the switch prints it, minus what the listing already says (table; our cookie)."""
    text = flow.render().strip()
    head = f"cookie={flow.cookie:#x}, " if flow.cookie else ""
    if note is not None and note.kind != "foreign":
        text = text.removeprefix(head)
        head = ""
    return text.replace(f"{head}table={flow.table}, ", head, 1) if flow.table else text


def _print_wrapped(prefix: str, text: str) -> None:
    """Wrap at commas and spaces (flow text has few spaces), continuation lines indented."""
    width = WIDTH - len(prefix) - 2
    lines: list[str] = []
    current = ""
    for piece in text.replace(",", ",\0").replace(" ", " \0").split("\0"):
        if current and len(current) + len(piece) > width:
            lines.append(current.rstrip())
            current = ""
        current += piece
    lines.append(current.rstrip())
    print(prefix + lines[0])
    for line in lines[1:]:
        print(" " * len(prefix) + "  " + line)


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        src = source(args, ask=True)
        if src.config is None or src.host is None:
            raise SourceError("diff needs the config (--config) and which host the bridge is (HOST or --as-host)")
        if src.running is not None:
            desired, cookie = src.running.flows, src.running.cookie
            against = f"what {src.host}'s agent runs: {src.running.described}"
        else:
            desired, cookie = _model_flows(src)[1], src.config.cookie
            against = f"{src.host}'s desired br-tun"
    except SourceError as error:
        print(f"brtun diff: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    assert src.config is not None
    installed = [flow for flow, _ in parse_dump_stats(src.dump)]
    if args.ignore_cookies:  # the flows' cookies, and the one each learn action stamps
        installed = [replace(f, cookie=cookie, actions=tuple(replace(a, cookie=cookie) if isinstance(a, Learn)
                                                             else a for a in f.actions)) for f in installed]
    try:
        named = parse_cookies(args.takeover) if args.takeover is not None else frozenset()
    except ValueError as error:
        print(f"brtun diff: --takeover: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    takeover = named if named is not None else frozenset(f.cookie for f in installed) - {cookie}
    result = diff(desired, installed, cookie, takeover)
    taken = [c for c in result.changes if c.reason.startswith("taken over")]
    result = replace(result, changes=tuple(c for c in result.changes if c not in taken))
    missing, different, extra = (result.of_kind(k) for k in (Kind.ADD, Kind.MODIFY, Kind.DELETE))
    stale = [c for c in extra if c.reason.startswith("stale")]
    extra = tuple(c for c in extra if not c.reason.startswith("stale"))
    print(f"{src.label} vs {against}: {len(desired)} desired, {len(installed)} installed")
    sections = [
        ("missing (the config wants them, the switch lacks them)", [("+", c.flow) for c in missing]),
        ("extra (brtun's cookie, not in the config)", [("-", c.flow) for c in extra]),
        ("different (same table, priority and match; other actions)", [("~", c.flow) for c in different]),
        ("stale learned flows (their network or tunnel port is gone)", [("-", c.flow) for c in stale]),
        ("foreign flows in the place of desired ones", [("!", f) for f, _ in result.conflicts]),
    ]
    if args.takeover is not None:
        cookies = ", ".join(f"{cookie:#x}" for cookie in sorted(takeover)) or "none"
        sections += [
            (f"taken over in place (cookie {cookies} -> {cookie:#x}; same table, priority, match)",
             [(">", c.flow) for c in taken if c.kind is Kind.ADD]),
            ("taken over and deleted (not in the config)", [("-", c.flow) for c in taken if c.kind is Kind.DELETE]),
        ]
    for title, lines in sections:
        print(f"{title}: {len(lines)}")
        for sign, flow in sorted(lines, key=lambda item: item[1].sort_key()):
            print(f"  {sign} {flow.render().strip()}")  # whole lines: operators copy them into ovs-ofctl
            if sign == "~":
                old = next(c.old for c in different if c.flow == flow)
                assert old is not None
                print(f"    was actions={old.render_actions()}")
    print(f"learned flows (kept): {len(result.learned)}")
    print(f"foreign flows (other cookies, never touched): {len(result.foreign)}")
    for flow in sorted_flows(result.foreign):
        print(f"  ? {flow.render().strip()}")
    differs = bool(missing or extra or different or stale or result.conflicts or taken)
    print("DIFFERENT" if differs else "IN SYNC")
    return EXIT_FAILED if differs else EXIT_OK
