"""Run the host's install script for real, as root, in a sandbox that leaves this machine alone.

`pinned_nixos_infect()` finds the pinned upstream nixos-infect (never committed: it is fetched
code) and checks its SHA-256. `run_in_sandbox()` runs shell scripts under sandbox.sh: a private
mount, PID, network, UTS and IPC namespace whose root is an overlay of / with a tmpfs upper layer,
entered with chroot, with the stubs of stubs/ first on PATH.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.installer import NIXOS_INFECT_COMMIT, NIXOS_INFECT_SHA256, NIXOS_INFECT_URL
from tests.harness import MOCK_ED25519_PUBLIC

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
STUBS = HERE / "stubs"
SANDBOX_SH = HERE / "sandbox.sh"

# Where to look for the pinned file, in order (each candidate is checked against the SHA-256):
ENV_PATH = "NIXOS_INFECT_FILE"  # 1. a file named by this variable
CACHE = REPO / ".cache" / f"nixos-infect-{NIXOS_INFECT_COMMIT}"  # 2. the test cache
# 3. a local mirror of elitak/nixos-infect (a bare git directory), e.g. a maintainer's clone
MIRROR_ENV = "NIXOS_INFECT_GIT_DIR"
DEFAULT_MIRROR = Path("/work/.mirror/elitak+nixos-infect/repo")
# 4. raw.githubusercontent.com at the pinned commit (works on GitHub's runners; fails fast
#    offline), then saved to the cache.
DOWNLOAD_TIMEOUT_SECONDS = 10

ROOT_UUID = "3f1a6c2e-8d4b-4f6a-9c21-5b7e0d9a1c44"
VOLUME_UUID = "8a7d3e10-2b6c-4e9f-8f15-0c4d2a6b9e31"
ESP_UUID = "1A2B-3C4D"


def _matches(data: bytes) -> bool:
    return hashlib.sha256(data).hexdigest() == NIXOS_INFECT_SHA256


def _candidates() -> list[tuple[str, bytes | None]]:
    found: list[tuple[str, bytes | None]] = []
    if path := os.environ.get(ENV_PATH):
        found.append((f"${ENV_PATH}={path}", Path(path).read_bytes()))
    if CACHE.is_file():
        found.append((str(CACHE), CACHE.read_bytes()))
    mirror = Path(os.environ.get(MIRROR_ENV, DEFAULT_MIRROR))
    git = shutil.which("git")
    if git and mirror.is_dir():
        shown = subprocess.run(
            [git, f"--git-dir={mirror}", "show", f"{NIXOS_INFECT_COMMIT}:nixos-infect"],
            capture_output=True,
            check=False,
        )
        found.append((f"git mirror {mirror}", shown.stdout if shown.returncode == 0 else None))
    return found


def _download() -> bytes | None:
    try:
        # A constant https:// URL.
        with urllib.request.urlopen(  # noqa: S310
            NIXOS_INFECT_URL, timeout=DOWNLOAD_TIMEOUT_SECONDS
        ) as answer:
            data: bytes = answer.read()
    except (urllib.error.URLError, OSError):
        return None
    if _matches(data):
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_bytes(data)
    return data


def pinned_nixos_infect() -> bytes:
    """The upstream nixos-infect at the pin, checked; skip (fail under CI=true) when unavailable."""
    tried: list[str] = []
    for where, data in _candidates():
        if data is not None and _matches(data):
            return data
        tried.append(f"{where}: {'missing' if data is None else 'wrong SHA-256'}")
    data = _download()
    if data is not None and _matches(data):
        return data
    tried.append(f"{NIXOS_INFECT_URL}: {'unreachable' if data is None else 'wrong SHA-256'}")
    message = "pinned nixos-infect not found (" + "; ".join(tried) + ")"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _sandbox_command() -> list[str]:
    """unshare as root: directly, through passwordless sudo, or in a user namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("unshare (util-linux) is not installed")
    flags = ["--mount", "--pid", "--net", "--uts", "--ipc", "--fork", "--kill-child"]
    if os.geteuid() == 0:
        command = [unshare, *flags]
    elif (sudo := shutil.which("sudo")) and _succeeds([sudo, "-n", "true"]):
        command = [sudo, "-n", unshare, *flags]
    else:
        command = [unshare, "--user", "--map-root-user", *flags]
    if not _succeeds([*command, "true"]):
        _unavailable(f"{' '.join(command)} true: failed (no root, no user namespaces)")
    return command


def _succeeds(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _unavailable(reason: str) -> None:
    message = f"the install sandbox cannot run here: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Layout:
    """A Hetzner server type family as the installer sees it."""

    name: str
    firmware: str  # "bios" or "efi"
    arch: str  # uname -m


BIOS_X86 = Layout("bios-x86_64 (cx, cpx, ccx)", "bios", "x86_64")
EFI_X86 = Layout("efi-x86_64", "efi", "x86_64")
EFI_ARM = Layout("efi-aarch64 (cax)", "efi", "aarch64")
DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
NIXOS = 'NAME=NixOS\nID=nixos\nVERSION_ID="26.05"\n'


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SandboxResult:
    runs: list[Run]
    calls: list[str]  # one line per stub call; "=== end of run N" between runs
    out: Path

    def file(self, name: str) -> str:
        return (self.out / name).read_text()

    def exists(self, name: str) -> bool:
        return (self.out / name).exists()

    def called(self, prefix: str) -> list[str]:
        return [line for line in self.calls if line.startswith(prefix)]


def run_in_sandbox(
    tmp_path: Path,
    layout: Layout,
    scripts: Sequence[str],
    served: Mapping[str, bytes],
    *,
    os_release: str = DEBIAN_12,
    extra_files: Mapping[str, bytes] = {},
    remove_patch: bool = False,
    timeout_seconds: int = 240,
) -> SandboxResult:
    """Run `scripts` one after the other (as `bash -c`) in one sandbox of `layout`.

    `served`: what the stub curl answers for each URL. `extra_files`: put in /sandbox/.
    """
    case = tmp_path / "case"
    box = case / "sandbox"
    shutil.copytree(STUBS, box / "stubs")
    (box / "served").mkdir()
    table = []
    for number, (url, data) in enumerate(served.items()):
        (box / "served" / f"file-{number}").write_bytes(data)
        table.append(f"{url}\tfile-{number}\n")
    (box / "served" / "urls.tsv").write_text("".join(table))
    for name, data in extra_files.items():
        (box / name).write_bytes(data)
    for number, script in enumerate(scripts, start=1):
        (box / f"run-{number}.sh").write_text(script)
    (case / "os-release").write_text(os_release)
    env = {
        "STUB_FIRMWARE": layout.firmware,
        "STUB_ARCH": layout.arch,
        "ROOT_UUID": ROOT_UUID,
        "VOLUME_UUID": VOLUME_UUID,
        "ESP_UUID": ESP_UUID,
        "HOST_PUBLIC_KEY": MOCK_ED25519_PUBLIC,
        "DEPLOY_PUBLIC_KEY": MOCK_ED25519_PUBLIC + " deploy",
        "REMOVE_PATCH": "1" if remove_patch else "",
    }
    (case / "env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    result = subprocess.run(
        [*_sandbox_command(), "bash", str(SANDBOX_SH), str(case)],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    out = case / "out"
    if result.returncode != 0 or not (out / "calls.log").exists():
        pytest.fail(f"sandbox.sh exited {result.returncode}: {result.stderr.strip()[-1000:]}")
    runs = [
        Run(
            int((out / f"rc-{n}").read_text()),
            (out / f"stdout-{n}").read_text(),
            (out / f"stderr-{n}").read_text(),
        )
        for n in range(1, len(scripts) + 1)
    ]
    return SandboxResult(runs, (out / "calls.log").read_text().splitlines(), out)
