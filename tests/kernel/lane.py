"""`./run test-kernel`: the kernel lane, on the host. Boots the guest once and runs tests/kernel/guest.py in it.

    .venv/bin/python -m tests.kernel.lane [SCENARIO...]   (as root; SCENARIO: agent, replay, seed, vxlan_mesh)

The host needs no openvswitch module: the guest boots the distribution's
kernel (ovshost.kernelvm), whose modules have it.  Prints the guest's
lines as they come, the boot time and the lane's total; exits 0 only if
every scenario passed.  A missing kernel image, qemu or module, or a guest
that does not boot in time, is one line (with the guest's last console
lines), never a traceback.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time
from pathlib import Path

from ovshost import kernelvm
from ovshost.datapath import kernel_datapath_available

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "flows", "mininet_topos", "ovshost", "tests")
LANE_TIMEOUT = 30 * 60.0  # the guest is stopped after this; the lane takes ~8 minutes under TCG


def bad_cases(kernel: kernelvm.KernelImage) -> int:
    """On the host, before the real boot: what a user sees when something is missing. Returns failures."""
    failures = 0
    print("\n== [0] bad cases give one clear line (on the host)", flush=True)
    if kernel_datapath_available():
        print("   n/a   this host has the module: `brtun demo --kernel` would run here, not in a guest")
    else:
        env = {**os.environ, "BRTUN_KERNEL_IMAGE": "/nonexistent/vmlinuz"}
        result = subprocess.run([sys.executable, "-m", "controller.cli", "demo", "--kernel"], env=env, cwd=PROJECT,
                                capture_output=True, text=True, timeout=120, check=False)
        ok = (result.returncode == 1 and "Traceback" not in result.stderr
              and result.stderr.strip() == "brtun demo --kernel: no kernel image at /nonexistent/vmlinuz")
        failures += not ok
        print(f"   {'PASS' if ok else 'FAIL'}  no kernel image: exit {result.returncode}, "
              f"{result.stderr.strip()!r}", flush=True)
    began = time.monotonic()
    try:
        kernelvm.Guest(kernel, ["true"], PROJECT, boot_timeout=3).run(on_line=lambda line: None)
        ok, said = False, "the guest booted in 3 s?"
    except kernelvm.KernelVmError as error:
        lines = str(error).splitlines()
        ok = "did not boot within 3 s" in lines[0] and len(lines) > 1 and lines[1].startswith("  | ")
        said = f"{lines[0][:60]}... and {len(lines) - 1} console lines"
    failures += not ok
    print(f"   {'PASS' if ok else 'FAIL'}  a guest past its boot limit is stopped ({time.monotonic() - began:.1f} s): "
          f"{said}", flush=True)
    return failures


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("kernel lane: needs root (it boots a VM and, inside, creates namespaces and switches): "
              "sudo ./run test-kernel", file=sys.stderr)
        return 2
    started = time.monotonic()
    # The guest sees this checkout read-only: compile it here once, or every import compiles again in there.
    for package in PACKAGES:
        compileall.compile_dir(str(PROJECT / package), quiet=1)
    try:
        kernel = kernelvm.find_kernel()
        print(f"kernel lane: booting {kernel.describe()} in a QEMU guest (modules: "
              f"{', '.join(sorted(kernel.modules))})", flush=True)
        failures = bad_cases(kernel)
        console = Path(os.environ.get("BRTUN_VM_CONSOLE_LOG", "/tmp/brtun-kernel-lane-console.log"))
        guest = kernelvm.Guest(kernel, [sys.executable, "-m", "tests.kernel.guest", *argv], PROJECT,
                               timeout=LANE_TIMEOUT, console_log=console)
        result = guest.run(on_line=lambda line: print(line, flush=True),
                           on_boot=lambda line: print(f"kernel lane: {line}", flush=True))
    except kernelvm.KernelVmError as error:
        print(f"kernel lane: {error}", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    print(f"kernel lane: boot {result.boot_seconds:.0f} s, guest {result.seconds:.0f} s, total {total:.0f} s "
          f"({total / 60:.1f} min, {result.accel}); guest exit status {result.status}; console log {console}",
          flush=True)
    if failures:
        print(f"kernel lane: {failures} bad case(s) FAILED on the host", flush=True)
    return result.status or (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
