"""The drift workflow: read-only checks of both stacks, one issue per drifting stack, and the
report tool it runs (tools/drift_report.py) on the two commands' logs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows.conftest import ROOT, steps_of

sys.path.insert(0, str(ROOT / "tools"))
import drift_report  # tools/ is not a package

# What the CLI prints when --expect-no-changes finds changes (pulumi/pulumi
# pkg/cmd/pulumi/operations/refresh.go and preview.go; backenderr.NoChangesExpectedError).
REFRESH_DRIFT = """Previewing refresh (staging):
~  hcloud:index/firewall:Firewall mailman-staging-firewall refresh [diff: ~rules]
Resources:
    ~ 1 to update
error: no changes were expected but changes occurred
"""
PREVIEW_DRIFT = """Previewing update (staging):
~  hcloud:index/server:Server mailman-staging-server update [diff: ~serverType]
error: no changes were expected for update but changes were proposed
"""
NO_CHANGES = "Previewing update (staging):\nResources:\n    42 unchanged\n"
LOGIN_FAILED = "error: getting secrets manager: passphrase must be set\n"


def drift_job(workflows):
    return workflows["drift"]["jobs"]["drift"]


def check_script(workflows) -> str:
    return next(s["run"] for s in drift_job(workflows)["steps"] if s.get("id") == "check")


def test_it_runs_daily_and_on_demand_for_both_stacks(workflows) -> None:
    drift = workflows["drift"]
    assert set(drift["on"]) == {"schedule", "workflow_dispatch"}
    assert drift["on"]["schedule"][0]["cron"]
    matrix = drift_job(workflows)["strategy"]
    assert matrix["matrix"]["stack"] == ["staging", "production"]
    assert matrix["fail-fast"] is False


def test_it_may_write_issues_and_nothing_else(workflows) -> None:
    assert workflows["drift"]["permissions"] == {"contents": "read", "issues": "write"}


def test_both_checks_expect_no_changes_and_suppress_outputs(workflows) -> None:
    script = check_script(workflows)
    commands = re.findall(r"pulumi (refresh|preview) (.*?)>", script.replace("\\\n", " "), re.S)
    assert [name for name, _ in commands] == ["refresh", "preview"]
    for name, flags in commands:
        assert '--stack "$STACK"' in flags
        for flag in ("--expect-no-changes", "--diff", "--suppress-outputs", "--non-interactive"):
            assert flag in flags, (name, flag)
    assert "--preview-only" in commands[0][1]


def test_nothing_in_it_changes_a_stack_or_shows_secrets(workflows) -> None:
    scripts = "\n".join(s.get("run", "") for s in steps_of(workflows["drift"]))
    assert not re.search(r"pulumi (up|destroy|import|state|stack rm)\b", scripts)
    assert not re.search(r"--(yes|skip-preview|show-secrets)\b", scripts)
    assert not re.search(r"\bpulumi refresh\b[^>]*\s-y\b", scripts)


def test_drift_opens_or_updates_one_issue_per_stack(workflows) -> None:
    steps = drift_job(workflows)["steps"]
    issue = next(s for s in steps if "gh issue" in s.get("run", ""))
    script = issue["run"]
    assert issue["if"] == "steps.check.outputs.verdict == '1'"
    assert 'title="Drift on stack $STACK"' in script
    assert drift_report.issue_title("$STACK") == "Drift on stack $STACK"
    # Find the open issue with exactly this title; edit it, else create it: never a second one.
    assert "gh issue list --state open --label drift" in script
    assert 'gh issue edit "$number" --body-file' in script
    assert 'gh issue create --title "$title" --label drift --body-file' in script
    assert script.index("gh issue edit") < script.index("gh issue create")
    assert issue["env"]["GH_TOKEN"] == "${{ github.token }}"


def test_the_job_fails_on_drift_and_on_a_failed_check(workflows) -> None:
    last = drift_job(workflows)["steps"][-1]
    assert last["if"] == "steps.check.outputs.verdict != '0'"
    assert "exit 1" in last["run"]


def test_the_check_step_hands_both_logs_and_statuses_to_the_report_tool(workflows) -> None:
    script = check_script(workflows)
    assert ".venv/bin/python tools/drift_report.py \"$STACK\"" in script
    assert '"$refresh_log" "$refresh_status" "$preview_log" "$preview_status"' in script


@pytest.mark.parametrize(
    ("log", "status", "verdict"),
    [
        (NO_CHANGES, 0, drift_report.CLEAN),
        (REFRESH_DRIFT, 255, drift_report.DRIFTED),
        (PREVIEW_DRIFT, 255, drift_report.DRIFTED),
        ("error: no changes were expected but changes were proposed\n", 1, drift_report.DRIFTED),
        (LOGIN_FAILED, 255, drift_report.FAILED),
    ],
)
def test_drift_is_told_apart_from_a_failure(log, status, verdict) -> None:
    assert drift_report.classify(log, status) == verdict


def run_tool(tmp_path: Path, refresh: tuple[str, int], preview: tuple[str, int]):
    (tmp_path / "refresh.log").write_text(refresh[0])
    (tmp_path / "preview.log").write_text(preview[0])
    body = tmp_path / "drift.md"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "drift_report.py"),
            "production",
            str(tmp_path / "refresh.log"),
            str(refresh[1]),
            str(tmp_path / "preview.log"),
            str(preview[1]),
            str(body),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, body.read_text() if body.exists() else None


def test_no_drift_exits_0_and_writes_nothing(tmp_path) -> None:
    assert run_tool(tmp_path, (NO_CHANGES, 0), (NO_CHANGES, 0)) == (0, None)


def test_drift_exits_1_with_both_diffs_in_the_issue_body(tmp_path) -> None:
    status, body = run_tool(tmp_path, (REFRESH_DRIFT, 255), (NO_CHANGES, 0))
    assert status == 1
    assert "### `pulumi refresh --preview-only`: changes" in body
    assert "### `pulumi preview`: no changes" in body
    assert "[diff: ~rules]" in body
    assert "pulumi refresh --stack production" in body


def test_a_failed_command_exits_2_without_an_issue_body(tmp_path) -> None:
    status, body = run_tool(tmp_path, (REFRESH_DRIFT, 255), (LOGIN_FAILED, 255))
    assert status == 2
    assert body.strip() == LOGIN_FAILED.strip()


def test_the_body_masks_private_keys_and_colour_and_stays_under_githubs_limit() -> None:
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    huge = "\x1b[32m+ line\x1b[0m\n" * 20000 + key + "\n" + REFRESH_DRIFT
    body = drift_report.issue_body("production", (huge, 255), (huge, 255))
    assert "PRIVATE KEY" not in body
    assert "\x1b[" not in body
    assert len(body) < 65536
    assert "first" in body and "characters cut" in body


def test_docs_explain_drift_detection_without_github_actions() -> None:
    docs = (ROOT / "docs" / "workflows.md").read_text(encoding="utf-8")
    section = docs.split("## Drift detection")[1].split("\n## ")[0]
    assert "pulumi refresh --preview-only --expect-no-changes" in section
    assert "pulumi preview --expect-no-changes" in section
    assert "tools/drift_report.py" in section
    assert "cron" in section
