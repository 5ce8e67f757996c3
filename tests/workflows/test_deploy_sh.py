"""deploy.sh, the quick start, run against a fake `pulumi` that records every call."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows.conftest import ROOT

TOKEN = "hcloud-token-0123456789abcdef"
PASSPHRASE = "correct horse battery staple"
QUICK_START = ["--hostname", "lists.example.org", "--admin-email", "you@example.org"]
OTHER_SITE = ["--hostname", "lists.example.net", "--admin-email", "you@example.net"]

# Answers like the real CLI: `whoami` fails until logged in, `stack select` fails for a stack
# that does not exist. Each call is logged with its argv, what it read on stdin (only
# `config set --secret` reads it) and whether the passphrase reached its environment.
FAKE_PULUMI = """#!{python}
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_STATE"]
stdin = sys.stdin.read() if args[:2] == ["config", "set"] and "--secret" in args else None
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"argv": args, "stdin": stdin,
        "passphrase": os.environ.get("PULUMI_CONFIG_PASSPHRASE")}}) + "\\n")
logged_in = os.path.exists(os.path.join(state, "backend"))
if args[0] == "login":
    open(os.path.join(state, "backend"), "w").write("file://~")
elif args[0] == "whoami":
    backend = os.environ.get("PULUMI_BACKEND_URL") or (
        open(os.path.join(state, "backend")).read() if logged_in else None)
    if not backend:
        sys.exit("error: PULUMI_ACCESS_TOKEN must be set for login in non-interactive sessions")
    verbose = "\\nOrganizations: \\nBackend URL: " + backend if "--verbose" in args else ""
    print("User: alice" + verbose)
elif args[:2] == ["stack", "select"]:
    if not os.path.exists(os.path.join(state, "stack-" + args[2])):
        sys.exit("error: no stack named '" + args[2] + "' found")
elif args[:2] == ["stack", "init"]:
    open(os.path.join(state, "stack-" + args[2]), "w").close()
elif args[:2] == ["stack", "output"]:
    print("https://lists.example.org/")
"""


# A fresh clone has no .venv: deploy.sh makes it with `python3 -m venv` and pip. This stand-in
# for python3 makes one whose python is this test's interpreter and whose pip only records.
FAKE_PYTHON3 = """#!/bin/bash
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\nexec {python} "$@"\\n' >"$3/bin/python"
  printf '#!/bin/sh\\necho "$*" >>"$FAKE_STATE/pip.log"\\n' >"$3/bin/pip"
  chmod +x "$3/bin/python" "$3/bin/pip"
  echo "$*" >>"$FAKE_STATE/python3.log"
  exit 0
fi
exec {python} "$@"
"""


def run_deploy(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, venv: bool = True
):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "pulumi"
    fake.write_text(FAKE_PULUMI.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    python3 = bin_dir / "python3"
    python3.write_text(FAKE_PYTHON3.format(python=sys.executable))
    python3.chmod(python3.stat().st_mode | stat.S_IXUSR)
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_STATE": str(state),
        "HCLOUD_TOKEN": TOKEN,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        **(env or {}),
    }
    environment = {k: v for k, v in environment.items() if v is not None}
    # A copy of the project, so files deploy.sh writes stay out of the repository; the settings
    # check runs the real components/ with this test's Python (the venv `pulumi install` makes).
    project = tmp_path / "project"
    if not project.exists():
        project.mkdir()
        for name in (
            "deploy.sh",
            "lists.yaml",
            "requirements.txt",
            "Pulumi.staging.yaml",
            "Pulumi.production.yaml",
        ):
            shutil.copy2(ROOT / name, project / name)
        shutil.copytree(ROOT / "components", project / "components")
        # components/lists.py imports the list rules it shares with the host program.
        (project / "nixos").mkdir()
        shutil.copy2(ROOT / "nixos" / "mailman_list_rules.py", project / "nixos")
        (project / "tools").mkdir()
        shutil.copy2(ROOT / "tools" / "check_settings.py", project / "tools" / "check_settings.py")
        if venv:
            (project / ".venv").symlink_to(Path(sys.executable).parent.parent)
    result = subprocess.run(
        [str(project / "deploy.sh"), *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    log = state / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def argvs(calls) -> list[list[str]]:
    return [c["argv"] for c in calls]


def test_quick_start_logs_in_locally_creates_the_stack_configures_and_applies(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START, "--dns-zone", "example.org")

    assert result.returncode == 0, result.stderr
    assert argvs(calls) == [
        ["whoami", "--non-interactive"],
        ["login", "--local"],
        ["whoami", "--verbose", "--non-interactive"],
        ["stack", "select", "staging", "--non-interactive"],
        ["stack", "init", "staging", "--non-interactive"],
        ["config", "set", "--stack", "staging", "--non-interactive",
         "mailman:hostname", "lists.example.org"],
        ["config", "set", "--stack", "staging", "--non-interactive",
         "mailman:adminEmail", "you@example.org"],
        ["config", "set", "--stack", "staging", "--non-interactive",
         "mailman:dnsZone", "example.org"],
        ["config", "rm", "--stack", "staging", "mailman:sshPublicKeys"],
        ["config", "set", "--stack", "staging", "--non-interactive",
         "--path", "mailman:sshPublicKeys[0]", generated_key(tmp_path)],
        ["config", "set", "--stack", "staging", "--non-interactive",
         "--secret", "hcloud:token"],
        ["install"],
        ["up", "--stack", "staging"],
        ["stack", "output", "siteUrl", "--stack", "staging"],
    ]  # fmt: skip
    assert "Site: https://lists.example.org/" in result.stdout


def test_the_token_travels_on_stdin_never_in_argv(tmp_path) -> None:
    _, calls = run_deploy(tmp_path, *QUICK_START)

    assert [c["stdin"] for c in calls if c["stdin"] is not None] == [TOKEN]
    assert all(TOKEN not in " ".join(c["argv"]) for c in calls)


def test_the_passphrase_comes_from_the_environment_never_argv(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START)

    assert PASSPHRASE not in result.stdout + result.stderr
    assert all(PASSPHRASE not in " ".join(c["argv"]) for c in calls)
    assert {c["passphrase"] for c in calls} == {PASSPHRASE}


def test_an_existing_backend_login_is_kept(tmp_path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "backend").write_text("s3://bucket?region=eu-central")

    _, calls = run_deploy(tmp_path, *QUICK_START)

    assert ["login", "--local"] not in argvs(calls)


def test_backend_url_from_the_environment_is_used_as_is(tmp_path) -> None:
    _, calls = run_deploy(tmp_path, *QUICK_START, env={"PULUMI_BACKEND_URL": "s3://state"})

    assert not [a for a in argvs(calls) if a[0] in ("login", "logout")]


def test_an_existing_stack_is_selected_not_created_again(tmp_path) -> None:
    run_deploy(tmp_path, *QUICK_START)
    (tmp_path / "state" / "calls.jsonl").unlink()

    result, calls = run_deploy(tmp_path, *QUICK_START, "--stack", "staging", "--yes")

    assert result.returncode == 0, result.stderr
    assert not [a for a in argvs(calls) if a[:2] == ["stack", "init"]]
    assert ["up", "--stack", "staging", "--yes"] in argvs(calls)


def test_mail_domains_are_written_as_a_list(tmp_path) -> None:
    # adminEmail must be a mailbox outside the mail domains (settings._admin_outside).
    site = ["--hostname", "lists.example.org", "--admin-email", "you@example.com"]
    _, calls = run_deploy(
        tmp_path, *site, "--mail-domain", "example.org", "--mail-domain", "example.net"
    )

    sets = [a[-3:] for a in argvs(calls) if "--path" in a and "mailDomains" in a[-2]]
    assert sets == [
        ["--path", "mailman:mailDomains[0]", "example.org"],
        ["--path", "mailman:mailDomains[1]", "example.net"],
    ]


def test_pulumi_cloud_needs_no_passphrase(tmp_path) -> None:
    result, calls = run_deploy(
        tmp_path,
        *QUICK_START,
        env={"PULUMI_BACKEND_URL": "https://api.pulumi.com", "PULUMI_CONFIG_PASSPHRASE": None},
    )

    assert result.returncode == 0, result.stderr
    assert ["up", "--stack", "staging"] in argvs(calls)


def test_a_self_managed_backend_without_passphrase_or_terminal_stops_with_one_line(
    tmp_path,
) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START, env={"PULUMI_CONFIG_PASSPHRASE": None})

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "deploy.sh: PULUMI_CONFIG_PASSPHRASE is not set: "
        "the file://~ backend encrypts secrets with it"
    )
    assert not [a for a in argvs(calls) if a[0] in ("stack", "config", "up")]


def test_missing_token_stops_before_calling_pulumi(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START, env={"HCLOUD_TOKEN": None})

    assert result.returncode == 2
    assert result.stderr.startswith("deploy.sh: HCLOUD_TOKEN is not set")
    assert calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--admin-email", "you@example.org"], "deploy.sh: --hostname is required"),
        (["--hostname", "lists.example.org"], "deploy.sh: --admin-email is required"),
        ([*QUICK_START, "--bogus"], "deploy.sh: unknown argument: --bogus"),
    ],
)
def test_bad_arguments_stop_with_one_line(tmp_path, args, message) -> None:
    result, calls = run_deploy(tmp_path, *args)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert calls == []


def test_deploy_sh_is_shellcheck_clean() -> None:
    if not shutil.which("shellcheck"):
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck missing (apt_packages in .ci/run)")
        pytest.skip("shellcheck not installed")

    result = subprocess.run(
        ["shellcheck", "deploy.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout


def test_any_site_uses_the_shipped_lists_yaml_as_it_is(tmp_path) -> None:
    # adminEmail must be a mailbox outside the mail domains (settings._admin_outside).
    other_admin = ["--hostname", "lists.example.net", "--admin-email", "you@example.com"]
    result, calls = run_deploy(tmp_path, *other_admin, "--mail-domain", "example.net")

    assert result.returncode == 0, result.stderr
    assert not [a for a in argvs(calls) if "mailman:lists" in a]
    project = tmp_path / "project"
    assert sorted(p.name for p in project.glob("lists*.yaml")) == ["lists.yaml"]
    assert (project / "lists.yaml").read_text() == (ROOT / "lists.yaml").read_text()


def generated_key(home: Path) -> str:
    return (home / ".ssh" / "mailman_ed25519.pub").read_text().strip()


def test_the_quick_start_starts_with_the_staging_safe_stack(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START)

    assert result.returncode == 0, result.stderr
    assert ["stack", "init", "staging", "--non-interactive"] in argvs(calls)
    staging = (tmp_path / "project" / "Pulumi.staging.yaml").read_text()
    assert "mailman:acmeStaging: true" in staging
    assert "mailman:protect: false" in staging


def test_without_dns_zone_no_zone_is_left_in_the_stack(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *OTHER_SITE, "--stack", "production")

    assert result.returncode == 0, result.stderr
    assert ["config", "rm", "--stack", "production", "mailman:dnsZone"] in argvs(calls)
    assert not [a for a in argvs(calls) if "mailman:dnsZone" in a and a[1] == "set"]


def test_with_dns_zone_the_zone_is_written(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *OTHER_SITE, "--dns-zone", "example.net")

    assert result.returncode == 0, result.stderr
    assert ["config", "set", "--stack", "staging", "--non-interactive",
            "mailman:dnsZone", "example.net"] in argvs(calls)  # fmt: skip
    assert not [a for a in argvs(calls) if a[:2] == ["config", "rm"] and "dnsZone" in a[-1]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hostname", "lists example org", "--admin-email", "you@example.org"],
         'deploy.sh: mailman:hostname: "lists example org" is not a fully qualified domain name'),
        ([*OTHER_SITE, "--dns-zone", "example.org"],
         'deploy.sh: mailman:hostname: "lists.example.net" is not inside the managed dnsZone'),
        (["--hostname", "lists.example.org", "--admin-email", "you"],
         'deploy.sh: mailman:adminEmail: "you" is not an e-mail address'),
    ],
)  # fmt: skip
def test_bad_values_are_refused_by_the_programs_rules_before_any_stack(
    tmp_path, args, message
) -> None:
    result, calls = run_deploy(tmp_path, *args)

    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert calls == []


def test_an_existing_operator_key_is_used_not_a_new_one(tmp_path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvbZ2yEdZ7Y3mbe4HwX9fCFkkGJ1GBQHzOz9rS2Zr0u me@pc"
    (ssh / "id_ed25519.pub").write_text(key + "\n")

    result, calls = run_deploy(tmp_path, *QUICK_START)

    assert result.returncode == 0, result.stderr
    assert ["config", "set", "--stack", "staging", "--non-interactive",
            "--path", "mailman:sshPublicKeys[0]", key] in argvs(calls)  # fmt: skip
    assert not (ssh / "mailman_ed25519").exists()


def test_without_a_key_one_is_generated_for_root(tmp_path) -> None:
    result, _ = run_deploy(tmp_path, *QUICK_START)

    assert result.returncode == 0, result.stderr
    private = tmp_path / ".ssh" / "mailman_ed25519"
    assert private.stat().st_mode & 0o077 == 0
    assert generated_key(tmp_path).startswith("ssh-ed25519 ")


def test_a_file_that_is_not_a_public_key_is_refused_before_any_stack(tmp_path) -> None:
    bad = tmp_path / "id.pub"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")

    result, calls = run_deploy(tmp_path, *QUICK_START, "--ssh-key", str(bad))

    assert result.returncode == 2
    assert result.stderr.startswith("deploy.sh: mailman:sshPublicKeys: ")
    assert calls == []


def test_a_fresh_clone_gets_its_venv_before_the_settings_check(tmp_path) -> None:
    """Without .venv the check could not import the program (pulumi, yaml): deploy.sh makes the
    venv `pulumi install` uses, from requirements.txt, before it checks anything."""
    result, calls = run_deploy(tmp_path, *QUICK_START, venv=False)

    assert result.returncode == 0, result.stderr
    state = tmp_path / "state"
    assert (state / "python3.log").read_text().split() == ["-m", "venv", ".venv"]
    assert "install --quiet --disable-pip-version-check -r requirements.txt" in (
        state / "pip.log"
    ).read_text()
    assert ["stack", "init", "staging", "--non-interactive"] in argvs(calls)


def test_a_rerun_keeps_the_operator_keys_the_stack_already_has(tmp_path) -> None:
    """Run again (or by a colleague) without --ssh-key: the stack's keys stay as they are."""
    run_deploy(tmp_path, *QUICK_START)  # the project copy now exists
    stack_file = tmp_path / "project" / "Pulumi.staging.yaml"
    colleague = generated_key(tmp_path).rsplit(" ", 1)[0] + " colleague"
    (tmp_path / ".ssh" / "mailman_ed25519.pub").unlink()  # this machine's key would differ
    text = stack_file.read_text()
    stack_file.write_text(text + f"  mailman:sshPublicKeys:\n    - {colleague}\n")
    (tmp_path / "state" / "calls.jsonl").unlink()

    result, calls = run_deploy(tmp_path, *QUICK_START)

    assert result.returncode == 0, result.stderr
    assert not [c for c in argvs(calls) if any("sshPublicKeys" in a for a in c)]


def test_an_admin_email_inside_the_mail_domains_is_refused_before_any_change(tmp_path) -> None:
    result, calls = run_deploy(tmp_path, *QUICK_START, "--mail-domain", "example.org")

    assert result.returncode != 0
    assert "mailman:adminEmail" in result.stderr and "outside" in result.stderr
    assert not [a for a in argvs(calls) if a[:1] == ["up"]]
