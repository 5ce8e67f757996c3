"""switch-with-rollback.sh, run for real with fake NixOS commands on PATH (see fake_nixos.py)."""

from pathlib import Path

import pytest

from tests.components.scripts.fake_nixos import FakeHost

FILES = ("configuration.nix", "mailman.nix")


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def test_healthy_switch_activates_the_new_generation(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    assert host.running == "gen2"
    assert host.boot_default == "gen2"
    assert "switch-to-configuration switch" in host.calls
    assert "ok   smtp" in result.stdout
    assert not any("reboot" in call for call in host.calls)


def test_activation_runs_as_a_transient_unit_that_outlives_the_ssh_session(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)

    host.run("apply", "nixos-26.05", *FILES)

    activation = next(call for call in host.calls if call.startswith("systemd-run"))
    assert "--unit=nixos-rebuild-switch-to-configuration" in activation
    assert "--pipe" in activation
    assert activation.endswith("/store/gen2/bin/switch-to-configuration switch")


def test_a_long_build_keeps_the_ssh_session_busy_with_progress_lines(host):
    """A silent session is dropped by NATs on the way (Azure's after 4 idle minutes)."""
    host.build_next("gen2", kernel="6.12.1", healthy=True)
    (host.root / "build-seconds").write_text("2.5")

    result = host.run("apply", "nixos-26.05", *FILES, MAILMAN_SITE_PROGRESS_INTERVAL="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("switch: still working") >= 2


def test_the_progress_ticker_ends_with_the_script(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)

    result = host.run("apply", "nixos-26.05", *FILES, MAILMAN_SITE_PROGRESS_INTERVAL="1")

    # subprocess.run returned, so nothing kept stdout open; and no ticker line after the last.
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("switch: generation 2 is active")


def test_then_verify_confirms_the_running_system(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)
    host.run("apply", "nixos-26.05", *FILES)

    result = host.run("verify")

    assert result.returncode == 0, result.stderr
    assert "running the deployed system" in result.stdout


def test_failed_build_activates_nothing_and_shows_the_error(host):
    (host.root / "build-fails").touch()

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert "nothing was activated, generation 1 keeps running" in result.stderr
    assert "attribute 'mailmn' missing" in result.stderr
    assert host.running == "gen1"
    assert not any(call.startswith("nix-env") for call in host.calls)


def test_failed_switch_rolls_back_and_prints_the_failed_units_journal(host):
    host.build_next("gen2", kernel="6.12.1", healthy=False, activation_fails=True)
    (host.root / "failed-units").write_text("mailman.service\n")

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert "nix-env --profile" in "\n".join(host.calls)
    assert any(call.endswith("--switch-generation 1") for call in host.calls)
    assert host.running == "gen1"
    assert host.boot_default == "gen1"
    assert "the following units failed: mailman.service" in result.stderr
    assert "journalctl -u mailman.service" in result.stderr
    assert "cannot bind 127.0.0.1:8001" in result.stderr
    assert "the switch failed; rolled back, generation 1 is serving again" in result.stderr


def test_pending_certificate_order_does_not_roll_back_a_healthy_switch(host):
    """First deploy without dnsZone: the name does not resolve here yet, the order unit fails.

    switch-to-configuration exits 4 for it, but nginx serves the self-signed placeholder and the
    site is healthy; rolling back would return to the installer's system for nothing.
    """
    host.build_next("gen2", kernel="6.12.1", healthy=True, activation_fails=True)
    (host.root / "failed-units").write_text(
        "acme-order-renew-lists.example.org.service\nacme-order-renew-mta-sts.example.org.service\n"
    )

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    assert host.running == "gen2"
    assert "WARN: acme-order-renew-lists.example.org.service failed" in result.stdout
    assert "systemctl start acme-order-renew-mta-sts.example.org.service" in result.stdout
    assert host.run("verify").returncode == 0


def test_a_failed_service_besides_a_pending_certificate_still_rolls_back(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True, activation_fails=True)
    (host.root / "failed-units").write_text(
        "acme-order-renew-lists.example.org.service\nopendkim.service\n"
    )

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert host.running == "gen1"
    assert "journalctl -u opendkim.service" in result.stderr


def test_units_that_failed_before_the_switch_do_not_count(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)

    host.run("apply", "nixos-26.05", *FILES)

    calls = host.calls
    activation = next(i for i, call in enumerate(calls) if call.startswith("systemd-run"))
    assert "systemctl reset-failed" in calls[:activation]


def test_failed_health_check_rolls_back_to_the_previous_generation(host):
    host.build_next("gen2", kernel="6.12.1", healthy=False)

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert host.running == "gen1"
    assert host.boot_default == "gen1"
    assert "mailman-site-health failed after the switch" in result.stderr
    assert "FAIL rest: http://127.0.0.1:8001 connection refused" in result.stderr
    assert host.calls.count("mailman-site-health ") == 1


def test_verify_keeps_failing_after_a_rollback(host):
    """A retried `pulumi up` must not report success while the old generation runs."""
    host.build_next("gen2", kernel="6.12.1", healthy=False)
    host.run("apply", "nixos-26.05", *FILES)

    result = host.run("verify")

    assert result.returncode == 1
    assert "mailman-site-health failed; rolled back to generation 1" in result.stderr


def test_rollback_returns_to_the_exact_previous_generation_not_just_one_back(host):
    host.add_system("gen2", kernel="6.12.1", healthy=True)
    host.add_system("gen3", kernel="6.12.1", healthy=False)
    host.build_next("gen2")
    assert host.run("apply", "nixos-26.05", *FILES).returncode == 0
    host.build_next("gen3")
    assert host.run("apply", "nixos-26.05", *FILES).returncode == 1
    host.add_system("gen4", kernel="6.12.1", healthy=False)
    host.build_next("gen4")  # generation 4 now; 3 is the earlier failed one

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert host.running == "gen2"
    assert "rolled back, generation 2 is serving again" in result.stderr


def test_kernel_change_sets_boot_default_and_schedules_a_reboot(host):
    host.build_next("gen2", kernel="6.18.0", healthy=True)

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    assert "kernel changes: a reboot is needed" in result.stdout
    assert "switch-to-configuration boot" in host.calls
    assert "switch-to-configuration switch" not in host.calls
    assert host.running == "gen1"
    assert host.boot_default == "gen2"
    assert any(call.startswith("systemd-run") and "reboot" in call for call in host.calls)
    assert "systemctl stop sshd.service sshd.socket" in host.calls
    assert "mailman-site-health " not in host.calls


def test_kernel_parameter_change_also_needs_a_reboot(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True, params="console=ttyS0 quiet")

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    assert "kernel parameters change" in result.stdout
    assert host.boot_default == "gen2"


def test_verify_after_reboot_checks_health(host):
    host.build_next("gen2", kernel="6.18.0", healthy=True)
    host.run("apply", "nixos-26.05", *FILES)
    host.reboot()

    result = host.run("verify")

    assert result.returncode == 0, result.stderr
    assert "rebooted into" in result.stdout
    assert "mailman-site-health " in host.calls


def test_unhealthy_after_reboot_rolls_back_live_and_as_boot_default(host):
    host.build_next("gen2", kernel="6.18.0", healthy=False)
    host.run("apply", "nixos-26.05", *FILES)
    host.reboot()

    result = host.run("verify")

    assert result.returncode == 1
    assert host.running == "gen1"
    assert host.boot_default == "gen1"
    assert "mailman-site-health failed after the reboot" in result.stderr
    assert "FAIL rest" in result.stderr
    assert host.run("verify").returncode == 1  # and stays failed on a retry


def test_booting_the_old_generation_is_a_failure_that_restores_the_boot_default(host):
    host.build_next("gen2", kernel="6.18.0", healthy=True)
    host.run("apply", "nixos-26.05", *FILES)
    # The new generation hung at boot; the operator picked generation 1 in the console.
    for link in ("current-system", "booted-system"):
        (host.root / "run" / link).unlink()
        (host.root / "run" / link).symlink_to(host.root / "store" / "gen1")

    result = host.run("verify")

    assert result.returncode == 1
    assert "not the new generation" in result.stderr
    assert host.boot_default == "gen1"


def test_the_build_uses_the_pinned_nixpkgs_and_no_channel(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    etc = host.root / "etc-nixos"
    assert f"nix-instantiate --eval --json {etc}/nixpkgs.nix" in host.calls
    assert f"nixos-rebuild build -I nixpkgs={host.nixpkgs_path('rev1')}" in host.calls
    assert not any(call.startswith("nix-channel") for call in host.calls)


def test_a_pin_bump_that_fails_health_rolls_back_to_the_previous_revisions_generation(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)
    host.run("apply", "nixos-26.05", *FILES)
    host.pin("rev2")
    host.build_next("gen3", kernel="6.12.1", healthy=False)

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert f"nixos-rebuild build -I nixpkgs={host.nixpkgs_path('rev2')}" in host.calls
    # gen2 is the closure built from rev1: rolling back needs no fetch and no rebuild.
    assert host.running == "gen2"
    assert host.boot_default == "gen2"
    assert "rolled back, generation 2 is serving again" in result.stderr


def test_a_pin_that_cannot_be_fetched_or_verified_builds_nothing(host):
    (host.root / "pin-fetch-fails").touch()

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 1
    assert "could not fetch the pinned nixpkgs (nixos-26.05) or its NAR hash does not match" in (
        result.stderr
    )
    assert "hash mismatch" in result.stderr
    assert not any(call.startswith("nixos-rebuild") for call in host.calls)
    assert host.running == "gen1"


def test_files_dropped_from_nixos_dir_are_removed_from_etc_nixos(host):
    host.build_next("gen2", kernel="6.12.1", healthy=True)
    etc = host.root / "etc-nixos"
    for name in (*FILES, "backup.nix", "hardware-configuration.nix"):
        (etc / name).write_text("{ }\n")
    host.run("apply", "nixos-26.05", *FILES, "backup.nix")

    result = host.run("apply", "nixos-26.05", *FILES)

    assert result.returncode == 0, result.stderr
    assert not (etc / "backup.nix").exists()
    assert (etc / "mailman.nix").exists()
    assert (etc / "hardware-configuration.nix").exists()  # never pushed, never removed


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b"])
def test_managed_paths_outside_etc_nixos_are_refused(host, path):
    result = host.run("apply", "nixos-26.05", "configuration.nix", path)

    assert result.returncode == 2
    assert "refusing managed file path" in result.stderr
    assert host.calls == []


def test_unknown_mode_is_a_usage_error(host):
    result = host.run("switch")

    assert result.returncode == 2
    assert "usage:" in result.stderr
