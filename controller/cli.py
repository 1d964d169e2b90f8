"""`brtun`: the command line.

Exit status (flows.exitstatus): 0 success, 1 a difference or failed check,
2 bad input (invalid config, unknown host, usage error), as `diff` and
`grep` do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import collector, inspect, remote, replay, trace
from controller.launcher import DEFAULT_METRICS_PORT, RunOptions, Tls, default_ovsdb_target, run
from controller.takeover import parse_cookies
from flows.config import Config, InvalidConfig, load_config
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_OK
from flows.flow import render_flows
from flows.model import build_bridge
from flows.pipeline import build
from mininet_topos import cli as testbed_cli
from ovshost.datapath import datapath_type

DESCRIPTION = """\
brtun reimplements OpenStack Neutron's tunnel bridge (br-tun) as an os-ken
OpenFlow controller: each network's local VLAN <-> GRE/VXLAN/Geneve key,
MAC learning in the switch, split-horizon flooding, l2population and the
ARP responder, with Neutron's tables and flows.
"""


def _load(path: str) -> Config:
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


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:6653)")
    return host, int(port)


def cmd_run(args: argparse.Namespace) -> int:
    listen_host, listen_port = args.listen
    tls_files = (args.ssl_key, args.ssl_cert, args.ssl_ca_cert)
    if any(tls_files) and not all(tls_files):
        print("brtun run: TLS needs all three of --ssl-key, --ssl-cert and --ssl-ca-cert", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        takeover = parse_cookies(args.takeover) if args.takeover is not None else None
    except ValueError as error:
        print(f"brtun run: --takeover: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    kind = args.datapath_type if args.datapath_type != "auto" else datapath_type()
    ovsdb = args.ovsdb or default_ovsdb_target()
    control = None if args.control_socket == "none" else (
        args.control_socket or f"/run/brtun/agent-{args.host}.sock")
    return run(RunOptions(config_path=args.config, host=args.host, ovsdb=ovsdb, listen_host=listen_host,
                          listen_port=listen_port, hub=args.hub, datapath_type=kind, pidfile=args.pidfile,
                          log_file=args.log_file, verbose=args.verbose, control_socket=control,
                          metrics_port=args.metrics_port or None,
                          tls=Tls(*tls_files) if all(tls_files) else None,
                          takeover=args.takeover is not None, takeover_cookies=takeover))


def parser() -> argparse.ArgumentParser:
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
    run.add_argument("config", metavar="CONFIG", help="the brtun YAML config")
    run.add_argument("--host", required=True, metavar="NAME", help="which host of the config this is")
    run.add_argument("--ovsdb", metavar="unix:PATH",
                     help="the switch database (default: the one ovs-vsctl uses, $OVS_RUNDIR/db.sock)")
    run.add_argument("--listen", type=_listen, default=("127.0.0.1", 6653), metavar="HOST:PORT",
                     help="where the bridges connect (default 127.0.0.1:6653)")
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

    for module in (inspect, remote, trace, replay, testbed_cli):
        module.add_commands(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `brtun render ... | head`
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
