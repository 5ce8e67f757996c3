"""The end-to-end workflow (.github/workflows/e2e.yml), asserted on its parsed YAML.

It cannot run here (it needs a Hetzner token); what it must do is checked by structure:
manual and weekly, a unique throwaway stack with staging-safe settings, the site waited for and
smoke-checked, nothing to change on a second preview and up, and the stack always destroyed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.workflows.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN_ID = "${{ github.run_id }}-${{ github.run_attempt }}"


@pytest.fixture
def e2e(workflows) -> dict[Any, Any]:
    return workflows["e2e"]


@pytest.fixture
def steps(e2e) -> list[dict[Any, Any]]:
    return list(e2e["jobs"]["e2e"]["steps"])


def index_of(steps: list[dict[Any, Any]], pattern: str) -> int:
    found = [i for i, s in enumerate(steps) if re.search(pattern, s.get("run", ""))]
    assert len(found) == 1, f"{pattern}: {len(found)} steps"
    return found[0]


def test_runs_on_demand_and_weekly(e2e) -> None:
    assert set(e2e["on"]) == {"workflow_dispatch", "schedule"}
    (cron,) = [entry["cron"] for entry in e2e["on"]["schedule"]]
    _minute, hour, day, month, weekday = cron.split()
    assert (day, month) == ("*", "*") and weekday.isdigit() and hour.isdigit()


def test_the_stack_name_is_unique_per_run_attempt(e2e) -> None:
    assert e2e["env"]["STACK"] == f"e2e-{RUN_ID}"
    assert e2e["concurrency"] == {
        "group": f"pulumi-stack-e2e-{RUN_ID}",
        "cancel-in-progress": False,
    }


def test_the_stack_is_new_and_staging_safe(steps) -> None:
    script = steps[index_of(steps, r"pulumi stack init")]["run"]

    assert 'pulumi stack init "$STACK"\n' in script  # never an existing stack
    assert "--copy-config-from" not in script
    for setting in ("acmeStaging true", "protect false", "backups false"):
        assert f"set_config mailman:{setting}\n" in script
    assert 'set_config mailman:hostname "$STACK.$E2E_DNS_ZONE"' in script


def test_order_up_wait_smoke_check_then_nothing_to_change(steps) -> None:
    first_up = index_of(steps, r"pulumi up --yes")
    wait = index_of(steps, r"until curl")
    preview = index_of(steps, r"pulumi preview --expect-no-changes")
    second_up = index_of(steps, r"pulumi up --expect-no-changes")
    smoke = [i for i, s in enumerate(steps) if s.get("uses") == "./.github/actions/smoke-check"]

    assert first_up < wait < smoke[0] < preview < second_up < smoke[1]
    assert "--yes" in steps[second_up]["run"]


def test_destroy_and_stack_rm_always_run_last_with_their_own_time(e2e, steps) -> None:
    destroy = steps[-1]
    script = destroy["run"]

    assert destroy["if"] == "always()"
    assert 'pulumi destroy --yes --suppress-outputs --stack "$STACK"' in script
    assert 'pulumi stack rm --yes --stack "$STACK"' in script
    assert script.index("pulumi destroy") < script.index("pulumi stack rm")
    assert [s for s in steps[:-1] if "destroy" in s.get("run", "")] == []


def test_the_job_limit_covers_a_first_deploy_and_the_destroy(e2e, steps) -> None:
    job = e2e["jobs"]["e2e"]
    up = steps[index_of(steps, r"pulumi up --yes")]
    limited = [s["timeout-minutes"] for s in steps if "timeout-minutes" in s]

    assert up["timeout-minutes"] >= 60  # install 10-20 min + build + chain
    assert steps[-1]["timeout-minutes"] >= 30  # destroy
    # Steps without a limit (checkout, setup, smoke checks) take minutes.
    assert job["timeout-minutes"] >= sum(limited) + 10
    assert all("timeout-minutes" in s for s in steps if "pulumi" in s.get("run", ""))


def test_readme_gives_the_same_check_by_hand(steps) -> None:
    section = README.split("### End-to-end check")[1].split("\n## ")[0]
    commands = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert commands
    text = commands.group(1)

    for needed in (
        'pulumi stack init "$stack"',
        "mailman:acmeStaging true",
        "mailman:protect false",
        'pulumi up --yes --stack "$stack"',
        "tools/smoke_check.py",
        'pulumi preview --expect-no-changes --stack "$stack"',
        'pulumi up --expect-no-changes --yes --stack "$stack"',
        'pulumi destroy --yes --stack "$stack"',
        'pulumi stack rm --yes --stack "$stack"',
    ):
        assert needed in text, needed
