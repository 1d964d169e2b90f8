"""`brtun replay`: run replay cases on the simulator, or on a real switch with --live; record new ones."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from flows.diff import diff
from flows.exitstatus import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from flows.replay import (
    Case,
    CaseError,
    Reconfigure,
    StepResult,
    bridge_ports,
    case_from_data,
    desired_flows,
    expectation_of,
    load_case,
    outcome,
    problems,
    run_offline,
    tunnel_endpoints,
)
from ovshost.datapath import datapath_type
from ovshost.scratch import ScratchSwitch


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay", help="replay flow-table test cases on the simulator (or --live on Open vSwitch)",
        description="Run each case file's packets through the host's br-tun: on flows.simulator (milliseconds, "
                    "no switch), or with --live on a scratch Open vSwitch bridge with the same ports and flows, "
                    "packet by packet through `ovs-appctl ofproto/trace -generate`, reset for each case. One line "
                    "per packet and a summary; exit status 1 on any mismatch. With --record, run the given "
                    "packets on the live switch and write a case file that expects what it did.")
    replay.add_argument("files", nargs="*", type=Path, metavar="FILE", help="case files (YAML)")
    replay.add_argument("--live", action="store_true", help="on a real Open vSwitch (needs root)")
    replay.add_argument("--datapath-type", choices=("auto", "netdev", "system"), default="auto",
                        help="with --live: the scratch bridge's datapath; auto: the kernel's (system) where the "
                             "openvswitch module is loaded, else the userspace one")
    replay.add_argument("--record", metavar="CONFIG", type=Path,
                        help="record a case: run --packet ... on the live switch with this config")
    replay.add_argument("--host", help="with --record: the host of the config")
    replay.add_argument("--packet", action="append", default=[], metavar="FIELDS",
                        help="with --record: in_port=NAME,field=value,... [advance=SECONDS] (repeatable)")
    replay.add_argument("-o", "--output", type=Path, help="with --record: write the case here (default stdout)")
    replay.add_argument("-q", "--quiet", action="store_true", help="print only mismatches and the summary")
    replay.set_defaults(func=cmd_replay)


def _print_results(case: Case, results: list[StepResult], quiet: bool) -> None:
    if not quiet or not all(r.ok for r in results):
        print(f"== {case.name}")
    for result in results:
        if quiet and result.ok:
            continue
        mark = "PASS" if result.ok else "FAIL"
        print(f"  {mark} {result.step.describe()}: {result.outcome.describe()}")
        for problem in result.problems:
            print(f"         {problem}")


def run_live(cases: list[Case], datapath: str = "netdev", switch: ScratchSwitch | None = None
             ) -> list[list[StepResult]]:
    """Every case on one scratch switch (`switch`, or one made for the run on `datapath`)."""
    if switch is None:
        with ScratchSwitch(datapath) as scratch:
            return run_live(cases, switch=scratch)
    all_results = []
    for case in cases:
        switch.load(bridge_ports(case.config, case.host), case.flows(), tunnel_endpoints(case.config, case.host))
        results = []
        for step in case.steps:
            if isinstance(step, Reconfigure):
                switch.set_ports(bridge_ports(step.config, case.host), tunnel_endpoints(step.config, case.host))
                wanted = desired_flows(step.config, case.host)
                switch.apply(diff(wanted, switch.flows(), step.config.cookie).changes)
                continue
            switch.advance(step.advance)
            seen = outcome(switch.trace(step.packet), case.port_names)
            results.append(StepResult(step, seen, problems(step.expect, seen)))
        all_results.append(results)
    return all_results


def cmd_replay(args: argparse.Namespace) -> int:
    if args.record:
        return _record(args)
    if not args.files:
        print("brtun replay: give case files (or --record CONFIG --host NAME --packet ...)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        cases = [load_case(path) for path in args.files]
    except CaseError as error:
        print(f"brtun replay: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    datapath = _datapath(args.datapath_type)
    started = time.perf_counter()
    outcomes = run_live(cases, datapath) if args.live else [run_offline(case) for case in cases]
    seconds = time.perf_counter() - started
    failed = 0
    packets = 0
    for case, results in zip(cases, outcomes, strict=True):
        _print_results(case, results, args.quiet)
        failed += sum(not r.ok for r in results)
        packets += len(results)
    where = f"live on Open vSwitch ({datapath} datapath)" if args.live else "on the simulator"
    verdict = "all passed" if not failed else f"{failed} FAILED"
    print(f"{len(cases)} cases, {packets} packets {where} in {seconds:.3f} s: {verdict}")
    return EXIT_FAILED if failed else EXIT_OK


def _record(args: argparse.Namespace) -> int:
    """Run packets on the live switch and write the case that expects exactly what happened."""
    if not args.host or not args.packet:
        print("brtun replay --record needs --host and at least one --packet", file=sys.stderr)
        return EXIT_BAD_INPUT
    packets = []
    for text in args.packet:
        fields: dict[str, Any] = {}
        for item in text.split(","):
            key, _, value = item.partition("=")
            fields[key.strip()] = value.strip()
        step: dict[str, Any] = {"in_port": fields.pop("in_port", None)}
        if "advance" in fields:
            step["advance"] = float(fields.pop("advance"))
        step["packet"] = {k: (int(v, 0) if v[:1].isdigit() and ":" not in v and "." not in v else v)
                          for k, v in fields.items()}
        step["expect"] = {"drop": True}
        packets.append(step)
    data = {"case": args.output.stem if args.output else "recorded", "config": str(args.record.resolve()),
            "host": args.host, "packets": packets}
    try:
        case = _case(data)
    except CaseError as error:
        print(f"brtun replay --record: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for raw, result in zip(packets, run_live([case], _datapath(args.datapath_type))[0], strict=True):
        raw["expect"] = expectation_of(result.outcome)
    text = yaml.safe_dump(data, sort_keys=False)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(packets)} packets)")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _datapath(choice: str) -> str:
    return datapath_type() if choice == "auto" else choice


def _case(data: dict[str, Any]) -> Case:
    return case_from_data(data, Path.cwd(), default_name=str(data["case"]))
