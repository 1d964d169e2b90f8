"""A QEMU guest running the distribution's own kernel: the OVS kernel datapath where the host has none.

virtme-ng (`vng`) boots a kernel image with the host's own filesystem as the
guest's root (read-only 9p; tmpfs overlays on /etc, /usr, /var and /tmp;
/run a tmpfs of the guest's own), so the guest runs this very checkout and
its .venv, with the image's modules from the host's /lib/modules.  Unix
sockets cannot live on 9p: everything brtun keeps in /run (testbed state,
private switches' run directories, scratch switches) is on the guest's own
tmpfs, apart from the host's /run.

Host side: `find_kernel` (an image whose modules include openvswitch and the
GRE and VXLAN vports), `find_vng` and `find_qemu`, `probe_kvm` (a short boot
with a time limit: /dev/kvm may exist and still fail or hang, so TCG
software emulation is the fallback), and `Guest.run`, which boots once, runs
one command, streams its output and returns its exit status.  A guest that
does not boot within its time limit is killed (its whole process group,
which this module started) and the error carries its last console lines.

Guest side: `python -m ovshost.kernelvm -- COMMAND...` loads the openvswitch
module, says so, and runs COMMAND (`prepare_guest`).

Every failure is a KernelVmError with one line that says what is missing
and how to get it; the callers print it without a traceback.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

UP_MARKER = "brtun-guest: up"
GUEST_ENV = "BRTUN_KERNEL_GUEST"  # set inside the guest, so commands know where they run
MODULES = ("openvswitch", "vport-gre", "vport-vxlan")  # the kernel datapath and its GRE and VXLAN vports
BOOT = Path("/boot")
LIB_MODULES = Path("/lib/modules")
KVM = Path("/dev/kvm")
KVM_PROBE_SECONDS = 20.0  # a KVM guest boots in a few seconds; a hanging one is given up on
BOOT_TIMEOUT = float(os.environ.get("BRTUN_VM_BOOT_TIMEOUT", "150"))  # TCG boots in ~20 s on 2 cores
CONSOLE_LINES = 25
KERNEL_MESSAGE = re.compile(r"^\[\s*\d+\.\d+\] ")  # `[   12.345678] ...`: the kernel's, not the command's


class KernelVmError(RuntimeError):
    """One line (and, for a guest that failed, its last console lines) for the user."""


@dataclass(frozen=True)
class KernelImage:
    path: Path
    release: str
    modules: dict[str, Path]

    def describe(self) -> str:
        return f"Linux {self.release} ({self.path})"


def _version_key(release: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-+~]", release)]


def _module(release: str, name: str) -> Path | None:
    tree = LIB_MODULES / release / "kernel"
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        found = sorted(tree.glob(f"net/**/{name}{suffix}")) if tree.is_dir() else []
        if found:
            return found[0]
    return None


def find_kernel(explicit: str | os.PathLike[str] | None = None) -> KernelImage:
    """The image to boot: `explicit`, $BRTUN_KERNEL_IMAGE, or the newest /boot/vmlinuz-* with the modules."""
    chosen = explicit or os.environ.get("BRTUN_KERNEL_IMAGE")
    if chosen:
        images = [Path(chosen)]
        if not images[0].is_file():
            raise KernelVmError(f"no kernel image at {chosen}")
    else:
        images = sorted(BOOT.glob("vmlinuz-*"), key=lambda p: _version_key(p.name.removeprefix("vmlinuz-")),
                        reverse=True)
        if not images:
            raise KernelVmError(f"no kernel image in {BOOT} (vmlinuz-*): install one with "
                                "`apt-get install linux-image-amd64` (./run test-kernel does)")
    missing_reports = []
    for image in images:
        release = image.name.removeprefix("vmlinuz-")
        modules = {name: _module(release, name) for name in MODULES}
        missing = [name for name, path in modules.items() if path is None]
        if missing:
            missing_reports.append(f"{image} lacks {', '.join(m + '.ko' for m in missing)} "
                                   f"in {LIB_MODULES / release}")
            continue
        if not os.access(image, os.R_OK):
            raise KernelVmError(f"cannot read the kernel image {image}: run as root")
        return KernelImage(image, release, {name: path for name, path in modules.items() if path is not None})
    raise KernelVmError("no kernel image with the openvswitch module: " + "; ".join(missing_reports)
                        + " (Debian's linux-image-amd64 has them)")


def find_vng() -> str:
    beside = Path(sys.executable).parent / "vng"
    found = str(beside) if beside.exists() else shutil.which("vng")
    if found is None:
        raise KernelVmError("no vng (virtme-ng): `pip install virtme-ng` into the venv (./run test-kernel does)")
    return found


def find_qemu() -> str:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise KernelVmError("no qemu-system-x86_64: install it with `apt-get install qemu-system-x86` "
                            "(./run test-kernel does)")
    return found


def _vng_env(vng: str) -> dict[str, str]:
    """vng runs its helpers (virtme-run) by name: they are beside it, in the venv's bin."""
    return {**os.environ, "PATH": f"{Path(vng).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def _vng_argv(vng: str, kernel: KernelImage, command: str, *, kvm: bool, cpus: int, memory: str,
              cwd: Path) -> list[str]:
    argv = [vng, "--run", str(kernel.path), "--force-9p", "--cpus", str(cpus), "--memory", memory, "--verbose",
            "--cwd", str(cwd), "--exec", command]
    return argv if kvm else [*argv, "--disable-kvm"]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """End the guest: vng and its qemu, the process group this module started (by its PID)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


_PROBED: dict[Path, tuple[bool, str]] = {}


def probe_kvm(kernel: KernelImage, vng: str, seconds: float = KVM_PROBE_SECONDS) -> tuple[bool, str]:
    """(usable, why): boot the image under KVM once, briefly; /dev/kvm alone proves nothing.
    Asked once per image and process."""
    if kernel.path not in _PROBED:
        _PROBED[kernel.path] = _probe_kvm(kernel, vng, seconds)
    return _PROBED[kernel.path]


def _probe_kvm(kernel: KernelImage, vng: str, seconds: float) -> tuple[bool, str]:
    if os.environ.get("BRTUN_VM_ACCEL") == "tcg":
        return False, "BRTUN_VM_ACCEL=tcg"
    if not KVM.exists():
        return False, "no /dev/kvm"
    if not os.access(KVM, os.R_OK | os.W_OK):
        return False, "/dev/kvm is not usable by this user"
    argv = _vng_argv(vng, kernel, "echo brtun-kvm-ok", kvm=True, cpus=1, memory="512M", cwd=Path("/"))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=_vng_env(vng))
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return False, f"a KVM guest did not boot within {seconds:.0f} s"
    if b"brtun-kvm-ok" in out:
        return True, "KVM"
    last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    return False, f"a KVM guest failed: {last.removeprefix('qemu-system-x86_64: ')[:80]}"


@dataclass
class GuestResult:
    status: int
    boot_seconds: float
    seconds: float
    accel: str


@dataclass
class Guest:
    """One boot of `kernel` that runs `argv` (inside, through `python -m ovshost.kernelvm --`) and powers off."""

    kernel: KernelImage
    argv: Sequence[str]
    cwd: Path
    boot_timeout: float = BOOT_TIMEOUT
    timeout: float = 3600.0
    cpus: int = 2
    memory: str = "3G"
    env: dict[str, str] = field(default_factory=dict)
    console_log: Path | None = None  # the guest kernel's console, in full

    def run(self, on_line: Callable[[str], None] = print, on_boot: Callable[[str], None] | None = None,
            on_error: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
            ) -> GuestResult:
        """Boot, run, power off: the command's standard output to `on_line`, its standard error (told
        apart from the kernel's timestamped console lines) to `on_error`; its exit status."""
        find_qemu()
        vng = find_vng()
        kvm, why = probe_kvm(self.kernel, vng)
        accel = "KVM" if kvm else f"TCG, software emulation; {why}"
        environment = {GUEST_ENV: "1", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **self.env}
        inner = shlex.join(["env", *(f"{k}={v}" for k, v in environment.items()), sys.executable, "-m",
                            "ovshost.kernelvm", "--", *self.argv])
        command = f"echo {shlex.quote(UP_MARKER)}; exec {inner}"
        argv = _vng_argv(vng, self.kernel, command, kvm=kvm, cpus=self.cpus, memory=self.memory, cwd=self.cwd)
        console: collections.deque[str] = collections.deque(maxlen=CONSOLE_LINES)
        log = self.console_log.open("w") if self.console_log else None
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=_vng_env(vng))
        booted = threading.Event()
        boot_seconds = [0.0]

        def read_console() -> None:
            """vng's stderr: the guest kernel's console and, once booted, the command's stderr."""
            assert process.stderr is not None
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip()
                console.append(line)
                if log is not None:
                    log.write(line + "\n")
                if booted.is_set() and not KERNEL_MESSAGE.match(line):
                    on_error(line)

        def read_output() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if not booted.is_set() and UP_MARKER in line:
                    boot_seconds[0] = time.monotonic() - started
                    booted.set()
                    if on_boot is not None:
                        on_boot(f"guest: {self.kernel.describe()} booted in {boot_seconds[0]:.1f} s ({accel})")
                    continue
                on_line(line)

        readers = [threading.Thread(target=read_console, daemon=True),
                   threading.Thread(target=read_output, daemon=True)]
        for reader in readers:
            reader.start()
        try:
            while not booted.wait(0.2):
                if process.poll() is not None:
                    booted.wait(1)  # its last lines may still be in the pipe
                    if booted.is_set():
                        break
                    for reader in readers:
                        reader.join(timeout=2)
                    raise self._error(f"the guest exited ({process.returncode}) before it booted", console)
                if time.monotonic() - started > self.boot_timeout:
                    _kill_group(process)
                    raise self._error(f"the guest did not boot within {self.boot_timeout:.0f} s ({accel})",
                                      console)
            try:
                status = process.wait(timeout=max(1.0, self.timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise self._error(f"the guest ran longer than {self.timeout:.0f} s: stopped", console) from None
        except BaseException:
            _kill_group(process)
            raise
        finally:
            for reader in readers:
                reader.join(timeout=5)
            if log is not None:
                log.close()
        return GuestResult(status, boot_seconds[0], time.monotonic() - started, accel)

    @staticmethod
    def _error(message: str, console: collections.deque[str]) -> KernelVmError:
        tail = "\n".join(f"  | {line[:160]}" for line in console) or "  | (no console output)"
        return KernelVmError(f"{message}; its last console lines:\n{tail}")


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV) == "1"


def prepare_guest() -> str:
    """Inside the guest: load the openvswitch module; a line naming the kernel."""
    result = subprocess.run(["modprobe", "openvswitch"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not Path("/sys/module/openvswitch").exists():
        raise KernelVmError(f"modprobe openvswitch failed in the guest: {result.stderr.strip() or 'no module'}")
    return f"guest: openvswitch module loaded (Linux {os.uname().release})"


def main(argv: Sequence[str]) -> int:
    """`python -m ovshost.kernelvm -- COMMAND...`: prepare the guest, then become COMMAND."""
    command = list(argv[1:] if argv[:1] == ["--"] else argv)
    if not command:
        print("usage: python -m ovshost.kernelvm -- COMMAND...", file=sys.stderr)
        return 2
    try:
        print(prepare_guest(), flush=True)
    except KernelVmError as error:
        print(f"brtun: {error}", file=sys.stderr, flush=True)
        return 3
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
