"""What matters in the workflows, asserted on their parsed YAML.

Pinned actions, no secret echoed, preview comments updated in place, destroy only for throwaway
stacks (`pr-*` review stacks, `e2e-*` end-to-end stacks), one update per stack at a time, deploy
timeouts that cover a first deploy, and CI installing what .ci/run installs.
"""

from __future__ import annotations

import re
from typing import Any

from tests.workflows.conftest import ROOT, steps_of

PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
PULUMI_ACTION = "pulumi/actions@"
DEPLOYING = ("up", "destroy", "update")


def all_steps(workflows, actions) -> list[tuple[str, dict[Any, Any]]]:
    return [
        (name, step) for name, doc in {**workflows, **actions}.items() for step in steps_of(doc)
    ]


def pulumi_commands(job: dict[Any, Any]) -> list[str]:
    """The Pulumi commands a job runs, through pulumi/actions or the CLI."""
    found = []
    for step in job.get("steps", []):
        if str(step.get("uses", "")).startswith(PULUMI_ACTION) and "command" in step.get(
            "with", {}
        ):
            found.append(step["with"]["command"])
        found += re.findall(r"\bpulumi (up|destroy|preview)\b", step.get("run", ""))
    return found


def test_every_remote_action_is_pinned_to_a_version_or_commit(workflows, actions) -> None:
    for name, step in all_steps(workflows, actions):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert PINNED.match(uses), f"{name}: {uses} is not pinned to vX.Y.Z or a commit SHA"


def test_no_run_script_expands_a_secret_inline(workflows, actions) -> None:
    # Secrets reach scripts through `env:` only; `${{ secrets.X }}` inside `run:` would be
    # pasted into the script text (and its log on error), and echo would print it.
    for name, step in all_steps(workflows, actions):
        script = step.get("run", "")
        assert "secrets." not in script, f"{name}: step {step.get('name')} uses a secret in run"
        for line in script.splitlines():
            if re.search(r"\b(echo|printf)\b", line):
                assert not re.search(r"(TOKEN|PASSPHRASE|SECRET|PASSWORD|KEY)\b", line), (
                    f"{name}: `{line.strip()}` may print a secret"
                )


def test_preview_runs_for_staging_and_production_on_pull_requests(workflows) -> None:
    preview = workflows["preview"]
    job = preview["jobs"]["preview"]

    assert "pull_request" in preview["on"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "production"]
    assert pulumi_commands(job) == ["preview"]


def test_preview_comments_on_the_pr_in_place_with_a_diff_and_no_outputs(workflows) -> None:
    steps = [
        s
        for s in steps_of(workflows["preview"])
        if str(s.get("uses", "")).startswith(PULUMI_ACTION)
    ]

    assert len(steps) == 1
    settings = steps[0]["with"]
    assert settings["comment-on-pr"] is True
    assert settings.get("edit-pr-comment", True) is True  # the action's default is true
    assert settings["diff"] is True
    assert settings["suppress-outputs"] is True
    assert workflows["preview"]["permissions"]["pull-requests"] == "write"


def test_pulumi_steps_take_the_backend_from_a_repository_variable(workflows) -> None:
    for name, doc in workflows.items():
        for job in doc["jobs"].values():
            if not pulumi_commands(job):
                continue
            backend = {**doc.get("env", {}), **job.get("env", {})}.get("PULUMI_BACKEND_URL")
            assert backend == "${{ vars.PULUMI_BACKEND_URL }}", name


def test_secrets_come_from_repository_secrets(workflows) -> None:
    for doc in workflows.values():
        for job in doc["jobs"].values():
            if not pulumi_commands(job):
                continue
            env = {**doc.get("env", {}), **job.get("env", {})}
            for key in ("HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN"):
                assert env[key] == "${{ secrets." + key + " }}"


def test_every_deploying_job_has_a_concurrency_group_that_never_cancels(workflows) -> None:
    seen = 0
    for name, doc in workflows.items():
        for job_name, job in doc["jobs"].items():
            if not set(pulumi_commands(job)) & set(DEPLOYING):
                continue
            seen += 1
            concurrency = job.get("concurrency") or doc.get("concurrency")
            assert concurrency, f"{name}.{job_name} deploys without a concurrency group"
            assert concurrency["group"].startswith("pulumi-stack-"), concurrency
            # Cancelling a running `pulumi up` leaves the stack locked or half-applied.
            assert concurrency["cancel-in-progress"] is False
    assert seen == 5  # staging, production, review up, review destroy, e2e


def test_concurrency_groups_name_the_stack_they_deploy(workflows) -> None:
    deploy = workflows["deploy"]["jobs"]
    review = workflows["review-stack"]

    assert deploy["staging"]["concurrency"]["group"] == "pulumi-stack-staging"
    assert deploy["production"]["concurrency"]["group"] == "pulumi-stack-production"
    assert review["concurrency"]["group"] == (
        "pulumi-stack-pr-${{ github.event.pull_request.number }}"
    )
    assert review["env"]["STACK"] == "pr-${{ github.event.pull_request.number }}"


def test_deploy_runs_staging_on_main_then_production_behind_its_environment(workflows) -> None:
    deploy = workflows["deploy"]
    jobs = deploy["jobs"]

    assert deploy["on"]["push"]["branches"] == ["main"]
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["environment"] == "production"
    for stack in ("staging", "production"):
        up = [s for s in jobs[stack]["steps"] if str(s.get("uses", "")).startswith(PULUMI_ACTION)]
        assert [(s["with"]["command"], s["with"]["stack-name"]) for s in up] == [("up", stack)]


def test_a_smoke_check_follows_every_up(workflows) -> None:
    for name, doc in workflows.items():
        for job_name, job in doc["jobs"].items():
            steps = job.get("steps", [])
            for index, step in enumerate(steps):
                is_up = "up" in pulumi_commands({"steps": [step]})
                if is_up:
                    later = [s.get("uses") for s in steps[index + 1 :]]
                    assert "./.github/actions/smoke-check" in later, f"{name}.{job_name}"


# Throwaway stacks by workflow: the only stacks anything destroys, and the guard in the script.
THROWAWAY_PREFIXES = {"review-stack": "pr-", "e2e": "e2e-"}


def test_destroy_and_stack_rm_only_ever_target_throwaway_stacks(workflows, actions) -> None:
    destroying = set()
    for name, doc in workflows.items():
        for step in steps_of(doc):
            uses = str(step.get("uses", ""))
            if uses.startswith(PULUMI_ACTION):
                assert step.get("with", {}).get("command") != "destroy", name
            script = step.get("run", "")
            if not re.search(r"pulumi (destroy|stack rm)\b", script):
                continue
            destroying.add(name)
            # The stack comes from STACK = <prefix><number>..., and the script refuses others.
            prefix = THROWAWAY_PREFIXES[name]
            assert doc["env"]["STACK"].startswith(prefix), name
            assert f'case "$STACK" in\n  {prefix}[0-9]*) ;;' in script
            for line in script.splitlines():
                if re.search(r"pulumi (destroy|stack rm)\b", line):
                    assert line.rstrip().endswith('--stack "$STACK"'), line
    assert destroying == set(THROWAWAY_PREFIXES)
    for step in [s for doc in actions.values() for s in steps_of(doc)]:
        assert not re.search(r"pulumi (destroy|stack rm)\b", step.get("run", ""))


# A first deploy: NixOS install 10-20 min, then build, switch, reconcile and checks.
FIRST_DEPLOY_MINUTES = 90


def test_every_job_that_runs_pulumi_up_has_time_for_a_first_deploy(workflows) -> None:
    jobs = 0
    for name, doc in workflows.items():
        for job_name, job in doc["jobs"].items():
            if "up" not in pulumi_commands(job):
                continue
            jobs += 1
            assert job["timeout-minutes"] >= FIRST_DEPLOY_MINUTES, f"{name}.{job_name}"
    assert jobs == 4  # deploy staging, deploy production, review up, e2e


def test_review_stack_is_created_from_staging_with_its_own_hostname(workflows) -> None:
    review = workflows["review-stack"]
    up = review["jobs"]["up"]
    script = "\n".join(s.get("run", "") for s in up["steps"])

    assert "review-stack" in up["if"]
    assert 'pulumi stack init "$STACK" --copy-config-from staging' in script
    assert 'host="$STACK.$staging_host"' in script
    assert 'pulumi config set mailman:hostname "$host" --stack "$STACK"' in script
    assert "gh pr comment" in script
    assert set(review["on"]["pull_request"]["types"]) >= {"labeled", "synchronize", "closed"}
    assert "closed" in review["jobs"]["destroy"]["if"]


def test_nixos_vm_test_builds_the_vm_test_with_nix_and_kvm(workflows) -> None:
    steps = steps_of(workflows["nixos-vm-test"])
    scripts = "\n".join(s.get("run", "") for s in steps)

    assert any(str(s.get("uses", "")).startswith("cachix/install-nix-action@") for s in steps)
    assert "/dev/kvm" in scripts
    assert "nix-build nixos/tests/mailman-site.nix" in scripts


def test_ci_runs_the_readme_test_command_on_push_and_pull_request(workflows) -> None:
    ci = workflows["ci"]
    scripts = [s.get("run", "") for s in steps_of(ci)]

    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["jobs"]["test"]["env"]["CI"] == "true"
    assert "./test.sh" in scripts
    assert "./test.sh" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_installs_the_apt_packages_named_in_ci_run(workflows) -> None:
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = next(
        s["run"] for s in steps_of(workflows["ci"]) if "apt-get install" in s.get("run", "")
    )
    pattern = re.search(r"sed -n '(.+?)' \.ci/run", install)

    assert pattern, "ci.yml must read the package list from .ci/run"
    assert re.search(r"^apt_packages=\(.+\)$", ci_run, re.MULTILINE)


def test_smoke_check_action_runs_the_tool_on_the_given_stack(actions) -> None:
    script = steps_of(actions["smoke-check"])[0]["run"]

    assert 'args=(--stack "$STACK")' in script
    assert '.venv/bin/python tools/smoke_check.py "${args[@]}"' in script


CREDENTIALS = ("HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN")
WRITE_ENVIRONMENTS = {"staging", "production", "e2e"}


def test_every_job_with_credentials_takes_them_from_an_environment(workflows) -> None:
    """Environment secrets, not repository secrets: a job gets only its environment's."""
    for name, doc in workflows.items():
        for job_name, job in doc["jobs"].items():
            env = {**doc.get("env", {}), **job.get("env", {})}
            if set(env) & set(CREDENTIALS):
                assert job.get("environment"), f"{name}.{job_name}: credentials, no environment"


def test_pull_request_jobs_never_use_the_write_environments(workflows) -> None:
    for name, doc in workflows.items():
        if "pull_request" not in doc["on"] and "pull_request_target" not in doc["on"]:
            continue
        for job_name, job in doc["jobs"].items():
            environment = str(job.get("environment", ""))
            assert environment not in WRITE_ENVIRONMENTS, f"{name}.{job_name}: {environment}"


def test_previews_use_their_read_only_environment_per_stack(workflows) -> None:
    job = workflows["preview"]["jobs"]["preview"]
    assert job["environment"] == "preview-${{ matrix.stack }}"
    assert workflows["review-stack"]["jobs"]["up"]["environment"] == "review"
    assert workflows["review-stack"]["jobs"]["destroy"]["environment"] == "review"


def test_drift_checks_use_their_read_only_environment_per_stack(workflows) -> None:
    assert workflows["drift"]["jobs"]["drift"]["environment"] == "drift-${{ matrix.stack }}"
