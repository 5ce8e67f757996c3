"""Fixtures for the NixOS configuration tests: the real tools, or a skip (a failure under CI)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nixos_support import DOCUMENTS, SCHEMA, read_document, require_tool


@pytest.fixture(scope="session")
def nix_instantiate() -> str:
    return require_tool("nix-instantiate")


@pytest.fixture(scope="session")
def shellcheck() -> str:
    return require_tool("shellcheck")


@pytest.fixture(scope="session")
def evaluate(
    nix_instantiate: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Any], Any]:
    """Evaluates nixos/deployment.nix for real on a document (a dict or a path)."""
    directory = tmp_path_factory.mktemp("documents")
    counter = iter(range(1_000_000))

    def run(document: dict[str, Any] | Path) -> Any:
        if isinstance(document, Path):
            path = document
        else:
            path = directory / f"document-{next(counter)}.json"
            path.write_text(json.dumps(document))
        return read_document(nix_instantiate, path)

    return run


@pytest.fixture
def production_document() -> dict[str, Any]:
    return json.loads((DOCUMENTS / "production.json").read_text())


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())
