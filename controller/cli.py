"""`brtun`: the command line.

Exit status (flows.exitstatus): 0 success, 1 a difference or failed check,
2 bad input (invalid config, unknown host, usage error), as `diff` and
`grep` do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from controller.endpoints import Listen, Tls, default_listen
from controller.launcher import DEFAULT_METRICS_PORT
from flows import collector
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_OK

if TYPE_CHECKING:
    from flows.config import Config

# The modules that declare the other commands (`add_commands`), by command: a command's own module is
# the only one imported to run it (`brtun apply` is a short-lived client: every import is start-up time).
COMMAND_MODULES = {
    "flows": "controller.inspect", "diff": "controller.inspect",
    "apply": "controller.remote", "state": "controller.remote", "edit": "controller.remote",
    "trace": "controller.trace", "replay": "controller.replay",
    "demo": "mininet_topos.cli", "testbed": "mininet_topos.cli",
}

OWN_COMMANDS = ("check", "render", "run")  # defined here

DESCRIPTION = """\
brtun reimplements OpenStack Neutron's tunnel bridge (br-tun) as an os-ken
OpenFlow controller: each network's local VLAN <-> GRE/VXLAN/Geneve key,
MAC learning in the switch, split-horizon flooding, l2population and the
ARP responder, with Neutron's tables and flows.
"""


def _load(path: str) -> Config:
    from flows.config import InvalidConfig, load_config

    try:
        return load_config(path)
    except InvalidConfig as error:
        for problem in error.errors:
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"{path}: {_count(len(error.errors), 'error')}; nothing applied", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def cmd_check(args: argparse.Namespace) -> int:
    with collector.paused():  # a 100k-flow config is 300k values, none in a cycle
        config = _load(args.config)
    print(f"{args.config}: valid ({_count(len(config.networks), 'network')}, "
          f"{_count(len(config.hosts), 'host')})")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    with collector.paused():  # the config, then every flow: objects the collector would only walk
        return _render(args)


def _render(args: argparse.Namespace) -> int:
    from flows.flow import render_flows
    from flows.model import build_bridge
    from flows.pipeline import build

    config = _load(args.config)
    if args.host is not None and args.host not in config.host_names:
        print(f"brtun render: no host {args.host!r} in {args.config} "
              f"(hosts: {', '.join(config.host_names)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.host is not None:
        sys.stdout.write(render_flows(build(build_bridge(config, args.host))))
        return EXIT_OK
    for name in config.host_names:
        sys.stdout.write(f"# host {name}\n")
        sys.stdout.write(render_flows(build(build_bridge(config, name))))
    return EXIT_OK


def _listen(text: str) -> Listen:
    try:
        return Listen.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from controller.launcher import RunOptions, default_ovsdb_target, run  # os-ken's, and only `run`'s
    from controller.takeover import parse_cookies
    from ovshost.datapath import datapath_type

    if (args.config is None) == (not args.neutron):
        print("brtun run: give a CONFIG file or --neutron CONF (Neutron's agent config), one of the two",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.no_switch and not args.neutron:
        print("brtun run: --no-switch goes with --neutron", file=sys.stderr)
        return EXIT_BAD_INPUT
    tls_files = (args.ssl_key, args.ssl_cert, args.ssl_ca_cert)
    if any(tls_files) and not all(tls_files):
        print("brtun run: TLS needs all three of --ssl-key, --ssl-cert and --ssl-ca-cert", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        takeover = parse_cookies(args.takeover) if args.takeover is not None else None
    except ValueError as error:
        print(f"brtun run: --takeover: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    listen = args.listen or (Listen("tcp", host="127.0.0.1", port=6653) if all(tls_files)
                             else default_listen(args.host))
    if all(tls_files) and listen.kind == "unix":
        print("brtun run: TLS is for TCP; a unix socket needs none (only root can reach it)", file=sys.stderr)
        return EXIT_BAD_INPUT
    kind = args.datapath_type if args.datapath_type != "auto" else datapath_type()
    ovsdb = args.ovsdb or default_ovsdb_target()
    control = None if args.control_socket == "none" else (
        args.control_socket or f"/run/brtun/agent-{args.host}.sock")
    return run(RunOptions(config_path=args.config, host=args.host, ovsdb=ovsdb,
                          listen=listen, hub=args.hub, datapath_type=kind, pidfile=args.pidfile,
                          log_file=args.log_file, verbose=args.verbose, control_socket=control,
                          metrics_port=args.metrics_port or None,
                          tls=Tls(*tls_files) if all(tls_files) else None,
                          takeover=args.takeover is not None, takeover_cookies=takeover,
                          neutron=tuple(args.neutron or ()), no_switch=args.no_switch))


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """brtun's parser; for a `command` of COMMAND_MODULES, with only that module's commands besides
    check, render and run (the full parser imports every command module)."""
    top = argparse.ArgumentParser(prog="brtun", description=DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check", help="validate a config; print every error (exit 0 valid, 2 invalid)",
        description="Validate CONFIG and print every error at once, each with the path of "
                    "the field and the reason. Exit status 0 when valid, 2 when not.")
    check.add_argument("config", metavar="CONFIG", help="the brtun YAML config")
    check.set_defaults(func=cmd_check)

    render = commands.add_parser(
        "render", help="print the flows each host's br-tun should hold",
        description="Print each host's desired br-tun flows exactly as "
                    "`ovs-ofctl -O OpenFlow13 --no-stats dump-flows br-tun` prints them, "
                    "sorted by table, then descending priority, then text. Without --host, "
                    "every host, each after a '# host NAME' line. Learned flows are not "
                    "shown: the switch writes them.")
    render.add_argument("config", metavar="CONFIG", help="the brtun YAML config")
    render.add_argument("--host", metavar="NAME", help="only this host, without the header line")
    render.set_defaults(func=cmd_render)

    run = commands.add_parser(
        "run", help="run the agent that owns this host's br-tun (one per host, like Neutron's)",
        description="Run the per-host agent: make br-tun, br-int, the patch ports and the tunnel "
                    "ports exist in the switch database with Neutron's names and options, tag "
                    "VM ports on br-int, listen for both bridges' OpenFlow connections, and "
                    "keep their flows equal to `brtun render` (read back, diff, send only the "
                    "difference in one bundle). It repairs a wiped table or a restarted switch "
                    "(each table's flow count is its canary). SIGHUP re-reads CONFIG and applies "
                    "the change as `brtun apply` does; SIGTERM stops it and leaves every flow in place.")
    run.add_argument("config", metavar="CONFIG", nargs="?", help="the brtun YAML config (or --neutron)")
    run.add_argument("--host", required=True, metavar="NAME",
                     help="which host of the config this is (with --neutron: the host name Neutron binds ports to)")
    run.add_argument("--neutron", action="append", metavar="CONF",
                     help="take the config from neutron-server over its agent RPC (RabbitMQ), as "
                          "neutron-openvswitch-agent does; CONF: Neutron's agent config files (neutron.conf, "
                          "openvswitch_agent.ini; give --neutron once per file), read with Neutron's option names; "
                          "see docs/NEUTRON.md")
    run.add_argument("--no-switch", action="store_true",
                     help="with --neutron: no switch; compute each host's br-tun and report only (the scale "
                          "benchmark's agents)")
    run.add_argument("--ovsdb", metavar="unix:PATH",
                     help="the switch database (default: the one ovs-vsctl uses, $OVS_RUNDIR/db.sock)")
    run.add_argument("--listen", type=_listen, metavar="unix:PATH|HOST:PORT",
                     help="where the bridges connect (default unix:/run/brtun/openflow-HOST.sock, a socket only "
                          "root can reach; HOST:PORT is TCP, where a local peer must run as root)")
    run.add_argument("--hub", choices=("eventlet", "native"), default="eventlet",
                     help="os-ken's hub (default eventlet, as Neutron's agent runs)")
    run.add_argument("--datapath-type", choices=("auto", "netdev", "system"), default="auto",
                     help="datapath for bridges brtun creates: system where the openvswitch "
                          "kernel module exists, else the userspace netdev (default auto)")
    run.add_argument("--pidfile", metavar="PATH", help="write the agent's PID here")
    run.add_argument("--log-file", metavar="PATH", help="also log here")
    run.add_argument("--control-socket", metavar="PATH",
                     help="the unix socket `brtun apply/state/edit` talk to (default "
                          "/run/brtun/agent-HOST.sock; 'none' for no socket)")
    run.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, metavar="PORT",
                     help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics "
                          f"(default {DEFAULT_METRICS_PORT}; 0: off)")
    run.add_argument("--ssl-key", metavar="PEM", help="TLS: the agent's private key (with --ssl-cert and "
                                                      "--ssl-ca-cert, the switches must connect with ssl:)")
    run.add_argument("--ssl-cert", metavar="PEM", help="TLS: the agent's certificate")
    run.add_argument("--ssl-ca-cert", metavar="PEM",
                     help="TLS: the CA certificate the switch's certificate must be signed by")
    run.add_argument("--takeover", nargs="?", const="all", metavar="COOKIES",
                     help="take over a br-tun (and br-int) another agent programmed, e.g. Neutron's: flows of these "
                          "cookies (comma-separated, e.g. 0x8a1b...; default: every cookie found at the first read) "
                          "that hold a desired flow's place are replaced in place in one bundle, learned ones are "
                          "kept, the rest deleted; see `brtun diff --from DUMP --takeover`")
    run.add_argument("-v", "--verbose", action="store_true", help="log every flow change")
    run.set_defaults(func=cmd_run)

    if command in COMMAND_MODULES:
        modules: Iterable[str] = [COMMAND_MODULES[command]]
    elif command in OWN_COMMANDS:
        modules = []  # check, render and run start without the other commands' modules (~50 ms)
    else:
        modules = dict.fromkeys(COMMAND_MODULES.values())
    for name in modules:
        importlib.import_module(name).add_commands(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `brtun render ... | head`
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
