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
import sys
import time
from pathlib import Path

from ovshost import kernelvm

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "flows", "mininet_topos", "ovshost", "tests")
LANE_TIMEOUT = 30 * 60.0  # the guest is stopped after this; the lane takes ~10 minutes under TCG


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
    return result.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
