"""shellcheck on every shell script of the configuration, including the ones embedded in Nix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nix_options import STORE_PATH_STANDIN, ShellScript, embedded_shell_scripts
from nixos_support import NIXOS

SCRIPT_FILES = sorted((NIXOS / "scripts").glob("*.sh"))
NIX_FILES = sorted(NIXOS.rglob("*.nix"))


def _embedded() -> list[tuple[Path, ShellScript]]:
    return [
        (path, script)
        for path in NIX_FILES
        for script in embedded_shell_scripts(path.read_text(), path.parent)
    ]


EMBEDDED = _embedded()


def run_shellcheck(shellcheck: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.sh"
    script.write_text(text)
    return subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_script_file_passes_shellcheck(shellcheck: str, path: Path, tmp_path: Path) -> None:
    result = run_shellcheck(shellcheck, path.read_text(), tmp_path)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("path", "script"), EMBEDDED, ids=[f"{p.name}:{s.name}" for p, s in EMBEDDED]
)
def test_embedded_script_passes_shellcheck(
    shellcheck: str, path: Path, script: ShellScript, tmp_path: Path
) -> None:
    result = run_shellcheck(shellcheck, "#!/usr/bin/env bash\n" + script.text, tmp_path)
    assert result.returncode == 0, result.stdout


def test_every_embedded_script_is_found() -> None:
    names = {script.name for _, script in EMBEDDED}
    assert {
        "mailman-site-install-dkim-key",
        "mailman-site-volume-dirs",
        "mailman-site-health",
        "mailman-reconcile",
        "script",  # the VM test's stand-in for the deploy chain
    } <= names


def test_health_command_is_checked_as_nix_builds_it() -> None:
    (script,) = [s for _, s in EMBEDDED if s.name == "mailman-site-health"]
    assert script.text.startswith(f"export MAILMAN_SITE_HOSTNAME={STORE_PATH_STANDIN}\n")
    assert "check_outbound()" in script.text


def test_shellcheck_catches_an_unquoted_variable(shellcheck: str, tmp_path: Path) -> None:
    result = run_shellcheck(shellcheck, '#!/usr/bin/env bash\nrm -rf $1/data\n', tmp_path)
    assert "SC2086" in result.stdout
