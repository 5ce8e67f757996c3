"""Workflows and composite actions, parsed once with pyyaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
ACTION_DIR = ROOT / ".github" / "actions"
WORKFLOW_FILES = sorted(WORKFLOW_DIR.glob("*.yml"))
ACTION_FILES = sorted(ACTION_DIR.glob("*/action.yml"))


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a mapping"
    # YAML 1.1 reads the bare key `on` as True; name it back.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps_of(document: dict[Any, Any]) -> list[dict[Any, Any]]:
    """Every step of a workflow (all jobs) or of a composite action."""
    if "runs" in document:
        return list(document["runs"].get("steps", []))
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.fixture(scope="session")
def workflows() -> dict[str, dict[Any, Any]]:
    return {path.stem: load(path) for path in WORKFLOW_FILES}


@pytest.fixture(scope="session")
def actions() -> dict[str, dict[Any, Any]]:
    return {path.parent.name: load(path) for path in ACTION_FILES}
