"""components/nixos.py helpers: what is pushed, how files are written, the final health check."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from components.nixos import (
    configuration_digest,
    final_health_command,
    read_nixos_tree,
    write_file_command,
)


def run_shell(script: str, stdin: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", script], input=stdin, text=True, capture_output=True, env=env, check=False
    )


def test_read_nixos_tree_skips_the_vm_tests_and_build_leftovers(tmp_path):
    for name in (
        "configuration.nix",
        "modules/postfix.nix",
        "mailman_reconcile.py",
        "tests/mailman.nix",
        "__pycache__/mailman_reconcile.cpython-311.pyc",
        "mailman.nix~",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")

    files = read_nixos_tree(tmp_path)

    assert files == {
        "configuration.nix": "# configuration.nix\n",
        "mailman_reconcile.py": "# mailman_reconcile.py\n",
        "modules/postfix.nix": "# modules/postfix.nix\n",
    }


REPO_NIXOS = Path(__file__).resolve().parents[2] / "nixos"
# What the host needs: NixOS modules, the reconcile program and the scripts the modules install.
HOST_FILE_SUFFIXES = (".nix", ".py", ".sh")


def test_only_host_files_of_the_real_nixos_tree_are_pushed():
    """Every pushed file is a push (and a switch trigger): test data must not live in nixos/."""
    pushed = read_nixos_tree(REPO_NIXOS)

    assert "configuration.nix" in pushed
    assert "mailman_reconcile.py" in pushed
    assert "scripts/mailman-site-health.sh" in pushed
    strays = [path for path in pushed if not path.endswith(HOST_FILE_SUFFIXES)]
    assert strays == [], f"not host files, move them out of nixos/: {strays}"


def test_digest_changes_with_content_and_with_file_names():
    base = configuration_digest({"a.nix": "{ }"}, "{}")

    assert configuration_digest({"a.nix": "{ }"}, "{}") == base
    assert configuration_digest({"a.nix": "{ x = 1; }"}, "{}") != base
    assert configuration_digest({"b.nix": "{ }"}, "{}") != base
    assert configuration_digest({"a.nix": "{ }"}, '{"hostname": "x"}') != base
    # Moving text between files is a change, even if the concatenation is the same.
    assert configuration_digest({"a.nix": "ab", "b.nix": ""}, "") != configuration_digest(
        {"a.nix": "a", "b.nix": "b"}, ""
    )


def test_write_file_command_writes_stdin_to_the_target(tmp_path):
    target = tmp_path / "etc" / "nixos" / "modules" / "mailman.nix"

    result = run_shell(write_file_command(str(target)), "{ services.mailman.enable = true; }\n")

    assert result.returncode == 0, result.stderr
    assert target.read_text() == "{ services.mailman.enable = true; }\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["mailman.nix"]  # no temp file left


def test_write_file_command_makes_secrets_root_only(tmp_path):
    target = tmp_path / "secrets" / "rest-api-password"

    result = run_shell(write_file_command(str(target), mode="0600", dir_mode="0700"), "s3cret\n")

    assert result.returncode == 0, result.stderr
    assert target.read_text() == "s3cret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_write_file_command_replaces_an_existing_file(tmp_path):
    target = tmp_path / "deployment.json"
    target.write_text("old")

    run_shell(write_file_command(str(target)), "new")

    assert target.read_text() == "new"


@pytest.fixture
def fake_systemd(tmp_path):
    """A fake `systemctl` that records its arguments; /run/systemd/system exists on the runner
    only if it runs systemd, so the restart branch is checked through the command text too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bin_dir / "systemctl").chmod(0o755)
    return bin_dir, log


def test_a_changed_secret_restarts_its_readers_only_when_it_changed(tmp_path, fake_systemd):
    bin_dir, log = fake_systemd
    target = tmp_path / "secrets" / "rest-api-password"
    script = write_file_command(
        str(target), mode="0600", dir_mode="0700", restart_units=("mailman.service",)
    ).replace("[ -d /run/systemd/system ]", "true")

    run_shell(script, "one", path=str(bin_dir))
    run_shell(script, "one", path=str(bin_dir))
    run_shell(script, "two", path=str(bin_dir))

    assert log.read_text().splitlines() == [
        "try-restart mailman.service",
        "try-restart mailman.service",
    ]
    assert target.read_text() == "two"


def test_file_names_with_shell_syntax_are_quoted(tmp_path):
    target = tmp_path / "odd name;touch pwned.nix"

    result = run_shell(write_file_command(str(target)), "x")

    assert result.returncode == 0, result.stderr
    assert target.read_text() == "x"
    assert not (Path.cwd() / "pwned.nix").exists()


def fake_health(tmp_path: Path, failures: int) -> Path:
    """A mailman-site-health that fails `failures` times (uwsgi still loading), then passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    health = bin_dir / "mailman-site-health"
    health.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        f'if [ "$(wc -l < {tmp_path}/calls)" -le {failures} ]; then\n'
        "  echo 'FAIL  uwsgi       http://127.0.0.1:18507/postorius/lists/ answered nothing'\n"
        "  exit 1\n"
        "fi\n"
        "echo 'ok    uwsgi       http://127.0.0.1:18507/postorius/lists/ answered 200'\n"
        "echo 'WARN  outbound    no answer from gmail-smtp-in.l.google.com:25'\n"
    )
    health.chmod(0o755)
    return bin_dir


def test_final_health_check_waits_for_a_web_app_that_is_still_starting(tmp_path):
    """The reconcile restarts uwsgi after the Site rename; the check must not race it."""
    bin_dir = fake_health(tmp_path, failures=2)

    result = run_shell(final_health_command(timeout_seconds=30, interval_seconds=0), "", bin_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["--outbound"] * 3
    # Only the last run is printed (and streamed into `pulumi up`'s output): no stale FAIL.
    assert result.stdout.splitlines() == [
        "ok    uwsgi       http://127.0.0.1:18507/postorius/lists/ answered 200",
        "WARN  outbound    no answer from gmail-smtp-in.l.google.com:25",
    ]


def test_final_health_check_fails_with_the_last_output_when_the_site_stays_down(tmp_path):
    bin_dir = fake_health(tmp_path, failures=1000)

    result = run_shell(final_health_command(timeout_seconds=1, interval_seconds=0), "", bin_dir)

    assert result.returncode == 1
    assert result.stdout.strip() == (
        "FAIL  uwsgi       http://127.0.0.1:18507/postorius/lists/ answered nothing"
    )
