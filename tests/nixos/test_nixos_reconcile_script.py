"""mailman-reconcile (nixos/scripts/mailman-reconcile.sh) with a stand-in for mailman-web."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nixos_support import NIXOS

SCRIPT = NIXOS / "scripts" / "mailman-reconcile.sh"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to the web user needs root (as on the host)"
)


@pytest.fixture
def stand_in() -> Iterator[Path]:
    # Readable by the unprivileged user the script switches to (pytest's tmp_path is 0700).
    directory = Path(tempfile.mkdtemp(prefix="reconcile-"))
    directory.chmod(0o755)
    python = directory / "python"
    python.write_text(
        "#!/bin/sh\n"
        'echo "user=$(id -un)"\n'
        'echo "DJANGO_SETTINGS_MODULE=$DJANGO_SETTINGS_MODULE"\n'
        'echo "PYTHONPATH=$PYTHONPATH"\n'
        'echo "MAILMAN_WEB_CONFIG=$MAILMAN_WEB_CONFIG"\n'
        'echo "cwd=$(pwd)"\n'
        'echo "script=$1"\n'
        "shift\n"
        'echo "args=$*"\n'
        'echo "stdin=$(cat)"\n'
        'echo "leaked=${LEAKED-unset}"\n'
    )
    python.chmod(0o755)
    mailman = directory / "mailman"
    mailman.write_text('#!/bin/sh\necho "mailman $* as $(id -un)"\n')
    mailman.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def run(
    stand_in: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        input=stdin,
        env={
            "PATH": os.environ["PATH"],
            "MAILMAN_RECONCILE_PYTHON": str(stand_in / "python"),
            "MAILMAN_RECONCILE_SCRIPT": "/etc/nixos/mailman_reconcile.py",
            "MAILMAN_WEB_USER": "nobody",
            "MAILMAN_RECONCILE_MAILMAN": str(stand_in / "mailman"),
            "MAILMAN_RECONCILE_MARKER": str(stand_in / "marker"),
            "MAILMAN_RECONCILE_CORE_USER": "nobody",
            "MAILMAN_RECONCILE_WORKDIR": str(stand_in),
            "MAILMAN_RECONCILE_LOCK": str(stand_in / "lock"),
            "LEAKED": "the caller's environment",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_root
def test_runs_the_reconcile_as_the_web_user_with_mailman_webs_settings(stand_in: Path) -> None:
    result = run(stand_in, "--check", stdin='{"version": 1}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "user=nobody",
        "DJANGO_SETTINGS_MODULE=settings",
        "PYTHONPATH=/etc/mailman3",
        "MAILMAN_WEB_CONFIG=/etc/mailman3/settings.py",
        f"cwd={stand_in}",
        "script=/etc/nixos/mailman_reconcile.py",
        "args=--check",
        'stdin={"version": 1}',
        "leaked=unset",
    ]


@needs_root
def test_exit_status_of_the_reconcile_is_passed_on(stand_in: Path) -> None:
    (stand_in / "python").write_text("#!/bin/sh\necho 'mailman core unreachable' >&2\nexit 3\n")
    result = run(stand_in)
    assert result.returncode == 3
    assert "mailman core unreachable" in result.stderr


def run_exiting(
    stand_in: Path, body: str, *, systemctl_status: int = 0
) -> subprocess.CompletedProcess[str]:
    """The wrapper around a reconcile that runs `body`, with a `systemctl` on PATH that records
    its arguments in stand_in/systemctl.log and exits with `systemctl_status`."""
    (stand_in / "python").write_text(f"#!/bin/sh\n{body}\n")
    bin_dir = stand_in / "bin"
    bin_dir.mkdir(exist_ok=True)
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\necho "$*" >> {stand_in}/systemctl.log\nexit {systemctl_status}\n'
    )
    systemctl.chmod(0o755)
    return run(stand_in, PATH=f"{bin_dir}:{os.environ['PATH']}")


@needs_root
def test_site_renamed_restarts_the_web_app_and_succeeds(stand_in: Path) -> None:
    """Exit 10 (docs/contracts.md section 5): converged, but the web workers cache the old Site."""
    result = run_exiting(stand_in, "echo 'site: 0 created, 1 updated'; exit 10")

    assert result.returncode == 0, result.stderr
    assert "site: 0 created, 1 updated" in result.stdout
    assert (stand_in / "systemctl.log").read_text().splitlines() == [
        "restart mailman-uwsgi.service hyperkitty.service"
    ]


@needs_root
def test_a_failed_web_app_restart_fails_the_run(stand_in: Path) -> None:
    result = run_exiting(stand_in, "exit 10", systemctl_status=1)

    assert result.returncode != 0


@needs_root
def test_other_exit_statuses_restart_nothing(stand_in: Path) -> None:
    result = run_exiting(stand_in, "exit 0")

    assert result.returncode == 0, result.stderr
    assert not (stand_in / "systemctl.log").exists()


def test_refuses_to_run_without_root(stand_in: Path) -> None:
    # A copy the unprivileged user can read, run from a directory it can enter: the checkout
    # may lie under a directory other users cannot enter (e.g. a 0700 temp dir).
    script = stand_in / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    script.chmod(0o644)
    command = ["bash", str(script)]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "nobody", "--", *command]
    result = subprocess.run(
        command,
        cwd=stand_in,
        env={
            "PATH": os.environ["PATH"],
            "MAILMAN_RECONCILE_PYTHON": str(stand_in / "python"),
            "MAILMAN_RECONCILE_SCRIPT": "/etc/nixos/mailman_reconcile.py",
            "MAILMAN_WEB_USER": "nobody",
            "MAILMAN_RECONCILE_MAILMAN": str(stand_in / "mailman"),
            "MAILMAN_RECONCILE_MARKER": str(stand_in / "marker"),
            "MAILMAN_RECONCILE_CORE_USER": "nobody",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "run it as root" in result.stderr


def test_missing_setting_from_the_nix_wrapper_is_named(stand_in: Path) -> None:
    result = run(stand_in, MAILMAN_RECONCILE_SCRIPT="")
    assert result.returncode != 0
    assert "MAILMAN_RECONCILE_SCRIPT must be mailman_reconcile.py" in result.stderr


@needs_root
def test_a_marker_left_by_a_dead_run_makes_core_regenerate_the_maps(stand_in: Path) -> None:
    # A reconcile killed while it deferred core's map regeneration leaves its marker behind.
    (stand_in / "marker").write_text("999999\n")
    result = run(stand_in, stdin="{}")
    assert result.returncode == 0, result.stderr
    assert "mailman aliases as nobody" in result.stdout.splitlines()
    assert not (stand_in / "marker").exists()


@needs_root
def test_no_marker_no_regeneration(stand_in: Path) -> None:
    result = run(stand_in, stdin="{}")
    assert result.returncode == 0, result.stderr
    assert "mailman aliases" not in result.stdout


@needs_root
def test_a_second_run_is_refused_while_one_runs(stand_in: Path) -> None:
    # The first run's live marker must survive: the second run stops before touching it.
    (stand_in / "marker").write_text("999999\n")
    # Another run holds the lock (flock(2), as flock(1) in the script takes it).
    with (stand_in / "lock").open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = run(stand_in, stdin="{}")
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "mailman-reconcile: another run is in progress; run again when it has finished"]
    assert result.stdout == ""
    assert (stand_in / "marker").exists()
    # Once it has finished, the next run goes ahead.
    assert run(stand_in, stdin="{}").returncode == 0
