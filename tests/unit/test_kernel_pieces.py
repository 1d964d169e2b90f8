"""The kernel lane's host-side pieces that need no VM: which image boots, what a missing piece says,
the VM MTU each encapsulation leaves, and the one-line datapath summary.

The guest itself runs in the kernel lane (`./run test-kernel`), not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.config import parse_config
from mininet_topos import spec
from mininet_topos.mesh import mesh_config, mesh_yaml
from ovshost import kernelvm
from ovshost.datapath import summary

DPCTL = """\
system@ovs-system:
  lookups: hit:0 missed:0 lost:0
  flows: 0
  masks: hit:0 total:0 hit/pkt:0.00
  caches:
    masks-cache: size:256
  port 0: ovs-system (internal)
  port 1: gre_sys (gre: packet_type=ptap)
  port 2: vxlan_sys_4789 (vxlan: packet_type=ptap)
  port 3: br-tun (internal)
  port 4: qvo7c7ae61e-05
"""


@pytest.fixture
def boot_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    boot, modules = tmp_path / "boot", tmp_path / "lib-modules"
    boot.mkdir()
    modules.mkdir()
    monkeypatch.setattr(kernelvm, "BOOT", boot)
    monkeypatch.setattr(kernelvm, "LIB_MODULES", modules)
    monkeypatch.delenv("BRTUN_KERNEL_IMAGE", raising=False)
    return boot, modules


def _kernel(boot: Path, modules: Path, release: str, *present: str) -> Path:
    image = boot / f"vmlinuz-{release}"
    image.write_bytes(b"kernel")
    for name in present:
        path = modules / release / "kernel" / "net" / "openvswitch" / f"{name}.ko.xz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"module")
    return image


def test_no_kernel_image_says_how_to_get_one(boot_tree: tuple[Path, Path]) -> None:
    with pytest.raises(kernelvm.KernelVmError, match=r"no kernel image in .*apt-get install linux-image-amd64"):
        kernelvm.find_kernel()


def test_an_image_without_the_openvswitch_module_is_named_with_what_it_lacks(boot_tree: tuple[Path, Path]) -> None:
    boot, modules = boot_tree
    _kernel(boot, modules, "6.1.0-57-amd64", "vport-gre")
    with pytest.raises(kernelvm.KernelVmError) as error:
        kernelvm.find_kernel()
    message = str(error.value)
    assert "vmlinuz-6.1.0-57-amd64 lacks openvswitch.ko, vport-vxlan.ko" in message
    assert "\n" not in message


def test_the_newest_image_with_the_modules_is_chosen(boot_tree: tuple[Path, Path]) -> None:
    boot, modules = boot_tree
    everything = ("openvswitch", "vport-gre", "vport-vxlan")
    _kernel(boot, modules, "6.1.0-9-amd64", *everything)
    wanted = _kernel(boot, modules, "6.1.0-57-amd64", *everything)
    _kernel(boot, modules, "6.10.0-1-amd64")  # newer, but without the modules
    kernel = kernelvm.find_kernel()
    assert kernel.path == wanted and kernel.release == "6.1.0-57-amd64"
    assert sorted(kernel.modules) == sorted(everything)


def test_an_explicit_image_that_is_not_there_is_one_line(boot_tree: tuple[Path, Path]) -> None:
    with pytest.raises(kernelvm.KernelVmError, match=r"^no kernel image at /nowhere/vmlinuz$"):
        kernelvm.find_kernel("/nowhere/vmlinuz")


def test_missing_qemu_and_vng_say_which_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kernelvm.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(kernelvm.KernelVmError, match="apt-get install qemu-system-x86"):
        kernelvm.find_qemu()
    with pytest.raises(kernelvm.KernelVmError, match="pip install virtme-ng"):
        kernelvm.find_vng()


def test_the_guest_module_outside_a_guest_needs_a_command() -> None:
    assert kernelvm.main([]) == 2


def test_dpctl_summary_names_the_datapath_and_its_ports() -> None:
    assert summary(DPCTL) == ("system@ovs-system: gre_sys (gre), vxlan_sys_4789 (vxlan), br-tun, "
                              "qvo7c7ae61e-05")
    assert summary("ovs-dpctl: no datapaths exist") == "no kernel datapath"


def test_each_networks_vm_mtu_is_what_its_encapsulation_leaves() -> None:
    gre = spec.testbed_spec(parse_config(mesh_yaml(2)), "mesh")
    assert gre.mtus == {"blue": 1500 - 42, "red": 1500 - 42}
    mixed = spec.testbed_spec(parse_config(_yaml(mesh_config(2, types=("gre", "vxlan")))), "mesh")
    assert mixed.mtus == {"blue": 1500 - 42, "red": 1500 - 50}


def test_a_vm_mtu_too_large_for_vxlan_is_refused_with_the_largest_that_fits() -> None:
    config = mesh_config(2, types=("gre", "vxlan"))
    config["testbed"]["vm_mtu"] = 1458
    with pytest.raises(spec.InvalidTestbed) as error:
        spec.testbed_spec(parse_config(_yaml(config)), "mesh")
    assert ("testbed.vm_mtu: 1458 does not fit vxlan network red on a 1500-byte underlay: at most "
            "1450 = 1500 - 50 (vxlan over IPv4: 30 + 20) (a bigger packet is dropped, not fragmented)"
            in str(error.value))


def test_the_underlays_mtu_has_one_home() -> None:
    config = mesh_config(2)
    config["testbed"]["underlay"]["mtu"] = 9000
    with pytest.raises(spec.InvalidTestbed, match=r"testbed\.underlay\.mtu: the underlay.s MTU is options\.underlay_mtu"):
        spec.testbed_spec(parse_config(_yaml(config)), "mesh")


def _yaml(data: dict[str, object]) -> str:
    return yaml.safe_dump(data, sort_keys=False)
