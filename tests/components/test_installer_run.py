"""The install script the host runs, run for real: our script, the pinned nixos-infect, our patch.

Each case runs `install_script(...)` -- the exact text `nixos-install` sends, except that the
Nix installer URL and SHA-256 point at a fake installer (the real one would download Nix) -- as
root in a sandbox (installer_sandbox/sandbox.sh: private namespaces, overlay root on tmpfs,
chroot) laid out like a Hetzner server: BIOS x86_64 (cx/cpx/ccx), EFI aarch64 (cax), and EFI
x86_64. The commands that would touch disks, users, swap, the network or power are stubs
(installer_sandbox/stubs/) that record their calls; bash, coreutils, sed, awk, patch and
sha256sum are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from components.installer import (
    NIX_INSTALLER,
    NIXOS_INFECT_SHA256,
    NIXOS_INFECT_URL,
    PATCH_FILE,
    PATCHED_SHA256,
    Download,
    install_script,
)
from tests.components.installer_sandbox.sandbox import (
    BIOS_X86,
    EFI_ARM,
    EFI_X86,
    NIXOS,
    ROOT_UUID,
    Layout,
    SandboxResult,
    pinned_nixos_infect,
    run_in_sandbox,
)
from tests.nixos.nixos_support import assert_parses, require_tool

RELEASE = "nixos-26.05"
FAKE_NIX_URL = "https://releases.nixos.org/nix/nix-test/install"
# Stands in for the Nix installer: what nixos-infect needs from it is ~/.nix-profile's nix.sh.
FAKE_NIX = b"""#!/bin/sh
set -e
printf 'nix-installer %s\\n' "$*" >>"$STUB_LOG"
mkdir -p "$HOME/.nix-profile/etc/profile.d"
echo ': fake nix profile' >"$HOME/.nix-profile/etc/profile.d/nix.sh"
echo "installing Nix (fake)"
"""
FAILING_NIX = b"""#!/bin/sh
echo "error: unable to download 'https://releases.nixos.org/nix/nix-2.34.8/nix.tar.xz'" >&2
exit 1
"""
SLOW_NIX = b"#!/bin/sh\nsleep 4\n" + FAKE_NIX.split(b"\n", 1)[1]
BIOS_DISK = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-0-0"
ROOT_BY_UUID = f"/dev/disk/by-uuid/{ROOT_UUID}"


@pytest.fixture(scope="module")
def upstream() -> bytes:
    return pinned_nixos_infect()


def script(nix: bytes, **options: int) -> str:
    return install_script(
        RELEASE, nix_installer=Download(FAKE_NIX_URL, hashlib.sha256(nix).hexdigest()), **options
    )


def served(upstream: bytes, nix: bytes = FAKE_NIX) -> dict[str, bytes]:
    return {NIXOS_INFECT_URL: upstream, FAKE_NIX_URL: nix}


def test_the_tested_script_is_the_hosts_but_for_the_nix_installer():
    tested = script(FAKE_NIX)
    host = install_script(RELEASE)
    fake_sha = hashlib.sha256(FAKE_NIX).hexdigest()
    assert (
        tested.replace(FAKE_NIX_URL, NIX_INSTALLER.url).replace(fake_sha, NIX_INSTALLER.sha256)
        == host
    )


def _parses(path: Path) -> None:
    assert_parses(require_tool("nix-instantiate"), path)


def _installed(tmp_path: Path, upstream: bytes, layout: Layout, **kwargs: bool) -> SandboxResult:
    result = run_in_sandbox(
        tmp_path, layout, [script(FAKE_NIX), script(FAKE_NIX)], served(upstream), **kwargs
    )
    first = result.runs[0]
    assert first.code == 0, first.stdout + first.stderr
    return result


@pytest.fixture(scope="module")
def bios(tmp_path_factory: pytest.TempPathFactory, upstream: bytes) -> SandboxResult:
    return _installed(tmp_path_factory.mktemp("bios"), upstream, BIOS_X86)


@pytest.fixture(scope="module")
def efi_arm(tmp_path_factory: pytest.TempPathFactory, upstream: bytes) -> SandboxResult:
    # `patch` is "optional" in Debian: this layout also shows the apt-get fallback.
    return _installed(tmp_path_factory.mktemp("arm"), upstream, EFI_ARM, remove_patch=True)


@pytest.fixture(scope="module")
def efi_x86(tmp_path_factory: pytest.TempPathFactory, upstream: bytes) -> SandboxResult:
    return _installed(tmp_path_factory.mktemp("efi-x86"), upstream, EFI_X86)


LAYOUTS = ["bios", "efi_arm", "efi_x86"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reaches_switch_to_configuration_boot_without_rebooting_itself(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    first_run = result.calls[: result.calls.index("=== end of run 1")]
    assert [c for c in first_run if c.startswith("switch-to-configuration")] == [
        "switch-to-configuration boot boot=" + ("absent" if layout == "bios" else "present")
    ]
    assert not [c for c in first_run if c.startswith("reboot")]  # NO_REBOOT=1
    assert "nix-installer --no-channel-add" in first_run
    assert f"nix-channel --add https://nixos.org/channels/{RELEASE} nixos" in first_run


@pytest.mark.parametrize("layout", LAYOUTS)
def test_schedules_the_reboot_after_success(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    first_run = result.calls[: result.calls.index("=== end of run 1")]
    assert first_run[-3:] == [
        "systemd-run --on-active=5 --timer-property=AccuracySec=1s systemctl reboot",
        "timer in 5s: systemctl reboot",
        # so that nixos-ready cannot meet Debian in the seconds before the reboot
        "systemctl stop ssh.service ssh.socket",
    ]
    assert f"NixOS {RELEASE} is installed" in result.runs[0].stdout
    assert result.runs[0].stdout.rstrip().endswith("rebooting into NixOS in 5 s")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_generated_configuration_parses_and_imports_the_boot_devices_module(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    for name in ("configuration.nix", "hardware-configuration.nix", "networking.nix"):
        _parses(result.out / "etc-nixos" / name)
    configuration = result.file("etc-nixos/configuration.nix")
    assert "./boot-devices.nix" in configuration
    assert "./hardware-configuration.nix" in configuration
    assert 'networking.hostName = "lists";' in configuration
    assert "ssh-ed25519 " in configuration  # root's key carried over into NixOS
    module = Path(__file__).resolve().parents[2] / "nixos" / "boot-devices.nix"
    assert result.file("etc-nixos/boot-devices.nix") == module.read_text()


def test_bios_boot_loader_and_stable_devices(bios):
    hardware = bios.file("etc-nixos/hardware-configuration.nix")
    assert 'boot.loader.grub.device = "/dev/sda";' in hardware  # overridden by boot-devices.nix
    assert 'fileSystems."/" = { device = "/dev/sda1"; fsType = "ext4"; };' in hardware
    assert json.loads(bios.file("etc-nixos/boot-devices.json")) == {
        "firmware": "bios",
        "rootDevice": ROOT_BY_UUID,
        "grubDevice": BIOS_DISK,
    }


def test_bios_moves_boot_out_of_the_way(bios):
    # nixos-infect (patched) moved Debian's /boot away before switch-to-configuration boot.
    assert bios.file("boot-dirs").split() == ["boot.bak"]
    assert "renamed '/boot' -> '/boot.bak'" in bios.file("nixos-infect.log")


@pytest.mark.parametrize("layout", ["efi_arm", "efi_x86"])
def test_efi_boot_loader_and_stable_devices(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    hardware = result.file("etc-nixos/hardware-configuration.nix")
    assert 'efi.efiSysMountPoint = "/boot/efi";' in hardware
    assert 'device = "nodev";' in hardware
    assert (
        'fileSystems."/boot/efi" = { device = "/dev/disk/by-uuid/1A2B-3C4D"; fsType = "vfat"; };'
        in hardware
    )
    assert json.loads(result.file("etc-nixos/boot-devices.json")) == {
        "firmware": "efi",
        "rootDevice": ROOT_BY_UUID,
    }
    assert sorted(result.file("boot-dirs").split()) == ["boot", "boot/efi.bak"]
    assert "mount /dev/disk/by-uuid/1A2B-3C4D /boot/efi" in result.calls


def test_arm_gets_no_x86_only_initrd_module(efi_arm, efi_x86):
    assert '"vmw_pvscsi"' not in efi_arm.file("etc-nixos/hardware-configuration.nix")
    assert '"vmw_pvscsi"' in efi_x86.file("etc-nixos/hardware-configuration.nix")


def test_missing_patch_tool_is_installed_with_apt_get(efi_arm, bios):
    assert "apt-get -o DPkg::Lock::Timeout=300 install -y -q patch" in efi_arm.calls
    assert not bios.called("apt-get -o DPkg::Lock::Timeout=300 install -y -q patch")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keeps_the_install_log_and_host_keys_through_the_switch(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    lustrate = result.file("NIXOS_LUSTRATE").split()
    assert "var/log/nixos-infect.log" in lustrate
    assert "etc/nixos" in lustrate
    assert "etc/ssh/ssh_host_ed25519_key" in lustrate


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_second_run_before_the_reboot_only_schedules_the_reboot(layout, request):
    result: SandboxResult = request.getfixturevalue(layout)
    second_run = result.calls[
        result.calls.index("=== end of run 1") + 1 : result.calls.index("=== end of run 2")
    ]
    assert result.runs[1].code == 0
    assert "reboot into it is still pending" in result.runs[1].stdout
    assert second_run[-2:] == [
        "timer in 5s: systemctl reboot",
        "systemctl stop ssh.service ssh.socket",
    ]
    assert not [c for c in second_run if c.startswith(("curl", "systemd-run --unit"))]


def test_on_nixos_it_does_nothing(tmp_path, upstream):
    result = run_in_sandbox(
        tmp_path, BIOS_X86, [script(FAKE_NIX)], served(upstream), os_release=NIXOS
    )
    assert result.runs[0].code == 0
    assert result.runs[0].stdout == "already NixOS: nothing to install\n"
    assert result.calls == ["=== end of run 1"]


def test_a_failing_install_fails_at_once_with_the_log_tail(tmp_path, upstream):
    result = run_in_sandbox(
        tmp_path, BIOS_X86, [script(FAILING_NIX)], served(upstream, FAILING_NIX)
    )
    run = result.runs[0]
    assert run.code == 1
    assert (
        "nixos-infect failed (exit 1); the last 60 lines of /var/log/nixos-infect.log:"
        in run.stderr
    )
    assert "error: unable to download" in run.stderr  # the cause, from the log tail
    assert not result.called("switch-to-configuration")
    assert not result.called("timer in")  # no reboot


@pytest.mark.parametrize(
    ("tampered", "what"),
    [
        ("nixos-infect", "nixos-infect 7563801d3ae68c975e4027f4e31a3906dca95f30"),
        ("nix", FAKE_NIX_URL),
    ],
)
def test_a_wrong_checksum_aborts_before_anything_runs(tmp_path, upstream, tampered, what):
    files = served(upstream)
    url = NIXOS_INFECT_URL if tampered == "nixos-infect" else FAKE_NIX_URL
    files[url] = files[url] + b"\necho injected\n"
    result = run_in_sandbox(tmp_path, BIOS_X86, [script(FAKE_NIX)], files)
    run = result.runs[0]
    assert run.code == 1
    expected = f"{what}: SHA-256 mismatch (expected {_expected(tampered)}); nothing was run"
    assert run.stderr.strip() == expected
    assert not result.called("systemd-run")
    assert not result.exists("etc-nixos/boot-devices.json")


def _expected(tampered: str) -> str:
    return (
        NIXOS_INFECT_SHA256 if tampered == "nixos-infect" else hashlib.sha256(FAKE_NIX).hexdigest()
    )


def test_prints_progress_while_nixos_infect_runs(tmp_path, upstream):
    result = run_in_sandbox(
        tmp_path,
        BIOS_X86,
        [script(SLOW_NIX, progress_seconds=1, poll_seconds=1)],
        served(upstream, SLOW_NIX),
    )
    run = result.runs[0]
    assert run.code == 0, run.stderr
    assert "nixos-infect running for " in run.stdout


def test_patch_applies_to_the_pinned_file_and_gives_the_pinned_result(tmp_path, upstream):
    tool = shutil.which("patch")
    if tool is None:
        pytest.skip("patch is not installed")
    (tmp_path / "upstream").write_bytes(upstream)
    subprocess.run(
        [
            tool,
            "--quiet",
            "--output",
            str(tmp_path / "patched"),
            str(tmp_path / "upstream"),
            str(PATCH_FILE),
        ],
        check=True,
    )
    assert hashlib.sha256((tmp_path / "patched").read_bytes()).hexdigest() == PATCHED_SHA256


def test_unpatched_pinned_nixos_infect_fails_on_bios_before_switching(tmp_path, upstream):
    """Issue 8 item 1: what the host ran before. It never reaches switch-to-configuration."""
    run_upstream = (
        "set -euo pipefail\n"
        "PROVIDER=hetznercloud NIX_CHANNEL=nixos-26.05 NO_REBOOT=1 "
        "NIX_INSTALL_URL=file:///sandbox/nix-install bash /sandbox/nixos-infect\n"
    )
    result = run_in_sandbox(
        tmp_path,
        BIOS_X86,
        [run_upstream],
        {},
        extra_files={"nixos-infect": upstream, "nix-install": FAKE_NIX},
    )
    run = result.runs[0]
    assert run.code != 0
    assert "mv: missing destination file operand after '.bak'" in run.stdout + run.stderr
    assert "cp: missing destination file operand after '.bak'" in run.stdout + run.stderr
    assert not result.called("switch-to-configuration")
