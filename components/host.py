"""The Hetzner host: keys, addresses, firewall, data volume, server, rDNS, NixOS install.

What survives a replaced server is never its child: the primary IPs (and so their PTR records
and mail reputation), the data volume and the keys are siblings of the server inside this
component. The server boots the stock Debian image, whose cloud-init only installs the stack's
SSH host key (`installer.user_data`, constant); the `nixos-install` command then installs NixOS
over SSH with the current installer (components/installer.py), and `nixos-ready` waits for it
across the reboot.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud
import pulumi_tls as tls

from components import installer
from components.guard import guarded
from components.installer import INSTALL_LOG, remove_old_root
from components.preflight import PreflightFacts
from components.settings import INSTALL_IMAGE, Settings
from components.ssh import (
    ACROSS_REBOOT,
    FIRST_BOOT,
    HOST_MAY_BE_GONE,
    RUNNING_HOST,
    connect,
    with_budget,
)

WORLD = ("0.0.0.0/0", "::/0")

# Where NixOS mounts the data volume (nixos/storage.nix, `volume`).
VOLUME_MOUNT_POINT = "/srv/mailman-site"

# Run by `command.local.Command` with no `dir`: pulumi-command v1.2.1 runs a local command in the
# provider's working directory, the project directory (provider/pkg/provider/local/
# commandOutputs.go lines 73-79), with the provider's environment plus `environment` appended
# (lines 81-86; Go's os/exec uses the last value of a duplicated variable).
POWER_ON_TOOL = "tools/hetzner_power_on.py"
# The tool's own error lines start so (tools/hetzner_power_on.py ERROR_PREFIX; a test checks).
POWER_ON_ERROR_PREFIX = "hetzner_power_on: "


@dataclass(frozen=True)
class FirewallRule:
    """One inbound rule, in the shape `hcloud.FirewallRuleArgs` takes."""

    protocol: str
    port: str | None
    source_ips: tuple[str, ...]
    description: str

    def args(self) -> hcloud.FirewallRuleArgs:
        return hcloud.FirewallRuleArgs(
            direction="in",
            protocol=self.protocol,
            port=self.port,
            source_ips=list(self.source_ips),
            description=self.description,
        )


def firewall_rules(ssh_allowed_ips: tuple[str, ...]) -> list[FirewallRule]:
    """Inbound traffic the site needs; everything else is dropped by Hetzner before the host."""
    return [
        FirewallRule("tcp", "22", ssh_allowed_ips, "SSH (deploy and operators)"),
        FirewallRule("tcp", "25", WORLD, "SMTP: mail to the lists"),
        FirewallRule("tcp", "80", WORLD, "HTTP: ACME challenges and redirect to HTTPS"),
        FirewallRule("tcp", "443", WORLD, "HTTPS: Postorius and HyperKitty"),
        FirewallRule("icmp", None, WORLD, "ICMP: ping, path MTU discovery"),
    ]


def host_ipv6_address(network: str) -> str:
    """The host address inside the primary IPv6 /64: `<prefix>::1`, as Hetzner configures it."""
    prefix = ipaddress.IPv6Network(network, strict=False)
    return str(prefix.network_address + 1)


def nixos_ready_script(ipv4: str = "<ipv4>") -> str:
    """Proves the host is the installed NixOS, then removes the installer's leftovers; explains
    where to look when it is not NixOS."""
    is_nixos = (
        "[ -e /etc/NIXOS ] && [ -e /run/current-system ] && grep -qx ID=nixos /etc/os-release"
    )
    return "\n".join(
        [
            "set -eu",
            f"if {is_nixos}; then",
            '  echo "NixOS $(cat /run/current-system/nixos-version) is up"',
            *(f"  {line}" for line in remove_old_root()),
            "else",
            '  echo "This host is not NixOS after the install and its reboot." >&2',
            f'  echo "Installer log: {INSTALL_LOG}; cloud-init: /var/log/cloud-init-output.log;"'
            " >&2",
            f'  echo "Console: Hetzner Cloud Console, the server with IPv4 {ipv4}." >&2',
            "  exit 1",
            "fi",
        ]
    )


def volume_release_script() -> str:
    """Stops everything that writes to the data volume and unmounts it, before it is detached.

    Stopping the volume's mount unit stops the bind mounts on it and, through their
    RequiresMountsFor, every service using them (PostgreSQL, Mailman, Postfix, ...) first, so
    their last writes reach the disk. Best effort: a host that cannot unmount still has its
    services stopped and its caches synced, and the server is going away either way.
    """
    return "\n".join(
        [
            "set -u",
            f"unit=$(systemd-escape --path --suffix=mount {VOLUME_MOUNT_POINT})",
            'echo "the data volume is being detached: stopping its services, unmounting $unit"',
            'if ! systemctl stop "$unit"; then',
            f'  echo "warning: could not unmount {VOLUME_MOUNT_POINT}; syncing instead" >&2',
            "fi",
            "sync",
        ]
    )


POWER_ON_FAILED = (
    "powering the server on failed: power it on in the Hetzner Cloud Console (or hcloud server "
    "poweron), then run pulumi up again"
)


def power_on_command(server_id: str) -> str:
    """The local command that powers the server on again after a resize."""
    return f"python3 {POWER_ON_TOOL} {int(server_id)}"


def hetzner_api_environment() -> pulumi.Output[dict[str, str]]:
    """HCLOUD_TOKEN and HCLOUD_ENDPOINT as the hcloud provider is configured, as a secret.

    The provider takes `hcloud:token` / `hcloud:endpoint` over the same-named environment
    variables (terraform-provider-hcloud v1.68.0 hcloud/provider.go lines 37-55,
    hcloud/plugin_provider.go lines 128-151); a
    setting left unset is not passed, and the local command inherits the variable the provider
    itself reads.
    """
    config = pulumi.Config("hcloud")
    variables: dict[str, pulumi.Input[str]] = {}
    token = config.get_secret("token")
    if token is not None:
        variables["HCLOUD_TOKEN"] = token
    endpoint = config.get("endpoint")
    if endpoint:
        variables["HCLOUD_ENDPOINT"] = endpoint
    if not variables:
        return pulumi.Output.secret({})
    return pulumi.Output.secret(pulumi.Output.all(**variables))


def resize_stop_script(old_type: str, new_type: str) -> str:
    """Stops everything that writes, before Hetzner's resize cuts the power.

    The provider powers the server off hard before ChangeType (terraform-provider-hcloud v1.68.0
    internal/server/resource.go lines 587-599). Stopping the data volume's mount unit stops every
    service on it first (their RequiresMountsFor, nixos/storage.nix: PostgreSQL, Mailman, Postfix,
    ...), so their last writes reach the disk. The provider does not power the server on again
    (`Host._resize_power_on` does), and it boots with all of them.
    """
    return "\n".join(
        [
            "set -u",
            f'echo "resizing {old_type} -> {new_type}: stopping the services, then power-off"',
            f"unit=$(systemd-escape --path --suffix=mount {VOLUME_MOUNT_POINT})",
            'if ! systemctl stop "$unit"; then',
            '  echo "warning: could not stop $unit; stopping the services one by one" >&2',
            "  systemctl stop postfix.service 'mailman*.service' postgresql.service || true",
            "fi",
            "sync",
        ]
    )


def volume_grow_script(linux_device: str = "<linux_device>") -> str:
    """Grows the mounted ext4 file system to the volume's (new) size, online.

    Hetzner grows the block device in place (the provider's Volume update calls Resize, v1.68.0
    internal/volume/resource.go lines 288-301); the file system stays at its old size until
    `resize2fs` runs. On a volume already at full size it changes nothing.
    """
    device = shlex.quote(linux_device)
    return "\n".join(
        [
            "set -eu",
            f"dev=$(readlink -f {device})",
            f"mounted=$(findmnt --noheadings --output SOURCE --mountpoint {VOLUME_MOUNT_POINT})",
            'if [ "$mounted" != "$dev" ]; then',
            f'  echo "{VOLUME_MOUNT_POINT} is not mounted from $dev (found: $mounted)" >&2',
            "  exit 1",
            "fi",
            # Make the kernel re-read the device size (a no-op when it already has).
            'rescan="/sys/class/block/$(basename "$dev")/device/rescan"',
            'if [ -w "$rescan" ]; then echo 1 >"$rescan"; fi',
            'resize2fs "$dev"',
            f"df -h {VOLUME_MOUNT_POINT}",
        ]
    )


class Host(pulumi.ComponentResource):
    """The server and everything around it that the deploy chain connects to."""

    server: hcloud.Server
    ipv4_address: pulumi.Output[str]
    ipv6_address: pulumi.Output[str]
    volume: hcloud.Volume
    connection: command.remote.ConnectionArgs
    power_on: command.local.Command | None
    nixos_install: command.remote.Command
    nixos_ready: pulumi.Resource
    volume_release: command.remote.Command
    ssh_host_public_key: pulumi.Output[str]
    deploy_public_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: Settings,
        opts: pulumi.ResourceOptions | None = None,
        *,
        facts: PreflightFacts | None = None,
    ) -> None:
        super().__init__("mailman:host:Host", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Persistent things: protected from `pulumi destroy` and replacement when `protect` is on.
        persistent = pulumi.ResourceOptions(parent=self, protect=settings.protect)
        # A replacement of a resource with a project-unique Hetzner name (SSH key, primary IP,
        # volume, firewall) must delete the old one first: created first, the new one would be
        # refused with `uniqueness_error` while the old one still holds the name.
        unique_name = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        persistent_unique = pulumi.ResourceOptions.merge(persistent, unique_name)
        prefix = settings.resource_prefix
        labels = settings.labels

        # Keys live in the stack (encrypted state), never on disk. The deploy key is persistent
        # too: a new one is a new `SshKey.public_key` (ForceNew) and so a new server, whose
        # `ssh_keys` is ForceNew (docs/program.md, "What a change of each setting does").
        deploy_key = tls.PrivateKey(f"{name}-deploy-key", algorithm="ED25519", opts=persistent)
        # Served from the first boot: by Debian (cloud-init), then by NixOS (nixos-infect keeps it).
        host_key = tls.PrivateKey(f"{name}-ssh-host-key", algorithm="ED25519", opts=persistent)
        self.deploy_public_key = deploy_key.public_key_openssh.apply(str.strip)
        self.ssh_host_public_key = host_key.public_key_openssh.apply(str.strip)
        hetzner_deploy_key = hcloud.SshKey(
            f"{name}-deploy-key",
            name=f"{prefix}-deploy",
            # As Hetzner stores it: the API trims the key's trailing newline (changelog
            # 2026-04-22), the provider writes the API's value to state
            # (terraform-provider-hcloud v1.68.0 internal/sshkey/common.go line 28) and
            # `public_key` is RequiresReplace (internal/sshkey/resource.go line 72): sent with
            # tls's "\n", every later `pulumi up` would replace the key.
            public_key=self.deploy_public_key,
            labels=labels,
            opts=unique_name,
        )

        # Addresses are their own resources so a replaced server keeps them (and their PTRs).
        ipv4 = self._primary_ip(name, "ipv4", settings, persistent_unique)
        ipv6 = self._primary_ip(name, "ipv6", settings, persistent_unique)
        self.ipv4_address = ipv4.ip_address
        self.ipv6_address = ipv6.ip_network.apply(lambda n: host_ipv6_address(str(n)))

        firewall = hcloud.Firewall(
            f"{name}-firewall",
            name=prefix,
            rules=[rule.args() for rule in firewall_rules(settings.ssh_allowed_ips)],
            labels=labels,
            opts=unique_name,
        )

        self.volume = hcloud.Volume(
            f"{name}-data",
            name=settings.volume_name,
            size=settings.volume_size,
            location=settings.location,
            format="ext4",
            # NixOS mounts it by its /dev/disk/by-id path; Debian must not mount it during install.
            automount=False,
            delete_protection=settings.protect,
            labels=labels,
            opts=persistent_unique,
        )

        # Constant for the life of the stack: only the host key, so no `ignore_changes` is needed
        # (the engine would put the OLD value back when the server is replaced).
        user_data: pulumi.Output[str] = pulumi.Output.all(
            host_key.private_key_openssh, host_key.public_key_openssh
        ).apply(lambda keys: installer.user_data(str(keys[0]), str(keys[1])))
        # Holds the SSH host private key.
        secret_user_data: pulumi.Output[str] = pulumi.Output.secret(user_data)
        # root@ the primary IPv4 (not the server: it outlives it) with the deploy key.
        self.connection = connect(
            host=self.ipv4_address,
            private_key=pulumi.Output.secret(deploy_key.private_key_openssh),
            # No trust on first use: only the stack's host key is accepted.
            host_key=self.ssh_host_public_key,
            budget=RUNNING_HOST,
        )

        resize_stop = self._resize_stop(name, settings, facts)
        self.server = hcloud.Server(
            f"{name}-server",
            name=settings.hostname,
            server_type=settings.server_type,
            image=INSTALL_IMAGE,
            location=settings.location,
            ssh_keys=[hetzner_deploy_key.id],
            # Attached at creation: the server is never reachable unfiltered.
            firewall_ids=[firewall.id.apply(int)],
            public_nets=[
                hcloud.ServerPublicNetArgs(
                    ipv4_enabled=True,
                    ipv4=ipv4.id.apply(int),
                    ipv6_enabled=True,
                    ipv6=ipv6.id.apply(int),
                )
            ],
            user_data=secret_user_data,
            backups=settings.backups,
            # A serverType change resizes in place; keeping the disk keeps a later downgrade
            # possible. The installer's partition does not grow anyway, and the data is on the
            # volume.
            keep_disk=True,
            delete_protection=settings.protect,
            rebuild_protection=settings.protect,
            shutdown_before_deletion=True,
            labels=labels,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=settings.protect,
                # A replacement needs the old server gone first: it holds the primary IPs, the
                # volume and the name (Hetzner allows each on one server only).
                delete_before_replace=True,
                depends_on=[resize_stop] if resize_stop is not None else [],
            ),
        )

        # After a resize the server is off: on again before anything connects to it.
        self.power_on = self._resize_power_on(name, settings, facts)
        after_server: list[pulumi.Resource] = [self.server]
        if self.power_on is not None:
            after_server.append(self.power_on)

        attachment = hcloud.VolumeAttachment(
            f"{name}-data-attachment",
            server_id=self.server.id.apply(int),
            volume_id=self.volume.id.apply(int),
            automount=False,
            # The volume can be attached to one server at a time.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        rdns = [
            hcloud.Rdns(
                f"{name}-rdns-{family}",
                primary_ip_id=ip.id.apply(int),
                ip_address=address,
                dns_ptr=settings.hostname,
                opts=child,
            )
            for family, ip, address in (
                ("ipv4", ipv4, self.ipv4_address),
                ("ipv6", ipv6, self.ipv6_address),
            )
        ]

        # Every command on the running host: an SSH problem fails it within minutes (ssh.py).
        # The installation, over SSH on the fresh Debian (which serves the pinned key from its
        # first boot). Its script is the CURRENT installer, so a replaced server gets it too; on
        # NixOS it does nothing, so a changed installer never touches a live host. Every later
        # command on the host waits for it, and so for the power-on after a resize.
        self.nixos_install = command.remote.Command(
            f"{name}-nixos-install",
            connection=with_budget(self.connection, FIRST_BOOT),
            create=installer.install_script(settings.nixos_release),
            add_previous_output_in_env=False,
            triggers=[self.server.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after_server, attachment]),
        )
        # "NixOS is up": crosses the install's reboot, so it alone gets the long dial budget.
        self.nixos_ready = command.remote.Command(
            f"{name}-nixos-ready",
            connection=with_budget(self.connection, ACROSS_REBOOT),
            create=self.ipv4_address.apply(nixos_ready_script),
            add_previous_output_in_env=False,
            triggers=[self.server.id],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.nixos_install, attachment, *rdns]
            ),
        )
        # Replacing the server detaches the volume before Hetzner shuts the old server down
        # (the attachment depends on the server and is deleted first), and `pulumi destroy` does
        # the same. A running PostgreSQL or Mailman would lose the writes still in the page cache,
        # so this resource -- deleted before the attachment, because it depends on it -- stops
        # them and unmounts the volume on the old host first. It does nothing when created.
        self.volume_release = command.remote.Command(
            f"{name}-data-release",
            # A host that is gone (often why it is replaced) has nothing left to flush.
            connection=with_budget(self.connection, HOST_MAY_BE_GONE),
            delete=volume_release_script(),
            add_previous_output_in_env=False,
            # Replaced (so its delete runs) exactly when the attachment is.
            triggers=[self.server.id, attachment.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, self.nixos_ready]),
        )
        pulumi.log.info(
            "installs NixOS on a new server (nixos-infect takes 10-20 min, a progress line every "
            f"minute); a failure shows the end of {INSTALL_LOG} in the error",
            resource=self.nixos_install,
        )

        self.register_outputs(
            {
                "ipv4Address": self.ipv4_address,
                "ipv6Address": self.ipv6_address,
                "serverId": self.server.id,
                "volumeDevice": self.volume.linux_device,
            }
        )

    def _resize_stop(
        self, name: str, settings: Settings, facts: PreflightFacts | None
    ) -> command.remote.Command | None:
        """Only in the `pulumi up` that changes the running server's type: stop services first."""
        if facts is None or facts.existing is None or not facts.resizes:
            return None
        if facts.existing.powered_off:
            # Nothing runs to stop (an earlier resize failed and left it off), and dialing a
            # host that is off would hold the resize back until the budget ran out.
            return None
        old_type, new_type = facts.existing.server_type, settings.server_type
        stop = command.remote.Command(
            f"{name}-resize-stop",
            # The server is running: the ordinary budget.
            connection=self.connection,
            create=resize_stop_script(old_type, new_type),
            add_previous_output_in_env=False,
            triggers=[new_type],
            opts=pulumi.ResourceOptions(parent=self),
        )
        pulumi.log.warn(
            f"serverType {old_type} -> {new_type}: downtime. The services are stopped, Hetzner "
            "powers the server off and resizes it, then resize-power-on powers it on again "
            "(a few minutes)",
            resource=stop,
        )
        return stop

    def _resize_power_on(
        self, name: str, settings: Settings, facts: PreflightFacts | None
    ) -> command.local.Command | None:
        """Power the server on again, from this machine: in the `pulumi up` that resizes, and in
        any later one that finds the server off (that update failed before the power-on ran).

        terraform-provider-hcloud v1.68.0 powers the server off and calls ChangeType, and does
        not power it on again (internal/server/resource.go lines 587-611; `powerOnServer`,
        line 1455, runs only after a create and a public_net change); Hetzner leaves a resized
        server off. tools/hetzner_power_on.py asks the API as the provider does, with the token
        only in the command's (secret) environment, never in its text.
        """
        if facts is None or not facts.powers_on:
            return None
        if not facts.resizes:
            pulumi.log.warn(
                "the server is powered off (an earlier resize stopped before powering it on?): "
                "powering it on",
                resource=self.server,
            )
        return command.local.Command(
            f"{name}-resize-power-on",
            # Its environment holds the token: on failure one fixed line, details to the journal.
            create=self.server.id.apply(
                lambda server_id: guarded(
                    power_on_command(server_id), POWER_ON_FAILED, POWER_ON_ERROR_PREFIX
                )
            ),
            environment=hetzner_api_environment(),
            add_previous_output_in_env=False,
            # A later resize is a new server type: the command runs again.
            triggers=[self.server.id, settings.server_type],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.server]),
        )

    def _primary_ip(
        self, name: str, family: str, settings: Settings, opts: pulumi.ResourceOptions
    ) -> hcloud.PrimaryIp:
        return hcloud.PrimaryIp(
            f"{name}-{family}",
            name=f"{settings.resource_prefix}-{family}",
            type=family,
            location=settings.location,
            # No `assignee_type`: without `assignee_id` the provider warns "Unused Attribute" on
            # every run (v1.68.0 internal/primaryip/resource.go lines 177-182); the server's
            # `public_nets` assigns the address.
            # Survives the server: deleting or replacing the server must not release it.
            auto_delete=False,
            delete_protection=settings.protect,
            labels=settings.labels,
            opts=opts,
        )
