"""Paths and helpers shared by the NixOS configuration tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NIXOS = REPO / "nixos"
DOCUMENTS = Path(__file__).resolve().parent / "documents"
SCHEMA = NIXOS / "deployment.schema.json"

def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips locally and fails under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (CI installs it through .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path




def nix_env() -> dict[str, str]:
    # Debian's nix-bin wants a writable state/cache directory and no daemon for --parse/--eval.
    env = dict(os.environ)
    env.setdefault("NIX_STATE_DIR", "/tmp/nix-state")
    env.setdefault("XDG_CACHE_HOME", "/tmp/nix-cache")
    # No builds happen here, so no build users: keeps nix-bin's warning out of the output.
    env.setdefault("NIX_CONFIG", "build-users-group =")
    return env


class EvalError(Exception):
    """nix-instantiate refused the document; the message is Nix's error text."""
