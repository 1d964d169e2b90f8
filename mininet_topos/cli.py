"""`brtun testbed up|down|status` and `brtun demo`: the testbeds from the command line.

Mininet is imported only when a testbed command runs: `topology`, `checks`
and `safecli` import it, so they are imported inside the commands that need
them, and the rest of `brtun` starts without Mininet and works where it is
not installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flows.config import InvalidConfig, load_config
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from mininet_topos.mesh import MAX_HOSTS, mesh_yaml
from mininet_topos.spec import InvalidTestbed, testbed_spec
from ovshost import kernelvm, pids
from ovshost import state as states
from ovshost.datapath import datapath_type, kernel_datapath_available, kernel_datapaths, summary

if TYPE_CHECKING:  # these import Mininet: only the commands that build a testbed load them
    from mininet_topos.topology import Built

PROJECT = Path(__file__).resolve().parent.parent
SEED = PROJECT / "examples" / "seed.yaml"
GUEST_AGENT_TIMEOUT = 600.0  # under software emulation an agent takes ~20 s to import os-ken, three at once more


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    testbed = commands.add_parser(
        "testbed", help="bring a Mininet testbed up, down, or show it",
        description="Testbeds rebuild the seed's network (or an N-host mesh) from a config: each simulated "
                    "host runs its own Open vSwitch and brtun agent in its own network namespace. "
                    "A testbed stays up after `up` returns; its state lives in /run/brtun/testbeds/NAME.")
    actions = testbed.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="build a testbed and leave it running",
                            description="Build the testbed of CONFIG (default: the seed, examples/seed.yaml) "
                                        "or, with --hosts N, an N-host mesh, and leave it running.")
    _build_options(up)
    up.set_defaults(func=cmd_up)
    down = actions.add_parser("down", help="stop and remove a testbed (also after a crash)",
                              description="Stop every daemon the testbed started (by PID) and delete every "
                                          "namespace it made. Works after a crash of whatever built it.")
    down.add_argument("name", nargs="?", help="the testbed (default: the only one up)")
    down.add_argument("--all", action="store_true", help="every testbed that is up")
    down.set_defaults(func=cmd_down)
    status = actions.add_parser("status", help="show running testbeds, their hosts and daemons")
    status.add_argument("name", nargs="?", help="one testbed (default: all)")
    status.set_defaults(func=cmd_status)

    demo = commands.add_parser(
        "demo", help="bring up the seed's network, check it end to end, tear it down",
        description="Bring up the seed's network (two compute hosts and a network host joined by GRE) under "
                    "brtun agents, let the VMs get their addresses by DHCP, run every check with one line "
                    "each (pass/fail and its figure), show the network host's `ovs-vsctl show` and a "
                    "compute host's br-tun flows, and tear everything down. Exit 0 only if every check passed.")
    _build_options(demo)
    demo.add_argument("--cli", action="store_true",
                      help="after the checks, keep the testbed up with the Mininet CLI until you exit it")
    demo.add_argument("--kernel", action="store_true",
                      help="on the OVS kernel datapath: here if the openvswitch module is loaded, else inside a "
                           "QEMU guest that boots the distribution's kernel (virtme-ng; about 3 minutes under "
                           "software emulation)")
    demo.add_argument("--kernel-image", metavar="VMLINUZ",
                      help="with --kernel: the kernel to boot (default: the newest /boot/vmlinuz-* with the module)")
    demo.set_defaults(func=cmd_demo)


def _build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=Path, help="a brtun config with a testbed section "
                        "(default: examples/seed.yaml)")
    parser.add_argument("--hosts", type=int, metavar="N", help=f"an N-host mesh instead (2..{MAX_HOSTS})")
    parser.add_argument("--hub", choices=("eventlet", "native"), default="eventlet", help="the agents' os-ken hub")
    parser.add_argument("--datapath-type", choices=("auto", "netdev", "system"), default="auto",
                        help="auto: the kernel datapath where the openvswitch module is loaded, else netdev")
    parser.add_argument("--neutron", action="store_true",
                        help="a real neutron-server (MariaDB, RabbitMQ, its API and RPC server) on the underlay "
                             "drives the agents (brtun run --neutron); the network, subnet and ports are made "
                             "through its REST API (docs/NEUTRON.md)")


def _config_path(args: argparse.Namespace) -> tuple[Path, str]:
    if args.hosts is not None:
        if args.config is not None:
            raise SystemExit("brtun: give a CONFIG or --hosts, not both")
        if not 2 <= args.hosts <= MAX_HOSTS:
            raise SystemExit(f"brtun: --hosts takes 2..{MAX_HOSTS} on this machine, not {args.hosts}")
        path = Path(tempfile.mkdtemp(prefix="brtun-mesh-")) / "mesh.yaml"
        path.write_text(mesh_yaml(args.hosts))
        return path, "mesh"
    return (args.config or SEED), "seed"


def _datapath(choice: str) -> str:
    detected = datapath_type() if choice == "auto" else choice
    if detected == "system" and choice == "auto":
        print("*** the openvswitch kernel module is loaded: using the kernel datapath "
              "(--datapath-type netdev for the userspace one)", file=sys.stderr)
    return detected


def datapath_line(built: Built) -> str:
    """What the hosts' switches really run on, from the kernel where it is the kernel's."""
    kind = built.state.datapath_type
    if kind == "system":
        shown = sorted(built.hosts)
        first = kernel_datapaths(shown[0])
        release = os.uname().release
        where = " in a QEMU guest" if kernelvm.in_guest() else ""
        return (f"datapath: kernel (system), Linux {release}{where}; each host's namespace has its own; "
                f"{shown[0]}'s `ovs-dpctl show`: {summary(first)}")
    why = "as asked" if kernel_datapath_available() else "this kernel has no openvswitch module"
    return f"datapath: userspace ({kind}@ovs-{kind}), {why}"


def _build(args: argparse.Namespace) -> Built:
    from mininet_topos.topology import BuildOptions, Testbed  # imports Mininet

    path, kind = _config_path(args)
    try:
        config = load_config(str(path))
        spec = testbed_spec(config, default_name=kind)
    except (InvalidConfig, InvalidTestbed) as error:
        for problem in error.errors:
            print(f"{path}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    options = BuildOptions(hub=args.hub, datapath_type=_datapath(args.datapath_type), neutron=args.neutron,
                           agent_timeout=GUEST_AGENT_TIMEOUT if kernelvm.in_guest() else 60)
    try:
        return Testbed(path, config, spec, options, kind=kind).up()
    except FileExistsError as error:
        raise SystemExit(f"brtun: {error}") from None


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    built = _build(args)
    print(f"testbed {built.state.name} is up in {time.monotonic() - started:.1f} s: "
          f"{len(built.hosts)} hosts, {len(built.vms)} VMs")
    if built.neutron is not None:
        print(f"  neutron-server on {built.state.neutron['address']} (controller namespace): API "
              f"http://{built.state.neutron['address']}:9696 and {built.state.neutron['api_socket']}, "
              f"{len(built.state.neutron['ports'])} ports bound; agents run brtun run --neutron")
    print(f"  namespaces: {' '.join(built.state.namespaces)}")
    print(f"  e.g. sudo ip netns exec {built.spec.vms[0].name} ping {built.spec.vms[-1].ip}")
    print(f"  stop it with: brtun testbed down {built.state.name}")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    names = states.names() if args.all else [args.name] if args.name else states.names()
    if not args.all and not args.name and len(names) > 1:
        raise SystemExit(f"brtun: several testbeds are up ({', '.join(names)}): name one, or use --all")
    if not names:
        print("no testbed is up")
        return EXIT_OK
    for name in names:
        try:
            state = states.load(name)
        except states.NoTestbed as error:
            raise SystemExit(f"brtun: {error}") from None
        started = time.monotonic()
        for line in states.down(state):
            print(f"  {line}")
        print(f"testbed {name} is down ({time.monotonic() - started:.1f} s)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else states.names()
    if not names:
        print("no testbed is up")
        return EXIT_OK
    for name in names:
        state = states.load(name)
        print(f"testbed {name} ({state.kind}, {state.status}, {state.datapath_type} datapath), "
              f"state in {state.directory}")
        for host in state.hosts.values():
            print(f"  {host.name:<12} {host.role:<8} {host.local_ip:<16} agent {host.agent_listen}, "
                  f"log {host.agent_log}")
        for vm, info in state.vms.items():
            print(f"  {vm:<12} vm       {info['ip'] or '-':<16} on {info['host']}, network {info['network']}")
        if state.neutron:
            print(f"  neutron-server on {state.neutron['address']} ({state.neutron['namespace']} namespace): "
                  f"API {state.neutron['api_socket']}, {len(state.neutron.get('ports', {}))} ports bound")
        alive = [d for d in state.daemons if pids.owned_pid(Path(d.pidfile), d.marker)]
        print(f"  daemons: {len(alive)}/{len(state.daemons)} running; namespaces: "
              f"{sum(states.namespace_exists(n) for n in state.namespaces)}/{len(state.namespaces)}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    if args.kernel:
        if args.cli:
            raise SystemExit("brtun: --kernel runs without a terminal in the guest: --cli is not available there")
        if args.datapath_type not in ("auto", "system"):
            raise SystemExit(f"brtun: --kernel is the system datapath, not {args.datapath_type}")
        if not kernel_datapath_available():
            return _demo_in_guest(args)
        print("*** the openvswitch kernel module is loaded here: the demo runs on this host's kernel datapath",
              file=sys.stderr)
        args.datapath_type = "system"
    from mininet_topos import checks  # imports Mininet (through topology)

    started = time.monotonic()
    built = _build(args)
    up_seconds = time.monotonic() - started
    results: list[checks.Check] = []
    try:
        driven = "; driven by neutron-server" if built.neutron is not None else ""
        print(f"\n{built.state.name}: up in {up_seconds:.1f} s ({len(built.hosts)} hosts, {len(built.vms)} VMs, "
              f"{built.state.datapath_type} datapath{driven})")
        print(datapath_line(built), flush=True)
        if built.neutron is not None:
            timings = built.timings
            print(f"neutron-server ready at {timings['neutron_server']:.1f} s ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in built.neutron.timings.items())
                  + f"); ports made through the API at {timings['neutron_ports']:.1f} s, all ACTIVE at "
                  f"{timings['ports_active']:.1f} s")
        print(flush=True)
        bed = checks.Bed(built.state, built.spec, built.config)
        if built.state.kind == "seed":
            results = checks.seed_checks(bed, built.timings["addresses"] - built.timings["plumbed"])
        else:
            results = checks.mesh_checks(bed)
        for result in results:
            print(result.line(), flush=True)
        if built.neutron is not None:
            for result in checks.neutron_port_lifecycle(bed):
                print(result.line(), flush=True)
                results.append(result)
        _show(built)
        if args.cli:
            from mininet_topos.safecli import SafeCLI  # imports Mininet

            SafeCLI(built.net)
    finally:
        down_started = time.monotonic()
        built.close()
        print(f"\ntestbed down in {time.monotonic() - down_started:.1f} s")
    passed = sum(result.ok for result in results)
    print(f"{passed}/{len(results)} checks passed in {time.monotonic() - started:.1f} s")
    return EXIT_OK if results and passed == len(results) else EXIT_FAILED


def _demo_in_guest(args: argparse.Namespace) -> int:
    """The same demo, inside a QEMU guest with the distribution's kernel (ovshost.kernelvm)."""
    argv = [sys.executable, "-m", "controller.cli", "demo", "--datapath-type", "system", "--hub", args.hub]
    if args.config is not None:
        argv.append(str(args.config.resolve()))
    if args.hosts is not None:
        argv += ["--hosts", str(args.hosts)]
    started = time.monotonic()
    try:
        kernel = kernelvm.find_kernel(args.kernel_image)
        print(f"*** no openvswitch module in this kernel: booting {kernel.describe()} in a QEMU guest",
              file=sys.stderr, flush=True)
        result = kernelvm.Guest(kernel, argv, PROJECT).run(
            on_line=lambda line: print(line, flush=True),
            on_boot=lambda line: print(f"*** {line}", file=sys.stderr, flush=True))
    except kernelvm.KernelVmError as error:
        print(f"brtun demo --kernel: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"*** the guest ran the demo in {result.seconds:.0f} s (boot {result.boot_seconds:.0f} s, "
          f"{result.accel}); exit status {result.status}", file=sys.stderr)
    print(f"demo --kernel: {time.monotonic() - started:.0f} s in all")
    return result.status


def _show(built: Built) -> None:
    network_hosts = built.spec.network_hosts or list(built.hosts)
    shown = network_hosts[0]
    compute = next((vm.host for vm in built.spec.vms), shown)
    print(f"\n# {shown}: ovs-vsctl show")
    print(built.hosts[shown].vsctl("show").rstrip())
    print(f"\n# {compute}: ovs-ofctl -O OpenFlow13 --no-stats dump-flows br-tun")
    print(built.hosts[compute].ovs.ofctl("--no-stats", "dump-flows", "br-tun").rstrip())
    if built.spec.router is not None:
        namespace = built.spec.router.namespace
        print(f"\n# ip netns exec {namespace} iptables -t nat -S")
        result = subprocess.run(["ip", "netns", "exec", namespace, "iptables", "-t", "nat", "-S"],
                                capture_output=True, text=True, check=False)
        print(result.stdout.rstrip())
