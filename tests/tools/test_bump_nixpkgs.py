"""tools/bump_nixpkgs.py against a fixture: a local git "nixpkgs" and its tarball, no network.

The real git runs; the hash the script computes is checked against `nix-hash` and accepted by
the real `builtins.fetchTarball` of nixos/nixpkgs.nix (a Nix store in the test's temp dir). Only
the remote and the download URL point at the fixture.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from components.nixpkgs_pin import PIN_FILE, NixpkgsPin, load_pin, render_pin
from tests.nixos.nixos_support import NIXOS, REPO, require_tool

sys.path.insert(0, str(REPO / "tools"))
import bump_nixpkgs

OLD = NixpkgsPin(
    "nixos-26.05",
    "7fc6f2c20af09cdcaf48b92ec3121860139ec668",
    "https://github.com/NixOS/nixpkgs/archive/7fc6f2c20af09cdcaf48b92ec3121860139ec668.tar.gz",
    "sha256-bNyvoIyOCu7lzoCpWKWGIsHpTtERUWzqYWFPlN++WTw=",
)


def test_nix_base32_matches_two_public_pins_of_the_same_commit():
    """nixpkgs 74cc63f: one project pins it as Nix base32 (fetchTarball sha256), another as a
    flake.lock narHash; the conversion maps one onto the other."""
    assert (
        bump_nixpkgs.sri_sha256("102brk31m46v3p5n630zdl230ni0hjxrigc6n601k10rds8dqyfi")
        == "sha256-0XnckG4ZhBmAsYa9mLuEIFowBG0fDGPLHduQGsbMS4A="
    )


def test_nix_base32_agrees_with_nix_hash(tmp_path):
    nix_hash = require_tool("nix-hash")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a").write_text("hello\n")
    env = {**os.environ, "NIX_CONFIG": "build-users-group ="}
    hex_hash, b32 = (
        subprocess.run(
            [nix_hash, "--type", "sha256", *flag, str(tmp_path / "tree")],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        for flag in ([], ["--base32"])
    )
    assert bump_nixpkgs.nix_base32_to_bytes(b32).hex() == hex_hash


def test_nar_hash_equals_nix_hash_for_files_dirs_symlinks_and_exec_bits(tmp_path):
    nix_hash = require_tool("nix-hash")
    tree = tmp_path / "tree"
    (tree / "pkgs" / "a-b").mkdir(parents=True)
    (tree / "pkgs" / "a.b").write_text("dot\n")
    (tree / "pkgs" / "B").write_text("")  # upper case sorts before lower case (bytes)
    (tree / "pkgs" / "a-b" / "deep.nix").write_text("{ }: 1\n" * 1000)
    (tree / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("pkgs/a.b")
    (tree / "dangling").symlink_to("../nowhere")
    env = {**os.environ, "NIX_CONFIG": "build-users-group ="}
    expected = subprocess.run(
        [nix_hash, "--type", "sha256", str(tree)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()

    sri = bump_nixpkgs.nar_sha256(tree)

    assert base64.b64decode(sri.removeprefix("sha256-")).hex() == expected


def test_a_bad_base32_hash_is_refused():
    with pytest.raises(bump_nixpkgs.BumpError):
        bump_nixpkgs.nix_base32_to_bytes("e" * 52)


class Fixture:
    """A git repository standing in for NixOS/nixpkgs, and tarballs of its commits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "nixpkgs.git"
        self.tarballs = root / "archive"
        self.tarballs.mkdir()
        self.env = {
            **os.environ,
            "NIX_CONFIG": "build-users-group =",
            "NIX_STORE_DIR": str(root / "nix" / "store"),
            "NIX_STATE_DIR": str(root / "nix" / "var"),
            "NIX_LOG_DIR": str(root / "nix" / "log"),
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        }
        self._git("init", "-q", "-b", "nixos-26.05", str(self.repo))

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, env=self.env
        ).stdout.strip()

    def commit(self, release: str, content: str, branch: str = "nixos-26.05") -> str:
        self._git("-C", str(self.repo), "checkout", "-q", "-B", branch)
        (self.repo / ".version").write_text(release + "\n")
        (self.repo / "default.nix").write_text(content)
        (self.repo / "maintainers").mkdir(exist_ok=True)
        (self.repo / "maintainers" / "update.sh").write_text("#!/bin/sh\n")
        (self.repo / "maintainers" / "update.sh").chmod(0o755)
        if not (self.repo / "lib").is_symlink():
            (self.repo / "lib").symlink_to("maintainers")
        self._git("-C", str(self.repo), "add", "-A")
        self._git("-C", str(self.repo), "commit", "-q", "-m", content)
        rev = self._git("-C", str(self.repo), "rev-parse", "HEAD")
        # What GitHub serves at archive/<rev>.tar.gz: the tree under one top directory.
        with tarfile.open(self.tarballs / f"{rev}.tar.gz", "w:gz") as tar:
            for name in (".version", "default.nix", "maintainers", "lib"):
                tar.add(self.repo / name, arcname=f"nixpkgs-{rev}/{name}")
        return rev

    def bump(self, pin: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(REPO / "tools" / "bump_nixpkgs.py"),
                "--pin",
                str(pin),
                "--remote",
                str(self.repo),
                "--fetch-url",
                f"file://{self.tarballs}/{{rev}}.tar.gz",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )


@pytest.fixture
def fixture(tmp_path: Path) -> Fixture:
    require_tool("git")
    return Fixture(tmp_path)


@pytest.fixture
def pin(tmp_path: Path) -> Path:
    path = tmp_path / "nixpkgs-pin.json"
    path.write_text(render_pin(OLD))
    return path


def test_bump_moves_the_pin_to_the_branch_head_with_its_nar_hash(fixture, pin, tmp_path):
    fixture.commit("26.05", "{ }: 1\n")
    head = fixture.commit("26.05", "{ }: 2\n")
    outputs = tmp_path / "github-output"

    result = fixture.bump(pin, "--github-output", str(outputs))

    assert result.returncode == 0, result.stderr
    new = load_pin(pin)
    assert (new.branch, new.rev) == ("nixos-26.05", head)
    assert new.url == f"https://github.com/NixOS/nixpkgs/archive/{head}.tar.gz"
    assert f"nixpkgs pin moved: nixos-26.05 {OLD.rev} -> nixos-26.05 {head}" in result.stdout
    assert outputs.read_text() == (
        f"changed=true\nold_rev={OLD.rev}\nnew_rev={head}\nbranch=nixos-26.05\n"
    )
    # The hash is what builtins.fetchTarball checks: nixos/nixpkgs.nix accepts the tarball with
    # it, and refuses it with any other.
    source = _fetch_with_nixpkgs_nix(fixture, head, new.sha256)
    assert source.returncode == 0, source.stderr
    assert Path(json.loads(source.stdout), "default.nix").read_text() == "{ }: 2\n"
    other = "sha256-" + base64.b64encode(b"\0" * 32).decode()
    assert _fetch_with_nixpkgs_nix(fixture, head, other).returncode != 0


def _fetch_with_nixpkgs_nix(fixture: Fixture, rev: str, sha256: str):
    nix_instantiate = require_tool("nix-instantiate")
    url = f"file://{fixture.tarballs}/{rev}.tar.gz"
    deployment = f'{{ nixpkgs = {{ url = "{url}"; sha256 = "{sha256}"; }}; }}'
    return subprocess.run(
        [
            nix_instantiate,
            "--eval",
            "--json",
            str(NIXOS / "nixpkgs.nix"),
            "--arg",
            "deployment",
            deployment,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=fixture.env,
    )


def test_dry_run_writes_nothing(fixture, pin):
    head = fixture.commit("26.05", "{ }: 3\n")

    result = fixture.bump(pin, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert f"would move: nixos-26.05 {OLD.rev} -> nixos-26.05 {head}" in result.stdout
    assert load_pin(pin) == OLD


def test_a_current_pin_is_left_alone(fixture, pin, tmp_path):
    head = fixture.commit("26.05", "{ }: 4\n")
    assert fixture.bump(pin).returncode == 0
    before = pin.read_text()
    outputs = tmp_path / "out"

    result = fixture.bump(pin, "--github-output", str(outputs))

    assert result.returncode == 0
    assert f"nixpkgs pin is current: nixos-26.05 {head}" in result.stdout
    assert pin.read_text() == before
    assert outputs.read_text().startswith("changed=false\n")


def test_a_revision_of_another_release_is_refused(fixture, pin):
    fixture.commit("26.11", "{ }: 5\n")

    result = fixture.bump(pin)

    assert result.returncode == 2
    assert "is nixpkgs release 26.11, not 26.05" in result.stderr
    assert load_pin(pin) == OLD


def test_a_release_upgrade_takes_the_new_branch(fixture, pin):
    fixture.commit("26.05", "{ }: 6\n")
    head = fixture.commit("26.11", "{ }: 7\n", branch="nixos-26.11")

    result = fixture.bump(pin, "--branch", "nixos-26.11")

    assert result.returncode == 0, result.stderr
    assert (load_pin(pin).branch, load_pin(pin).rev) == ("nixos-26.11", head)


def test_the_committed_pin_is_valid():
    assert load_pin(PIN_FILE).branch == "nixos-26.05"


def test_comment_shows_old_and_new_revision_and_changed_versions(tmp_path):
    new = NixpkgsPin(
        "nixos-26.05",
        "a" * 40,
        f"https://github.com/NixOS/nixpkgs/archive/{'a' * 40}.tar.gz",
        OLD.sha256,
    )
    files = {
        "old-pin": render_pin(OLD),
        "new-pin": render_pin(new),
        "old-versions": json.dumps(
            {
                "postfix": "3.10.1",
                "nginx": "1.28.0",
                "mailman": "3.3.10",
                "postgresql": "17.5",
                "openssl": "3.5.1",
                "openssh": "10.0p2",
                "kernel": "6.12.40",
            }
        ),
        "new-versions": json.dumps(
            {
                "postfix": "3.10.1",
                "nginx": "1.28.1",
                "mailman": "3.3.10",
                "postgresql": "17.6",
                "openssl": "3.5.2",
                "openssh": "10.0p2",
                "kernel": "6.12.44",
            }
        ),
    }
    args = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        args += [f"--{name}", str(tmp_path / name)]

    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bump_nixpkgs.py"), "comment", *args],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"`{OLD.rev[:12]}` → `nixos-26.05` `{'a' * 12}`" in text
    assert f"compare/{OLD.rev}...{'a' * 40}" in text
    assert "Changed: nginx, postgresql, openssl, kernel." in text
    assert "the switch reboots the host" in text
    assert "| nginx | 1.28.0 | **1.28.1** |" in text
    assert "| postfix | 3.10.1 | 3.10.1 |" in text


def test_package_versions_nix_parses():
    nix_instantiate = require_tool("nix-instantiate")
    result = subprocess.run(
        [nix_instantiate, "--parse", str(REPO / "tools" / "package-versions.nix")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NIX_CONFIG": "build-users-group ="},
    )
    assert result.returncode == 0, result.stderr
