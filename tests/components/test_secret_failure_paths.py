"""No secret on a failure path: every command with a secret stdin, run for real under bash.

pulumi-command v1.2.1 returns a failed command's whole stdout and stderr in its error
(provider/pkg/provider/remote/commandOutputs.go), whatever `logging` says. Each command whose
stdin is secret is taken from the program as registered (its real `create` text, with the real
wrapper components/scripts/secret-guard.sh), and run under bash with its real stdin while the
first program its body calls is a stand-in that echoes what it received to stderr and fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.guard import GUARD_TAG, guarded
from components.host import POWER_ON_ERROR_PREFIX
from components.nixos import write_file_command
from tests.components.test_deploy_chain import COMMAND, deploy, run  # noqa: F401 (fixtures)
from tests.components.test_host import LOCAL, POWER_ON, TOKEN, _resize_run
from tools.hetzner_power_on import ERROR_PREFIX

# The first external program each kind of body runs: the secret writers (write_file_command)
# start with mkdir, the reconcile is the host's mailman-reconcile wrapper.
STAND_INS = ("mkdir", "mailman-reconcile")
EXPECTED = {
    "mailman-nixos-secret-rest-api-password",
    "mailman-nixos-secret-dkim-private-key.pem",
    "mailman-nixos-secret-restic-password",
    "mailman-nixos-secret-backup-ssh-key",
    "mailman-nixos-secret-one-click-key",
    "mailman-reconcile-run",
}


def _bin(tmp_path: Path, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in STAND_INS:
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    # The host journal: what systemd-cat -t TAG -p err would store.
    (bin_dir / "systemd-cat").write_text(
        f'#!/bin/sh\necho "$*" >>"{tmp_path}/journal"\ncat >>"{tmp_path}/journal"\n'
    )
    (bin_dir / "systemd-cat").chmod(0o755)
    return bin_dir


def _run(
    create: str, stdin: str, tmp_path: Path, bin_dir: Path
) -> subprocess.CompletedProcess[str]:
    guard_tmp = tmp_path / "tmp"
    guard_tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(guard_tmp)}
    return subprocess.run(
        ["bash", "-c", create], input=stdin, text=True, capture_output=True, env=env, check=False
    )


def _secret_commands(run):  # noqa: F811
    return [r for r in run.of_type(COMMAND) if r.is_secret("stdin")]


def test_the_secret_commands_are_the_known_ones(run):  # noqa: F811
    assert {r.name for r in _secret_commands(run)} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_failing_body_that_echoes_the_secret_prints_one_fixed_line(run, tmp_path, name):  # noqa: F811
    resource = run.one(COMMAND, name)
    secret = resource.inputs["stdin"]
    assert len(secret) > 20
    bin_dir = _bin(tmp_path, 'cat >&2\necho "Traceback: boom" >&2\nexit 3')

    result = _run(resource.inputs["create"], secret, tmp_path, bin_dir)

    assert result.returncode == 3
    output = result.stdout + result.stderr
    for line in secret.splitlines():
        if len(line.strip()) >= 8:
            assert line.strip() not in output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"{GUARD_TAG}: ")
    assert f"(exit 3); details, as root where it ran: journalctl -t {GUARD_TAG}" in result.stderr
    # The details went to the journal, and nothing stays in the private temp dir.
    journal = (tmp_path / "journal").read_text()
    assert f"-t {GUARD_TAG} -p err" in journal
    assert secret.splitlines()[0] in journal
    assert "Traceback: boom" in journal
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failing_reconcile_shows_its_own_refusal_but_no_secret(run, tmp_path):  # noqa: F811
    resource = run.one(COMMAND, "mailman-reconcile-run")
    secret = resource.inputs["stdin"]
    refusal = ("mailman-reconcile: lists[a@example.org].settings.preferred_language must be a "
               'language Mailman core knows (de, en), not "xx"')
    # The stand-in echoes the secret (no final newline), then the program's own two lines.
    bin_dir = _bin(
        tmp_path, f"cat >&2\necho >&2\necho '{refusal}' >&2\necho '  detail' >&2\nexit 1")

    result = _run(resource.inputs["create"], secret, tmp_path, bin_dir)

    assert result.returncode == 1
    fixed, shown = result.stderr.splitlines()
    assert fixed.startswith(f"{GUARD_TAG}: mailman-reconcile failed (exit 1)")
    assert shown == refusal
    for line in secret.splitlines():
        if len(line.strip()) >= 8:
            assert line.strip() not in result.stdout + result.stderr
    assert "  detail" in (tmp_path / "journal").read_text()


def test_a_successful_reconcile_still_prints_its_summary(run, tmp_path):  # noqa: F811
    resource = run.one(COMMAND, "mailman-reconcile-run")
    bin_dir = _bin(tmp_path, 'cat >/dev/null\necho "lists: 2 created, 0 updated"')

    result = _run(resource.inputs["create"], resource.inputs["stdin"], tmp_path, bin_dir)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "lists: 2 created, 0 updated\n"
    assert not (tmp_path / "journal").exists()


def test_a_secret_writer_still_writes_through_the_guard(tmp_path):
    target = tmp_path / "secrets" / "key"
    create = guarded(
        write_file_command(str(target), mode="0600", dir_mode="0700"), "writing failed"
    )
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    result = subprocess.run(
        ["bash", "-c", create],
        input="s3cret\n",
        text=True,
        capture_output=True,
        env=env,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert target.read_text() == "s3cret\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def _run_power_on(tmp_path: Path, stand_in: str) -> subprocess.CompletedProcess[str]:
    """The registered resize power-on, run as pulumi-command runs a local command (/bin/sh -c,
    its secret environment), with `stand_in` as the body of the python3 it calls."""
    program = _resize_run({"hcloud:token": TOKEN}, {"hcloud:token"})
    power_on = program.one(LOCAL, POWER_ON)
    assert power_on.is_secret("environment")
    environment = power_on.inputs["environment"]
    assert environment["HCLOUD_TOKEN"] == TOKEN
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\n{stand_in}\n")
    (bin_dir / "python3").chmod(0o755)
    (bin_dir / "systemd-cat").write_text(f'#!/bin/sh\ncat >>"{tmp_path}/journal"\n')
    (bin_dir / "systemd-cat").chmod(0o755)
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        **environment,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path / "tmp"),
    }
    return subprocess.run(
        ["/bin/sh", "-c", power_on.inputs["create"]],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_the_local_power_on_command_never_prints_the_token_it_holds(tmp_path):
    """The resize power-on runs on this machine with HCLOUD_TOKEN in its (secret) environment."""
    result = _run_power_on(tmp_path, 'echo "token=$HCLOUD_TOKEN" >&2\nexit 1')

    assert result.returncode == 1
    assert TOKEN not in result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "powering the server on failed" in result.stderr
    assert f"token={TOKEN}" in (tmp_path / "journal").read_text()


def test_every_command_holding_a_secret_runs_under_the_guard(run):  # noqa: F811
    resize = _resize_run({"hcloud:token": TOKEN}, {"hcloud:token"})
    holding = [
        r
        for program in (run, resize)
        for r in (*program.of_type(COMMAND), *program.of_type(LOCAL))
        if r.is_secret("stdin") or r.is_secret("environment")
    ]
    assert len(holding) == len(EXPECTED) * 2 + 1
    for resource in holding:
        assert "guarded_body() {" in resource.inputs["create"], resource.name


def test_the_power_on_tools_own_error_line_passes_the_guard_but_no_token(tmp_path):
    """The tool's one line (ERROR_PREFIX, token masked) is what the operator needs to read."""
    assert POWER_ON_ERROR_PREFIX == ERROR_PREFIX
    own_line = f"{ERROR_PREFIX}GET /servers/1: HTTP 401: unable to authenticate (unauthorized)"
    result = _run_power_on(
        tmp_path, f'echo "token=$HCLOUD_TOKEN" >&2\necho "{own_line}" >&2\nexit 1'
    )

    assert result.returncode == 1
    assert TOKEN not in result.stdout + result.stderr
    fixed, shown = result.stderr.splitlines()
    assert "powering the server on failed" in fixed
    assert shown == own_line
