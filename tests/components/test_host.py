"""The host: firewall, addresses, rDNS, volume, server options, install, SSH connection."""

import os
import shutil
import subprocess
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud
import pytest
import yaml

from components.guard import guarded
from components.host import (
    POWER_ON_ERROR_PREFIX,
    POWER_ON_FAILED,
    POWER_ON_TOOL,
    VOLUME_MOUNT_POINT,
    nixos_ready_script,
    power_on_command,
    resize_stop_script,
    volume_grow_script,
    volume_release_script,
)
from components.installer import INSTALL_LOG, install_script, remove_old_root
from components.ssh import ACROSS_REBOOT, FIRST_BOOT, HOST_MAY_BE_GONE, RUNNING_HOST
from tests.components.conftest import BASE
from tests.harness import (
    FIRST_DEPLOY,
    MOCK_ED25519_PUBLIC,
    MOCK_IPV4,
    Secret,
    plain_strings,
    run_program,
)

SERVER = "hcloud:index/server:Server"
PRIMARY_IP = "hcloud:index/primaryIp:PrimaryIp"
VOLUME = "hcloud:index/volume:Volume"
FIREWALL = "hcloud:index/firewall:Firewall"
RDNS = "hcloud:index/rdns:Rdns"
COMMAND = "command:remote:Command"
WORLD = ["0.0.0.0/0", "::/0"]


def _rules(run):
    return [
        (r["direction"], r["protocol"], r.get("port"), r["sourceIps"])
        for r in run.one(FIREWALL).inputs["rules"]
    ]


def test_firewall_opens_exactly_ssh_smtp_http_https_icmp(base_run):
    assert _rules(base_run) == [
        ("in", "tcp", "22", WORLD),
        ("in", "tcp", "25", WORLD),
        ("in", "tcp", "80", WORLD),
        ("in", "tcp", "443", WORLD),
        ("in", "icmp", None, WORLD),
    ]


def test_firewall_restricts_ssh_to_allowed_ips_only(zoned_run):
    rules = _rules(zoned_run)
    assert rules[0] == ("in", "tcp", "22", ["198.51.100.0/24", "2001:db8:ffff::/48"])
    assert all(sources == WORLD for _, _, port, sources in rules[1:])


def test_firewall_is_attached_when_the_server_is_created(base_run):
    firewall = base_run.one(FIREWALL)
    server = base_run.one(SERVER)
    assert server.inputs["firewallIds"] == [int(firewall.id)]
    assert not base_run.of_type("hcloud:index/firewallAttachment:FirewallAttachment")


def test_primary_ips_are_kept_when_the_server_goes(base_run):
    ips = base_run.of_type(PRIMARY_IP)
    assert sorted(ip.inputs["type"] for ip in ips) == ["ipv4", "ipv6"]
    for ip in ips:
        assert ip.inputs["autoDelete"] is False
        assert ip.inputs["location"] == "nbg1"


def test_primary_ips_name_no_assignee_type_without_an_assignee(base_run):
    """terraform-provider-hcloud v1.68.0 internal/primaryip/resource.go lines 177-182: an
    `assignee_type` without `assignee_id` is an "Unused Attribute" warning on every run."""
    for ip in base_run.of_type(PRIMARY_IP):
        assert "assigneeType" not in ip.inputs
        assert "assigneeId" not in ip.inputs


def test_server_uses_both_primary_ips(base_run):
    ids = {ip.inputs["type"]: int(ip.id) for ip in base_run.of_type(PRIMARY_IP)}
    assert base_run.one(SERVER).inputs["publicNets"] == [
        {"ipv4Enabled": True, "ipv4": ids["ipv4"], "ipv6Enabled": True, "ipv6": ids["ipv6"]}
    ]


@pytest.mark.parametrize("type_", [PRIMARY_IP, VOLUME, "tls:index/privateKey:PrivateKey"])
def test_persistent_resources_are_not_children_of_the_server(base_run, type_):
    server = base_run.one(SERVER)
    for resource in base_run.of_type(type_):
        assert server not in base_run.ancestors(resource)
        assert resource.deleted_with == ""


def test_nothing_is_a_child_of_the_server(base_run):
    server = base_run.one(SERVER)
    assert [r.name for r in base_run.resources if r.parent == server.urn] == []


def test_rdns_points_both_addresses_at_the_hostname(base_run):
    records = {r.inputs["ipAddress"]: r.inputs["dnsPtr"] for r in base_run.of_type(RDNS)}
    assert records == {MOCK_IPV4: "lists.example.org", "2001:db8:1:2::1": "lists.example.org"}
    ids = {ip.inputs["type"]: int(ip.id) for ip in base_run.of_type(PRIMARY_IP)}
    by_address = {r.inputs["ipAddress"]: r.inputs["primaryIpId"] for r in base_run.of_type(RDNS)}
    assert by_address == {MOCK_IPV4: ids["ipv4"], "2001:db8:1:2::1": ids["ipv6"]}


def test_volume_is_formatted_ext4_and_not_automounted(base_run):
    volume = base_run.one(VOLUME)
    assert volume.inputs["format"] == "ext4"
    assert volume.inputs["automount"] is False
    assert volume.inputs["size"] == 10
    attachment = base_run.one("hcloud:index/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["automount"] is False


def test_volume_size_follows_the_setting():
    run = run_program({**BASE, "volumeSize": 50})
    assert run.one(VOLUME).inputs["size"] == 50


def test_protection_on_by_default(base_run):
    server = base_run.one(SERVER)
    assert server.protect
    assert server.inputs["deleteProtection"] is True
    assert server.inputs["rebuildProtection"] is True
    for resource in [*base_run.of_type(PRIMARY_IP), base_run.one(VOLUME)]:
        assert resource.protect
        assert resource.inputs["deleteProtection"] is True


def test_protection_off_by_setting(unprotected_run):
    server = unprotected_run.one(SERVER)
    assert not server.protect
    assert server.inputs["deleteProtection"] is False
    assert server.inputs["rebuildProtection"] is False
    for resource in [*unprotected_run.of_type(PRIMARY_IP), unprotected_run.one(VOLUME)]:
        assert not resource.protect
        assert resource.inputs["deleteProtection"] is False


def test_backups_follow_the_setting(base_run, unprotected_run):
    assert base_run.one(SERVER).inputs["backups"] is True
    assert unprotected_run.one(SERVER).inputs["backups"] is False


def test_a_replacement_server_is_created_after_the_old_one_released_ips_volume_and_name(base_run):
    assert base_run.one(SERVER).delete_before_replace
    assert base_run.one("hcloud:index/volumeAttachment:VolumeAttachment").delete_before_replace


def test_server_ignores_no_input_so_a_replacement_gets_current_values(base_run):
    """The engine puts OLD values back for ignored properties, also when it replaces the server."""
    assert base_run.one(SERVER).ignore_changes == ()


@pytest.mark.parametrize("type_", [PRIMARY_IP, VOLUME, FIREWALL, "hcloud:index/sshKey:SshKey"])
def test_resources_with_unique_hetzner_names_are_deleted_before_replacement(base_run, type_):
    """Created first, a replacement is refused (`uniqueness_error`): the old one holds the name."""
    for resource in base_run.of_type(type_):
        assert resource.delete_before_replace, resource.name


def test_deploy_key_is_protected_like_the_host_keys(base_run, unprotected_run):
    """A new deploy key is a new server (SshKey.public_key and Server.ssh_keys are ForceNew)."""
    name = "mailman-host-deploy-key"
    assert base_run.one("tls:index/privateKey:PrivateKey", name).protect
    assert not unprotected_run.one("tls:index/privateKey:PrivateKey", name).protect


def test_server_from_stock_image_type_and_location(base_run):
    server = base_run.one(SERVER)
    assert server.inputs["image"] == "debian-12"
    assert server.inputs["serverType"] == "cx23"
    assert server.inputs["location"] == "nbg1"
    assert server.inputs["name"] == "lists.example.org"


def test_labels_name_project_and_stack(base_run):
    for type_ in (SERVER, VOLUME, FIREWALL, PRIMARY_IP, "hcloud:index/sshKey:SshKey"):
        for resource in base_run.of_type(type_):
            assert resource.inputs["labels"] == {"project": "mailman", "stack": "test"}


def test_only_the_deploy_key_is_a_hetzner_ssh_key(zoned_run):
    keys = zoned_run.of_type("hcloud:index/sshKey:SshKey")
    # Without tls's trailing newline: Hetzner stores the key trimmed (see test_plan_model).
    assert [k.inputs["publicKey"] for k in keys] == [MOCK_ED25519_PUBLIC]
    assert keys[0].inputs["name"] == "mailman-test-deploy"


def _cloud_config(run):
    user_data = run.one(SERVER).raw_inputs["userData"]
    assert isinstance(user_data, Secret), "user_data carries the host private key"
    text = user_data.value
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_cloud_init_only_installs_the_stack_host_key_before_first_boot(base_run):
    config = _cloud_config(base_run)
    host_key = base_run.one("tls:index/privateKey:PrivateKey", "mailman-host-ssh-host-key")
    assert host_key.inputs == {"algorithm": "ED25519"}
    # The image's own keys are removed and none are generated: only the stack's key exists.
    # Nothing else: no installer, no release, no operator keys.
    assert config == {
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": host_key.outputs["privateKeyOpenssh"],
            "ed25519_public": MOCK_ED25519_PUBLIC,
        },
        "ssh_genkeytypes": [],
        "disable_root": False,
    }


def test_there_is_no_second_host_key(base_run):
    names = [r.name for r in base_run.of_type("tls:index/privateKey:PrivateKey")]
    assert "mailman-host-ssh-host-rsa-key" not in names


def test_user_data_stays_the_same_when_install_settings_change(base_run, zoned_run, pin_nixpkgs):
    """Release and operator keys are not in it, so it never forces a new server."""
    pin_nixpkgs("nixos-25.11")
    other = run_program({**BASE, "nixosRelease": "nixos-25.11"})
    assert _cloud_config(other) == _cloud_config(base_run)
    assert zoned_run.namespace["site"].settings.ssh_public_keys  # operator keys are set there
    assert _cloud_config(zoned_run) == _cloud_config(base_run)


def _install(run):
    return run.one(COMMAND, "mailman-host-nixos-install")


def test_nixos_install_runs_the_current_installer_once_per_server(base_run):
    install = _install(base_run)
    server = base_run.one(SERVER)
    attachment = base_run.one("hcloud:index/volumeAttachment:VolumeAttachment")
    assert install.inputs["create"] == install_script("nixos-26.05")
    assert install.inputs["triggers"] == [server.id]
    assert {server.urn, attachment.urn} <= set(install.depends_on)
    assert install.inputs["addPreviousOutputInEnv"] is False
    assert "delete" not in install.inputs and "update" not in install.inputs


def test_nixos_install_gets_the_release_from_settings(pin_nixpkgs):
    pin_nixpkgs("nixos-25.11")
    run = run_program({**BASE, "nixosRelease": "nixos-25.11"})
    assert _install(run).inputs["create"] == install_script("nixos-25.11")
    assert "NIX_CHANNEL=nixos-25.11" in _install(run).inputs["create"]


def test_nixos_install_carries_no_secret(base_run):
    install = _install(base_run)
    assert not install.is_secret("create")
    assert "PRIVATE KEY" not in install.inputs["create"]


def _connection(run, name):
    connection = run.one(COMMAND, name).raw_inputs["connection"]
    return connection, (connection.value if isinstance(connection, Secret) else connection)


def test_connection_pins_the_host_key_and_uses_the_deploy_key(base_run):
    for name in ("mailman-host-nixos-install", "mailman-host-nixos-ready"):
        connection, plain = _connection(base_run, name)
        assert plain["host"] == MOCK_IPV4
        assert plain["user"] == "root"
        assert plain["hostKey"] == MOCK_ED25519_PUBLIC
        # The engine receives the deploy private key only under a secret marker.
        assert plain["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert not any("PRIVATE KEY" in text for text in plain_strings(connection))
        assert plain["perDialTimeout"] > 0


def _budgets(run):
    return {r.name: _connection(run, r.name)[1]["dialErrorLimit"] for r in run.of_type(COMMAND)}


def test_dial_budgets_are_long_only_across_a_reboot(base_run):
    budgets = _budgets(base_run)
    assert budgets.pop("mailman-host-nixos-ready") == ACROSS_REBOOT.dial_error_limit
    assert budgets.pop("mailman-nixos-switch-verify") == ACROSS_REBOOT.dial_error_limit
    assert budgets.pop("mailman-host-nixos-install") == FIRST_BOOT.dial_error_limit
    assert budgets.pop("mailman-host-data-release") == HOST_MAY_BE_GONE.dial_error_limit
    assert len(budgets) > 5
    assert set(budgets.values()) == {RUNNING_HOST.dial_error_limit}


def test_an_ssh_problem_on_a_running_host_fails_within_minutes():
    assert RUNNING_HOST.bounds_minutes()[1] <= 10
    assert FIRST_BOOT.bounds_minutes()[1] <= 20
    assert RUNNING_HOST.bounds_minutes()[0] >= 2  # a resized server's boot fits


def test_no_remote_command_puts_previous_output_in_its_environment(base_run):
    """The provider warns about PULUMI_COMMAND_STDOUT when sshd refuses the variable."""
    commands = base_run.of_type(COMMAND)
    assert commands
    assert {r.name: r.inputs.get("addPreviousOutputInEnv") for r in commands} == {
        r.name: False for r in commands
    }


def test_nixos_ready_waits_for_the_install_and_reruns_for_a_new_server(base_run):
    ready = base_run.one(COMMAND, "mailman-host-nixos-ready")
    server = base_run.one(SERVER)
    assert _install(base_run).urn in ready.depends_on
    assert ready.inputs["triggers"] == [server.id]
    assert "grep -qx ID=nixos /etc/os-release" in ready.inputs["create"]
    assert INSTALL_LOG in ready.inputs["create"]


def test_nixos_ready_removes_debians_old_root_once_nixos_is_up(base_run):
    create = base_run.one(COMMAND, "mailman-host-nixos-ready").inputs["create"]
    nixos_branch = create.split("\nelse\n")[0]
    assert "rm -rf --one-file-system -- /old-root" in nixos_branch
    assert "rm " not in create.split("\nelse\n")[1]


def test_old_root_removal_deletes_the_tree_and_nothing_else(tmp_path):
    old = tmp_path / "old-root"
    (old / "var/lib/cloud/instance").mkdir(parents=True)
    (old / "var/lib/cloud/instance/user-data.txt").write_text("PRIVATE KEY")
    (tmp_path / "keep").write_text("x")
    script = "set -eu\n" + "\n".join(remove_old_root(str(old)))

    first = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    again = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)

    assert first.returncode == 0, first.stderr
    assert not old.exists()
    assert (tmp_path / "keep").exists()
    assert f"removed {old}" in first.stdout
    assert (again.returncode, again.stdout) == (0, "")  # nothing left: a re-run does nothing


def _shellcheck(script: str):
    tool = shutil.which("shellcheck")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is required on CI")
        pytest.skip("shellcheck not installed")
    return subprocess.run(
        [tool, "--shell=bash", "-"],
        input="#!/usr/bin/env bash\n" + script,
        text=True,
        capture_output=True,
        check=False,
    )


@pytest.mark.parametrize(
    "script",
    [install_script("nixos-26.05"), nixos_ready_script("203.0.113.10"), volume_release_script()],
    ids=["install", "nixos-ready", "volume-release"],
)
def test_host_scripts_pass_shellcheck(script):
    result = _shellcheck(script)
    assert result.returncode == 0, result.stdout


def test_host_interface_of_the_contract(zoned_run):
    """docs/contracts.md section 3: what the deploy chain may rely on."""
    host = zoned_run.namespace["site"].host
    assert isinstance(host.server, hcloud.Server)
    assert isinstance(host.volume, hcloud.Volume)
    assert isinstance(host.connection, command.remote.ConnectionArgs)
    assert isinstance(host.nixos_ready, pulumi.Resource)
    assert zoned_run.resolve(host.ipv4_address) == (MOCK_IPV4, False)
    assert zoned_run.resolve(host.ipv6_address) == ("2001:db8:1:2::1", False)
    assert zoned_run.resolve(host.ssh_host_public_key) == (MOCK_ED25519_PUBLIC, False)
    assert zoned_run.resolve(host.deploy_public_key) == (MOCK_ED25519_PUBLIC, False)


def test_volume_is_released_on_the_old_host_before_it_is_detached(base_run):
    """A replaced server (or `pulumi destroy`) deletes the attachment while the old server runs.

    The release depends on the attachment, so the engine deletes it first, and its trigger on the
    attachment replaces it (running its delete) exactly when the attachment is replaced.
    """
    release = base_run.one(COMMAND, "mailman-host-data-release")
    attachment = base_run.one("hcloud:index/volumeAttachment:VolumeAttachment")
    server = base_run.one(SERVER)
    assert attachment.urn in release.depends_on
    assert release.inputs["triggers"] == [server.id, attachment.id]
    assert "create" not in release.inputs  # nothing runs when it is created
    assert release.inputs["delete"] == volume_release_script()


def test_volume_release_stops_the_volume_mount_and_syncs():
    script = volume_release_script()
    assert f"systemd-escape --path --suffix=mount {VOLUME_MOUNT_POINT}" in script
    assert 'systemctl stop "$unit"' in script
    assert script.splitlines()[-1] == "sync"


def test_volume_release_mount_point_is_the_one_nixos_mounts():
    storage = (Path(__file__).resolve().parents[2] / "nixos" / "storage.nix").read_text()
    assert f'volume = "{VOLUME_MOUNT_POINT}";' in storage


def test_volume_release_gives_up_quickly_on_a_host_that_is_gone(base_run):
    release = base_run.one(COMMAND, "mailman-host-data-release")
    connection = release.raw_inputs["connection"]
    plain = connection.value if isinstance(connection, Secret) else connection
    assert plain["dialErrorLimit"] <= 5
    assert plain["hostKey"] == MOCK_ED25519_PUBLIC


def test_a_server_type_change_keeps_the_disk_so_it_can_be_undone(base_run):
    assert base_run.one(SERVER).inputs["keepDisk"] is True


# Resize: the provider powers the server off hard, then ChangeType (internal/server/resource.go
# lines 587-611 at terraform-provider-hcloud v1.68.0), so the services are stopped first.


def test_a_server_type_change_stops_the_services_first(monkeypatch):
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    run = run_program({**BASE, "serverType": "cx33"}, cloud=FIRST_DEPLOY.with_server("cx23"))
    stop = run.one(COMMAND, "mailman-host-resize-stop")
    server = run.one(SERVER)
    assert stop.urn in server.depends_on
    assert stop.inputs["create"] == resize_stop_script("cx23", "cx33")
    assert stop.inputs["triggers"] == ["cx33"]
    assert stop.inputs["addPreviousOutputInEnv"] is False
    assert stop.raw_inputs["connection"].value["dialErrorLimit"] == RUNNING_HOST.dial_error_limit
    assert any("cx23 -> cx33: downtime" in w for w in warnings)
    assert any("powers it on again" in w for w in warnings)


@pytest.mark.parametrize("cloud", [FIRST_DEPLOY, FIRST_DEPLOY.with_server("cx23")])
def test_no_stop_without_a_type_change(cloud):
    run = run_program(BASE, cloud=cloud)
    assert not [c for c in run.of_type(COMMAND) if c.name == "mailman-host-resize-stop"]


# Power-on: the provider leaves the resized server off (it calls powerOnServer only after a create
# and a public_net change, internal/server/resource.go line 1455), so the program powers it on.

LOCAL = "command:local:Command"
POWER_ON = "mailman-host-resize-power-on"
TOKEN = "h" * 64
RESIZE = {**BASE, "serverType": "cx33"}


def _resize_run(extra=None, secrets=()):
    config = {**RESIZE, **(extra or {})}
    return run_program(config, secrets, cloud=FIRST_DEPLOY.with_server("cx23"))


def _depends_on_transitively(run, resource, target):
    seen, todo = set(), list(resource.depends_on)
    while todo:
        urn = todo.pop()
        if urn == target.urn:
            return True
        if urn not in seen:
            seen.add(urn)
            known = [r for r in run.resources if r.urn == urn]
            todo.extend(known[0].depends_on if known else [])
    return False


def test_a_resize_powers_the_server_on_again_after_the_update():
    run = _resize_run()
    power_on = run.one(LOCAL, POWER_ON)
    server = run.one(SERVER)
    assert server.urn in power_on.depends_on
    assert power_on_command(server.id) == f"python3 {POWER_ON_TOOL} {int(server.id)}"
    # Its environment holds the token: run under the guard (test_secret_failure_paths.py).
    assert power_on.inputs["create"] == guarded(
        power_on_command(server.id), POWER_ON_FAILED, POWER_ON_ERROR_PREFIX
    )
    assert power_on.inputs["triggers"] == [server.id, "cx33"]
    assert power_on.inputs["addPreviousOutputInEnv"] is False
    assert "dir" not in power_on.inputs  # the project directory: tools/ is found from there


def test_the_power_on_tool_is_in_the_project_directory():
    assert (Path(__file__).resolve().parents[2] / POWER_ON_TOOL).is_file()


def test_everything_that_connects_to_the_host_waits_for_the_power_on():
    run = _resize_run()
    power_on = run.one(LOCAL, POWER_ON)
    others = [c for c in run.of_type(COMMAND) if c.name != "mailman-host-resize-stop"]
    assert len(others) > 5
    assert "mailman-health-check" in [c.name for c in others]  # what proves the site is back
    late = [c.name for c in others if not _depends_on_transitively(run, c, power_on)]
    assert late == []
    # ... and it waits for the resize, which waits for the services to stop: no cycle.
    stop = run.one(COMMAND, "mailman-host-resize-stop")
    assert not _depends_on_transitively(run, stop, power_on)


@pytest.mark.parametrize("cloud", [FIRST_DEPLOY, FIRST_DEPLOY.with_server("cx23")])
def test_no_power_on_without_a_type_change(cloud):
    run = run_program(BASE, cloud=cloud)
    assert run.of_type(LOCAL) == []


def test_a_server_left_off_by_an_earlier_failed_resize_is_powered_on_by_the_next_up():
    """The update that resized it failed before its power-on ran: the next `pulumi up` sees no
    type change, but preflight sees the server off (hcloud.get_servers `status`)."""
    run = run_program(BASE, cloud=FIRST_DEPLOY.with_server("cx23", status="off"))
    power_on = run.one(LOCAL, POWER_ON)
    assert run.one(SERVER).urn in power_on.depends_on
    assert all(c.name != "mailman-host-resize-stop" for c in run.of_type(COMMAND))


def test_the_power_on_gets_the_token_only_in_its_secret_environment():
    run = _resize_run(
        {"hcloud:token": TOKEN, "hcloud:endpoint": "https://api.example/v1"}, {"hcloud:token"}
    )
    power_on = run.one(LOCAL, POWER_ON)
    assert power_on.is_secret("environment")
    assert power_on.inputs["environment"] == {
        "HCLOUD_TOKEN": TOKEN,
        "HCLOUD_ENDPOINT": "https://api.example/v1",
    }
    for resource in run.resources:
        assert not [s for s in plain_strings(resource.raw_inputs) if TOKEN in s], resource.name
    assert TOKEN not in power_on.inputs["create"]


def test_the_power_on_environment_is_secret_with_only_an_endpoint_too():
    run = _resize_run({"hcloud:endpoint": "https://api.example/v1"})
    power_on = run.one(LOCAL, POWER_ON)
    assert power_on.is_secret("environment")
    assert power_on.inputs["environment"] == {"HCLOUD_ENDPOINT": "https://api.example/v1"}


def test_without_hcloud_token_the_command_inherits_the_providers_environment():
    power_on = _resize_run().one(LOCAL, POWER_ON)
    assert power_on.is_secret("environment")
    assert power_on.inputs["environment"] == {}


def test_resize_stop_stops_the_volume_mount_and_its_services_then_syncs():
    script = resize_stop_script("cx23", "cx33")
    assert f"systemd-escape --path --suffix=mount {VOLUME_MOUNT_POINT}" in script
    assert 'systemctl stop "$unit"' in script
    assert script.splitlines()[-1] == "sync"
    assert _shellcheck(script).returncode == 0


# Grow: Hetzner grows the block device (internal/volume/resource.go lines 288-301), not ext4.


def test_volume_grow_runs_resize2fs_on_the_mounted_volume_device():
    script = volume_grow_script("/dev/disk/by-id/scsi-0HC_Volume_1")
    assert "dev=$(readlink -f /dev/disk/by-id/scsi-0HC_Volume_1)" in script
    assert f"--mountpoint {VOLUME_MOUNT_POINT}" in script
    assert 'resize2fs "$dev"' in script
    assert script.splitlines()[0] == "set -eu"
    assert _shellcheck(script).returncode == 0


def test_volume_grow_reruns_when_the_size_changes_after_the_switch(base_run):
    grow = base_run.one(COMMAND, "mailman-volume-grow")
    volume = base_run.one(VOLUME)
    verify = base_run.one(COMMAND, "mailman-nixos-switch-verify")
    assert grow.inputs["triggers"] == [10]
    assert grow.inputs["create"] == volume_grow_script(volume.outputs["linuxDevice"])
    assert grow.inputs["addPreviousOutputInEnv"] is False
    # After the volume (its resize) and after the switch that mounts it.
    assert volume.urn in grow.depends_on
    assert verify.urn in grow.depends_on
    bigger = run_program({**BASE, "volumeSize": 20})
    assert bigger.one(COMMAND, "mailman-volume-grow").inputs["triggers"] == [20]
