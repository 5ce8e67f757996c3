"""A fake NixOS host in a temp dir, for running components/scripts/switch-with-rollback.sh for real.

The fakes model just enough of NixOS for the script's control flow to be observable: a system
profile with numbered generation links (nix-env), store paths for systems that carry a kernel,
initrd and a `bin/switch-to-configuration` which makes the system current, `nixos-rebuild build`
producing `./result`, the pinned nixpkgs (nix-instantiate of nixos/nixpkgs.nix),
and a health check that passes only when the running
system is marked healthy. Every fake command appends its argv to calls.log.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[3] / "components" / "scripts" / "switch-with-rollback.sh"

_LOG = 'printf "%s\\n" "$(basename "$0") $*" >> "$FAKE_ROOT/calls.log"\n'

_FAKES = {
    "nixos-rebuild": _LOG
    + """[ "$1" = build ] || { echo "fake nixos-rebuild only builds" >&2; exit 64; }
echo "building the system configuration..."
[ ! -f "$FAKE_ROOT/build-seconds" ] || sleep "$(cat "$FAKE_ROOT/build-seconds")"
if [ -f "$FAKE_ROOT/build-fails" ]; then
  echo "error: attribute 'mailmn' missing at /etc/nixos/mailman.nix:12:5" >&2
  exit 1
fi
ln -s "$FAKE_ROOT/store/$(cat "$FAKE_ROOT/next-build")" result
""",
    "nix-env": _LOG
    + """profile=$2
case "$3" in
  --set)
    n=$(ls -d "$profile"-*-link 2>/dev/null | sed 's/.*-\\([0-9]*\\)-link$/\\1/' \\
      | sort -n | tail -1)
    n=$(( ${n:-0} + 1 ))
    ln -s "$4" "$profile-$n-link"
    ln -sfn "$(basename "$profile")-$n-link" "$profile" ;;
  --switch-generation)
    [ -e "$profile-$4-link" ] || { echo "generation $4 does not exist" >&2; exit 1; }
    ln -sfn "$(basename "$profile")-$4-link" "$profile" ;;
  *) echo "fake nix-env: unsupported $*" >&2; exit 64 ;;
esac
""",
    # nixos/nixpkgs.nix evaluated: builtins.fetchTarball of the pinned revision ($FAKE_ROOT/pin)
    # gives its store path, or fails as on a hash mismatch or a failed download.
    "nix-instantiate": _LOG
    + """if [ -f "$FAKE_ROOT/pin-fetch-fails" ]; then
  echo "error: hash mismatch in file downloaded from 'https://github.com/.../x.tar.gz'" >&2
  exit 1
fi
source="$FAKE_ROOT/store/nixpkgs-$(cat "$FAKE_ROOT/pin")"
mkdir -p "$source"
printf '"%s"\\n' "$source"
""",
    "systemctl": _LOG
    + """if [ "$1" = list-units ]; then
  [ -f "$FAKE_ROOT/failed-units" ] \\
    && sed 's/$/ loaded failed failed Some service/' "$FAKE_ROOT/failed-units"
fi
exit 0
""",
    "journalctl": _LOG + 'echo "journal line of $2: Fatal: cannot bind 127.0.0.1:8001"\n',
    # The activation unit runs its command and passes its output and status on (--pipe); the
    # scheduled reboot only records that it was asked for.
    "systemd-run": _LOG
    + """case " $* " in
  *" --unit=nixos-rebuild-switch-to-configuration "*) exec "${@: -2:1}" "${@: -1}" ;;
esac
""",
    "mailman-site-health": _LOG
    + """if [ -f "$MAILMAN_SITE_CURRENT_SYSTEM/healthy" ]; then
  echo "ok   smtp: 220 banner on 25"; exit 0
fi
echo "FAIL rest: http://127.0.0.1:8001 connection refused"; exit 1
""",
}

_SWITCH_TO_CONFIGURATION = (
    _LOG
    + """system=$(dirname "$(dirname "$0")")
# Like the real one: the system is activated, then units that failed to start are reported (4).
if [ "$1" = switch ]; then ln -sfn "$system" "$MAILMAN_SITE_CURRENT_SYSTEM"; fi
if [ -f "$system/activation-fails" ]; then
  echo "warning: the following units failed: mailman.service" >&2; exit 4
fi
"""
)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class FakeHost:
    """A NixOS host whose generation 1 (system `gen1`, healthy) is running and booted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for name, body in _FAKES.items():
            self._script(self.bin / name, body)
        (root / "profiles").mkdir()
        (root / "run").mkdir()
        (root / "store").mkdir()
        (root / "etc-nixos").mkdir()
        (root / "pin").write_text("rev1\n")
        (root / "calls.log").touch()
        self.add_system("gen1", kernel="6.12.1", healthy=True)
        (root / "profiles" / "system-1-link").symlink_to(root / "store" / "gen1")
        (root / "profiles" / "system").symlink_to("system-1-link")
        (root / "run" / "current-system").symlink_to(root / "store" / "gen1")
        (root / "run" / "booted-system").symlink_to(root / "store" / "gen1")

    @staticmethod
    def _script(path: Path, body: str) -> None:
        path.write_text("#!/usr/bin/env bash\nset -eu\n" + body)
        path.chmod(0o755)

    def add_system(
        self,
        name: str,
        *,
        kernel: str,
        healthy: bool,
        params: str = "console=ttyS0",
        activation_fails: bool = False,
    ) -> None:
        """A system closure in the fake store; its kernel files point into a per-version dir."""
        system = self.root / "store" / name
        (system / "bin").mkdir(parents=True)
        kernel_dir = self.root / "store" / f"linux-{kernel}"
        kernel_dir.mkdir(exist_ok=True)
        for part in ("bzImage", "initrd", "lib"):
            (kernel_dir / part).touch()
        (system / "kernel").symlink_to(kernel_dir / "bzImage")
        (system / "initrd").symlink_to(kernel_dir / "initrd")
        (system / "kernel-modules").symlink_to(kernel_dir / "lib")
        (system / "kernel-params").write_text(params + "\n")
        self._script(system / "bin" / "switch-to-configuration", _SWITCH_TO_CONFIGURATION)
        if healthy:
            (system / "healthy").touch()
        if activation_fails:
            (system / "activation-fails").touch()

    def build_next(self, name: str, **system: Any) -> None:
        """Make `nixos-rebuild build` produce `name`; with `system` arguments, add it first."""
        if system:
            self.add_system(name, **system)
        (self.root / "next-build").write_text(name)

    def reboot(self) -> None:
        """What the scheduled reboot does: boot the profile's current generation."""
        booted = (self.root / "profiles" / "system").resolve()
        for link in ("current-system", "booted-system"):
            (self.root / "run" / link).unlink()
            (self.root / "run" / link).symlink_to(booted)

    def run(self, *args: str, **extra_env: str) -> Result:
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_ROOT": str(self.root),
            "MAILMAN_SITE_PROFILE": str(self.root / "profiles" / "system"),
            "MAILMAN_SITE_CURRENT_SYSTEM": str(self.root / "run" / "current-system"),
            "MAILMAN_SITE_BOOTED_SYSTEM": str(self.root / "run" / "booted-system"),
            "MAILMAN_SITE_ETC_NIXOS": str(self.root / "etc-nixos"),
            "MAILMAN_SITE_STATE_DIR": str(self.root / "state"),
            "MAILMAN_SITE_HEALTH_TIMEOUT": "0",
            "MAILMAN_SITE_HEALTH_INTERVAL": "0",
            **extra_env,
        }
        proc = subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    @property
    def calls(self) -> list[str]:
        return (self.root / "calls.log").read_text().splitlines()

    @property
    def running(self) -> str:
        return (self.root / "run" / "current-system").resolve().name

    @property
    def boot_default(self) -> str:
        return (self.root / "profiles" / "system").resolve().name

    def pin(self, rev: str) -> None:
        """Make deployment.json name another nixpkgs revision (a bump)."""
        (self.root / "pin").write_text(rev + "\n")

    def nixpkgs_path(self, rev: str) -> str:
        return str(self.root / "store" / f"nixpkgs-{rev}")
