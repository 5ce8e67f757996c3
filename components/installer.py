"""Turning the stock Debian server into NixOS: the constant cloud-config and the install script.

`user_data` only installs the stack's ED25519 SSH host key; it never changes for the life of the
stack, so the server never needs `ignore_changes` (the engine would put OLD values back when the
server is replaced). The installation itself is `install_script`, the `create` of the
`nixos-install` command (components/host.py): run over SSH on the fresh Debian, so a replaced
server always gets the CURRENT installer. pulumi-command v1.2.1 re-runs `create` on any input
change when no `update` is set (provider/pkg/provider/remote/commandController.go, Update), so the
script is idempotent: on NixOS it does nothing.

Nothing fetched is committed: nixos-infect is downloaded at a pinned commit and checked, our small
patch (components/installer/*.patch) is applied, and the result is checked again.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.nixpkgs_pin import BRANCH

# nixos-infect: https://github.com/elitak/nixos-infect at this commit; the SHA-256 is of the
# `nixos-infect` file at that commit. PROVIDER and NIX_CHANNEL are passed explicitly.
NIXOS_INFECT_COMMIT = "7563801d3ae68c975e4027f4e31a3906dca95f30"
NIXOS_INFECT_SHA256 = "4cc3b5f8e4333ab4f02906d80a836c1b36e2887a51abf4eba4d9113b33934393"
NIXOS_INFECT_URL = (
    f"https://raw.githubusercontent.com/elitak/nixos-infect/{NIXOS_INFECT_COMMIT}/nixos-infect"
)
# Our patch (BIOS: bootFs=/boot; its header says why and cites upstream #261/#264), and the
# SHA-256 of nixos-infect AFTER it is applied: whatever applied it, the host runs exactly this.
PATCH_FILE = Path(__file__).resolve().parent / "installer" / "nixos-infect-bios-bootfs.patch"
PATCHED_SHA256 = "b6553b59a59fa359db5604a1d366d166bda90fa76df324fa4f250234a049ad46"


@dataclass(frozen=True)
class Download:
    """A file fetched over HTTPS and checked before use."""

    url: str
    sha256: str


# The Nix installer nixos-infect runs (`curl -L "${NIX_INSTALL_URL}" | sh -s -- --no-channel-add`,
# nixos-infect lines 373-374), pinned: 4267 bytes; it embeds the SHA-256 of each platform's Nix
# tarball and checks it (NixOS/nix scripts/install.in), so pinning it pins Nix 2.34.8 itself.
NIX_INSTALLER = Download(
    "https://releases.nixos.org/nix/nix-2.34.8/install",
    "96c10e102c88809dd9ec0bee89200c4a51eae4c9f6d8698c26b16788d131e078",
)

INSTALL_LOG = "/var/log/nixos-infect.log"
INSTALL_DIR = "/root/nixos-install"
INSTALL_UNIT = "nixos-infect.service"
# Read by nixos/boot-devices.nix, which is handed to nixos-infect's first build (NIXOS_IMPORT)
# and pushed again with nixos/ later; /etc/nixos survives the switch (nixos-infect's
# NIXOS_LUSTRATE keeps etc/nixos).
BOOT_DEVICES_MODULE = Path(__file__).resolve().parent.parent / "nixos" / "boot-devices.nix"
BOOT_DEVICES_FACTS = "/etc/nixos/boot-devices.json"
PROGRESS_SECONDS = 60  # NATs drop silent flows; the operator sees the install move
TAIL_LINES = 60
REBOOT_DELAY_SECONDS = 5



def user_data(host_private_key: str, host_public_key: str) -> str:
    """The cloud-config: the stack's ED25519 host key, nothing else (it never changes)."""
    config = {
        # cloud-init writes the key before sshd first starts, removing the image's keys and
        # generating none: from its first boot the server serves only the stack's key, which
        # nixos-infect keeps (it lists /etc/ssh/ssh_host_*_key* in NIXOS_LUSTRATE).
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": host_private_key,
            "ed25519_public": host_public_key.strip(),
        },
        "ssh_genkeytypes": [],
        # Root logs in with the deploy key (cloud-init's default would print "log in as another
        # user" and disconnect); nixos-infect carries root's authorized keys into NixOS.
        "disable_root": False,
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def _heredoc(path: str, text: str, marker: str) -> list[str]:
    if any(line == marker for line in text.splitlines()):
        raise ValueError(f"{marker} occurs in the text for {path}")
    return [f"cat >{shlex.quote(path)} <<'{marker}'", *text.rstrip("\n").split("\n"), marker]


def _prepare(nixos_release: str, nix_installer: Download) -> list[str]:
    """Fetch, check, patch, record the boot devices, write the unit's runner."""
    infect = f"{INSTALL_DIR}/nixos-infect"
    runner = [
        "#!/bin/bash",
        f"cd {INSTALL_DIR}",
        "PROVIDER=hetznercloud"
        f" NIX_CHANNEL={shlex.quote(nixos_release)}"
        " NO_REBOOT=1"
        f" NIX_INSTALL_URL=file://{INSTALL_DIR}/nix-install"
        " NIXOS_IMPORT=./boot-devices.nix"
        f" bash {infect} >>{INSTALL_LOG} 2>&1 && code=0 || code=$?",
        'echo "$code" >status.new && mv -f status.new status',
    ]
    return [
        f"mkdir -p {INSTALL_DIR} /etc/nixos",
        f"cd {INSTALL_DIR}",
        "rm -f status",
        f"fetch {shlex.quote(NIXOS_INFECT_URL)} nixos-infect.upstream",
        f"verify {NIXOS_INFECT_SHA256} nixos-infect.upstream 'nixos-infect {NIXOS_INFECT_COMMIT}'",
        # `patch` is "optional" in Debian, so maybe not on the image; nixos-infect installs its
        # own missing tools with apt-get the same way (checkEnv). The checksum after it makes the
        # tool irrelevant: the host runs exactly the file we tested.
        # cloud-init may still hold the dpkg lock right after sshd came up: wait for the lock.
        "command -v patch >/dev/null || { apt-get update -q"
        " && apt-get -o DPkg::Lock::Timeout=300 install -y -q patch; }",
        *_heredoc("nixos-infect.patch", PATCH_FILE.read_text(encoding="utf-8"), "END_OF_PATCH"),
        "patch --quiet --output=nixos-infect nixos-infect.upstream nixos-infect.patch",
        f"verify {PATCHED_SHA256} nixos-infect 'nixos-infect with our patch'",
        f"fetch {shlex.quote(nix_installer.url)} nix-install",
        f"verify {nix_installer.sha256} nix-install {shlex.quote(nix_installer.url)}",
        "record_boot_devices",
        *_heredoc(
            "/etc/nixos/boot-devices.nix",
            BOOT_DEVICES_MODULE.read_text(encoding="utf-8"),
            "END_OF_MODULE",
        ),
        *_heredoc("run-infect", "\n".join(runner), "END_OF_RUNNER"),
        # Keep the log across the switch (the rest of Debian's root moves to /old-root).
        f"grep -qx {INSTALL_LOG.lstrip('/')} /etc/NIXOS_LUSTRATE 2>/dev/null"
        f" || echo {INSTALL_LOG.lstrip('/')} >>/etc/NIXOS_LUSTRATE",
    ]


# Stable names, recorded before nixos-infect runs (nixos/boot-devices.nix reads them): the root
# file system by UUID and, on BIOS, the disk that holds it by its /dev/disk/by-id link. A name
# that is missing (or not plain JSON-safe text) is left out with a warning: NixOS then keeps
# nixos-infect's kernel name, which works as long as no volume takes it.
_RECORD_BOOT_DEVICES = f"""stable_link() {{
  local link
  for link in "$1"/*; do
    case $link in *[!A-Za-z0-9/._:+@-]*) continue ;; esac
    if [ "$(readlink -f "$link")" = "$2" ]; then echo "$link"; return 0; fi
  done
  echo "WARNING: no $1 link for $2; NixOS will name it $2" >&2
}}
record_boot_devices() {{
  local root firmware=bios root_link grub_link=""
  root=$(findmnt -nro SOURCE /)
  root_link=$(stable_link /dev/disk/by-uuid "$root")
  if [ -d /sys/firmware/efi ]; then
    firmware=efi
  else
    grub_link=$(stable_link /dev/disk/by-id "/dev/$(lsblk -ndo PKNAME "$root")")
  fi
  {{
    printf '{{"firmware": "%s"' "$firmware"
    [ -z "$root_link" ] || printf ', "rootDevice": "%s"' "$root_link"
    [ -z "$grub_link" ] || printf ', "grubDevice": "%s"' "$grub_link"
    printf '}}\\n'
  }} >{BOOT_DEVICES_FACTS}
  echo "boot devices: $(cat {BOOT_DEVICES_FACTS})"
}}"""


def _functions(reboot_delay_seconds: int) -> list[str]:
    return [
        "fetch() {",
        '  curl --fail --silent --show-error --location --retry 5 --output "$2" "$1"',
        "}",
        "verify() {",
        '  echo "$1  $2" | sha256sum --check --strict --quiet >/dev/null 2>&1 || {',
        '    echo "$3: SHA-256 mismatch (expected $1); nothing was run" >&2',
        "    exit 1",
        "  }",
        "}",
        _RECORD_BOOT_DEVICES,
        "schedule_reboot() {",
        f"  systemd-run --on-active={reboot_delay_seconds} --timer-property=AccuracySec=1s"
        " systemctl reboot >/dev/null",
        # No new session may reach Debian any more: `nixos-ready` dials (refused) until NixOS
        # answers instead of finding Debian in the seconds before the reboot. This session
        # ends normally: sessions live in their own scope, and Debian's ssh.service has
        # KillMode=process (the switch script does the same, components/scripts/).
        "  systemctl stop ssh.service ssh.socket >/dev/null 2>&1 || true",
        f'  echo "rebooting into NixOS in {reboot_delay_seconds} s"',
        "}",
        "fail() {",
        f'  echo "$1; the last {TAIL_LINES} lines of {INSTALL_LOG}:" >&2',
        f"  tail -n {TAIL_LINES} {INSTALL_LOG} >&2 || true",
        # nixos-infect moved Debian's boot files aside: this Debian may not boot again.
        "  if [ -e /boot.bak ] || [ -e /boot/efi.bak ]; then",
        '    echo "Debian\'s boot files were moved aside (/boot.bak): do not reboot this server;'
        ' fix the cause and run pulumi up again, or replace the server" >&2',
        "  fi",
        "  exit 1",
        "}",
    ]


def _wait(progress_seconds: int, poll_seconds: int) -> list[str]:
    """Wait for the unit's exit status; a progress line every `progress_seconds`."""
    status = f"{INSTALL_DIR}/status"
    return [
        "start=$(date +%s)",
        f"next=$((start + {progress_seconds}))",
        f"until [ -s {status} ]; do",
        f"  if ! systemctl is-active --quiet {INSTALL_UNIT} && [ ! -s {status} ]; then",
        f'    fail "nixos-infect stopped without an exit status ({INSTALL_UNIT} was killed?)"',
        "  fi",
        "  now=$(date +%s)",
        '  if [ "$now" -ge "$next" ]; then',
        '    echo "nixos-infect running for $((now - start)) s:'
        f' $(tail -n 1 {INSTALL_LOG} | cut -c1-200)"',
        f"    next=$((next + {progress_seconds}))",
        "  fi",
        f"  sleep {poll_seconds}",
        "done",
        f"code=$(cat {status})",
        '[ "$code" = 0 ] || fail "nixos-infect failed (exit $code)"',
    ]


def install_script(
    nixos_release: str,
    *,
    nix_installer: Download = NIX_INSTALLER,
    progress_seconds: int = PROGRESS_SECONDS,
    poll_seconds: int = 5,
    reboot_delay_seconds: int = REBOOT_DELAY_SECONDS,
) -> str:
    """The `create` of `nixos-install`: install NixOS on this Debian, or do nothing on NixOS.

    nixos-infect runs in a transient systemd unit, so a dropped SSH session cannot kill it; a
    second run while it is still running waits for it. Exits 1 with the log tail on stderr when
    it fails, and 0 with the reboot scheduled a few seconds later when it succeeded. Contains no
    secret.
    """
    # It goes into the script's text: only a release name (nixpkgs_pin.BRANCH) may.
    if not BRANCH.fullmatch(nixos_release):
        raise ValueError(f"nixos_release: {nixos_release!r} is not nixos-YY.05 or nixos-YY.11")
    status = f"{INSTALL_DIR}/status"
    return "\n".join(
        [
            "set -euo pipefail",
            "umask 022",
            *_functions(reboot_delay_seconds),
            "if grep -qx ID=nixos /etc/os-release; then",
            '  echo "already NixOS: nothing to install"',
            "  exit 0",
            "fi",
            f'if [ -s {status} ] && [ "$(cat {status})" = 0 ]; then',
            '  echo "NixOS is installed; the reboot into it is still pending"',
            "  schedule_reboot",
            "  exit 0",
            "fi",
            f"if systemctl is-active --quiet {INSTALL_UNIT}; then",
            '  echo "nixos-infect is already running; waiting for it"',
            "else",
            # sshd answers before cloud-init's last stages finish (apt, runcmd): let them end.
            "  cloud-init status --wait >/dev/null 2>&1 || true",
            # Not indented: the here-documents must stay byte for byte.
            *_prepare(nixos_release, nix_installer),
            f'  echo "=== nixos-install: nixos-infect {NIXOS_INFECT_COMMIT} (patched), '
            f'{nixos_release}, $(date -u +%FT%TZ)" >>{INSTALL_LOG}',
            f"  systemctl reset-failed {INSTALL_UNIT} 2>/dev/null || true",
            f"  systemd-run --unit={INSTALL_UNIT} --description='nixos-infect (nixos-install)'"
            f" bash {INSTALL_DIR}/run-infect >/dev/null",
            f'  echo "nixos-infect started ({INSTALL_UNIT}); log: {INSTALL_LOG}"',
            "fi",
            *_wait(progress_seconds, poll_seconds),
            f'echo "nixos-infect finished: NixOS {nixos_release} is installed"',
            "schedule_reboot",
        ]
    )


# Where NixOS's first boot after nixos-infect moved Debian's root (NIXOS_LUSTRATE: nixpkgs
# nixos/modules/system/boot/stage-1-init.sh, the lustrate block, moves every top-level entry but
# /nix and /boot into /old-root). It holds cloud-init's copy of the user_data -- the SSH host
# private key -- and nothing NixOS uses.
OLD_ROOT = "/old-root"


def remove_old_root(path: str = OLD_ROOT) -> list[str]:
    """Shell lines that delete Debian's leftover root, on its own file system only.

    The user_data itself stays with Hetzner's metadata service, which nixos/hetzner.nix blocks
    for every local process (the table `mailman-site-metadata` stays for that reason).
    """
    quoted = shlex.quote(path)
    return [
        f"if [ -d {quoted} ]; then",
        f"  rm -rf --one-file-system -- {quoted}",
        f"  echo \"removed {path} (Debian's root left by the installer, with a copy of the"
        ' SSH host key)"',
        "fi",
    ]
