"""components/installer.py without running it: pins, patch file, user_data, script shape."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.installer import (
    NIX_INSTALLER,
    NIXOS_INFECT_COMMIT,
    NIXOS_INFECT_SHA256,
    NIXOS_INFECT_URL,
    PATCH_FILE,
    PATCHED_SHA256,
    install_script,
    user_data,
)
from tests.components.installer_sandbox import sandbox

SCRIPT = install_script("nixos-26.05")


def test_pins_are_full_commit_and_sha256s():
    assert re.fullmatch(r"[0-9a-f]{40}", NIXOS_INFECT_COMMIT)
    for digest in (NIXOS_INFECT_SHA256, PATCHED_SHA256, NIX_INSTALLER.sha256):
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert f"/{NIXOS_INFECT_COMMIT}/nixos-infect" in NIXOS_INFECT_URL
    assert NIX_INSTALLER.url == "https://releases.nixos.org/nix/nix-2.34.8/install"


def test_patch_file_says_what_why_and_upstream_and_touches_only_prepare_env():
    text = PATCH_FILE.read_text()
    header = text[: text.index("--- a/nixos-infect")]
    for needle in ("What:", "Why:", "#261", "#264", "619b197", NIXOS_INFECT_COMMIT):
        assert needle in header
    added = [
        line for line in text.splitlines() if line.startswith("+") and line != "+++ b/nixos-infect"
    ]
    removed = [
        line for line in text.splitlines() if line.startswith("-") and line != "--- a/nixos-infect"
    ]
    assert added == ["+    bootFs=/boot"]
    assert removed == []


def test_the_patch_travels_inside_the_script_unchanged():
    assert PATCH_FILE.read_text().rstrip("\n") in SCRIPT


def test_user_data_is_only_the_host_key():
    text = user_data("PRIVATE\n", "ssh-ed25519 AAAA\n")
    assert text.startswith("#cloud-config\n")
    assert yaml.safe_load(text) == {
        "ssh_deletekeys": True,
        "ssh_keys": {"ed25519_private": "PRIVATE\n", "ed25519_public": "ssh-ed25519 AAAA"},
        "ssh_genkeytypes": [],
        "disable_root": False,
    }


def _line(needle: str) -> int:
    return next(i for i, line in enumerate(SCRIPT.splitlines()) if needle in line)


def test_everything_is_checked_before_it_is_used():
    assert _line(f"verify {NIXOS_INFECT_SHA256}") < _line("patch --quiet")
    assert _line("patch --quiet") < _line(f"verify {PATCHED_SHA256}")
    assert _line(f"verify {NIX_INSTALLER.sha256}") < _line("systemd-run --unit=")
    assert _line(f"verify {PATCHED_SHA256}") < _line("systemd-run --unit=")
    assert SCRIPT.startswith("set -euo pipefail\n")


def test_nixos_infect_runs_with_our_settings_and_without_rebooting_itself():
    runner = SCRIPT[SCRIPT.index("<<'END_OF_RUNNER'") :]
    assert (
        "PROVIDER=hetznercloud NIX_CHANNEL=nixos-26.05 NO_REBOOT=1"
        " NIX_INSTALL_URL=file:///root/nixos-install/nix-install"
        " NIXOS_IMPORT=./boot-devices.nix bash /root/nixos-install/nixos-infect" in runner
    )


def test_on_nixos_it_stops_first():
    assert _line("grep -qx ID=nixos /etc/os-release") < _line("fetch ")


@pytest.mark.parametrize("release", ["nixos-unstable", "26.05", "nixos-26.05; rm -rf /"])
def test_refuses_a_release_it_cannot_quote_safely(release):
    with pytest.raises(ValueError, match="nixos_release"):
        install_script(release)


def test_sandbox_and_stubs_pass_shellcheck():
    """The sandbox that runs the installer as root must itself be sound shell."""
    tool = shutil.which("shellcheck")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (apt package shellcheck)")
        pytest.skip("shellcheck is not installed")
    sandbox = Path(__file__).resolve().parent / "installer_sandbox"
    scripts = [sandbox / "sandbox.sh", *sorted((sandbox / "stubs").iterdir())]
    result = subprocess.run([tool, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_missing_pinned_nixos_infect_fails_under_ci_with_one_line(tmp_path, monkeypatch):
    wrong = tmp_path / "nixos-infect"
    wrong.write_text("#!/bin/bash\necho not the pinned file\n")
    monkeypatch.setenv(sandbox.ENV_PATH, str(wrong))
    monkeypatch.setenv(sandbox.MIRROR_ENV, str(tmp_path / "no-mirror"))
    monkeypatch.setattr(sandbox, "CACHE", tmp_path / "no-cache")
    monkeypatch.setattr(sandbox, "_download", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        sandbox.pinned_nixos_infect()
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("pinned nixos-infect not found (")
    assert f"{wrong}: wrong SHA-256" in message
    assert ": unreachable" in message
