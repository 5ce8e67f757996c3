"""The nixpkgs-bump workflow, asserted on its parsed YAML (actionlint checks its syntax)."""

from __future__ import annotations

from tests.workflows.conftest import steps_of
from tests.workflows.test_workflow_rules import pulumi_commands


def _scripts(workflows) -> str:
    return "\n".join(s.get("run", "") for s in steps_of(workflows["nixpkgs-bump"]))


def test_it_runs_weekly_and_on_demand_with_an_optional_branch(workflows):
    on = workflows["nixpkgs-bump"]["on"]
    assert len(on["schedule"]) == 1
    _minute, _hour, day, month, weekday = on["schedule"][0]["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()
    assert on["workflow_dispatch"]["inputs"]["branch"]["required"] is False


def test_it_bumps_with_the_tested_script_and_reports_old_and_new_versions(workflows):
    scripts = _scripts(workflows)
    assert 'python3 tools/bump_nixpkgs.py "${args[@]}"' in scripts
    assert 'args=(--github-output "$GITHUB_OUTPUT")' in scripts
    # The versions come from Nix, for the old and the new pin, through the host's fetcher.
    assert "for side in old new; do" in scripts
    assert "nix-instantiate --eval --json nixos/nixpkgs.nix" in scripts
    assert "nix-instantiate --eval --strict --json tools/package-versions.nix" in scripts
    assert "python3 tools/bump_nixpkgs.py comment" in scripts
    steps = steps_of(workflows["nixpkgs-bump"])
    assert any(str(s.get("uses", "")).startswith("cachix/install-nix-action@") for s in steps)
    later = [s for s in steps if s.get("if")]
    assert len(later) == 2
    assert all(s["if"] == "steps.bump.outputs.changed == 'true'" for s in later)


def test_it_keeps_one_pull_request_on_one_branch(workflows):
    doc = workflows["nixpkgs-bump"]
    scripts = _scripts(workflows)
    assert doc["jobs"]["bump"]["env"]["BUMP_BRANCH"] == "nixpkgs-bump"
    assert 'git push --force origin "$BUMP_BRANCH"' in scripts
    assert 'gh pr edit "$BUMP_BRANCH"' in scripts
    assert "gh pr create --base main" in scripts
    assert "git add components/nixpkgs-pin.json" in scripts
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_it_touches_no_stack_and_holds_no_deploy_secret(workflows):
    doc = workflows["nixpkgs-bump"]
    job = doc["jobs"]["bump"]
    assert pulumi_commands(job) == []
    assert doc["permissions"] == {"contents": "write", "pull-requests": "write"}
    text = str(doc)
    for secret in ("HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", "AWS_"):
        assert secret not in text
    assert "environment" not in job
