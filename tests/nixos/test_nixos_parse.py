"""Every .nix file of nixos/ is valid Nix, for Nix's parser and for the option checker's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nix_options import parse
from nixos_support import NIXOS, assert_parses, nix_env

NIX_FILES = sorted(NIXOS.rglob("*.nix"))


def test_the_configuration_has_its_modules() -> None:
    names = {path.name for path in NIX_FILES}
    assert {
        "configuration.nix",
        "deployment.nix",
        "site.nix",
        "mailman.nix",
        "database.nix",
        "postfix.nix",
        "web.nix",
        "dkim.nix",
        "hetzner.nix",
        "storage.nix",
        "hardening.nix",
        "backup.nix",
        "health.nix",
        "reconcile.nix",
        "mailman-site.nix",
    } <= names


@pytest.mark.nix
@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(NIXOS)))
def test_nix_parses_the_file(nix_instantiate: str, path: Path) -> None:
    assert_parses(nix_instantiate, path)


@pytest.mark.nix
def test_nix_parse_rejects_a_broken_file(nix_instantiate: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nix"
    broken.write_text("{ services.postfix.enable = true }\n")
    result = subprocess.run(
        [nix_instantiate, "--parse", str(broken)], capture_output=True, env=nix_env(), check=False
    )
    assert result.returncode != 0


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(NIXOS)))
def test_tree_sitter_parses_the_file(path: Path) -> None:
    parse(path.read_text())


def test_tree_sitter_rejects_a_broken_file() -> None:
    with pytest.raises(ValueError, match="Nix syntax error"):
        parse("{ services.postfix.enable = true }\n")
