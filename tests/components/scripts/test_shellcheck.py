"""shellcheck on every shell script of the deploy chain, and on the commands it generates."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.host import (
    nixos_ready_script,
    resize_stop_script,
    volume_grow_script,
    volume_release_script,
)
from components.installer import install_script
from components.nixos import final_health_command, write_file_command

SCRIPTS = sorted((Path(__file__).resolve().parents[3] / "components" / "scripts").glob("*.sh"))


@pytest.fixture(scope="module")
def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (apt package shellcheck)")
        pytest.skip("shellcheck is not installed")
    return path


def check(shellcheck: str, path: Path) -> None:
    result = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_scripts_to_check():
    assert "switch-with-rollback.sh" in [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_passes_shellcheck(shellcheck, script):
    check(shellcheck, script)


@pytest.mark.parametrize(
    "generated",
    [
        write_file_command("/etc/nixos/modules/mailman.nix"),
        write_file_command(
            "/var/lib/mailman-site/secrets/rest-api-password",
            mode="0600",
            dir_mode="0700",
            restart_units=("mailman.service", "mailman-uwsgi.service"),
        ),
        final_health_command(),
        install_script("nixos-26.05"),
        nixos_ready_script("203.0.113.10"),
        resize_stop_script("cx23", "cx33"),
        volume_grow_script("/dev/disk/by-id/scsi-0HC_Volume_1"),
        volume_release_script(),
    ],
    ids=["file", "secret", "final-health", "install", "ready", "resize-stop", "grow", "release"],
)
def test_generated_commands_pass_shellcheck(shellcheck, tmp_path, generated):
    path = tmp_path / "command.sh"
    # root's login shell runs them, bash on Debian 12 and on NixOS.
    path.write_text("#!/bin/bash\n" + generated)
    check(shellcheck, path)
