"""Paths and helpers shared by the NixOS configuration tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.deployment_document import SCHEMA_FILE

REPO = Path(__file__).resolve().parents[2]
NIXOS = REPO / "nixos"
DOCUMENTS = Path(__file__).resolve().parent / "documents"
SCHEMA = SCHEMA_FILE  # one file for both sides: components/deployment.schema.json


def require_tool(name: str, *, sbin: bool = False) -> str:
    """The tool's path; a missing tool skips locally and fails under CI=true.

    `sbin`: also look in /usr/sbin and /usr/bin (Debian's daemons, e.g. Postfix's commands,
    live there and a non-root PATH may lack it)."""
    path = shutil.which(
        name, path=os.environ.get("PATH", "") + (":/usr/sbin:/usr/bin" if sbin else "")
    )
    if path is None:
        message = f"{name} is not installed (CI installs it through .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    # No builds happen here, so no build users: keeps nix-bin's warning out of the output.
    env.setdefault("NIX_CONFIG", "build-users-group =")
    return env


def assert_parses(nix_instantiate: str, path: Path) -> None:
    """`nix-instantiate --parse` accepts the file (the real Nix parser)."""
    result = subprocess.run(
        [nix_instantiate, "--parse", str(path)],
        capture_output=True,
        text=True,
        env=nix_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr


class EvalError(Exception):
    """nix-instantiate refused the expression; the message is Nix's error text."""


def evaluate_json(nix_instantiate: str, *arguments: str) -> Any:
    """`nix-instantiate --eval --strict --json` for real (builtins only), the value as Python."""
    result = subprocess.run(
        [nix_instantiate, "--eval", "--strict", "--json", *arguments],
        capture_output=True,
        text=True,
        env=nix_env(),
        check=False,
    )
    if result.returncode != 0:
        raise EvalError(result.stderr)
    return json.loads(result.stdout)


def read_document(nix_instantiate: str, document_path: Path) -> Any:
    """What nixos/deployment.nix makes of a document."""
    return evaluate_json(
        nix_instantiate,
        str(NIXOS / "deployment.nix"),
        "--arg",
        "documentPath",
        str(document_path),
    )
