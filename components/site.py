"""`MailmanSite`: one Mailman list server, composed from the parts in order."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_random as random
import pulumi_tls as tls

from components.backup import REPOSITORY_PATH, SSH_PORT, OffsiteBackup
from components.deployment_document import deployment_document_text
from components.dns import Dns
from components.host import Host, volume_grow_script
from components.lists import NormalizedList
from components.mailman import (
    DesiredState,
    MailmanReconcile,
    SocialApp,
    provider_display_name,
)
from components.nixos import (
    NixosDeployment,
    SiteHealthCheck,
    host_secrets,
    read_nixos_tree,
)
from components.preflight import PreflightFacts
from components.settings import Settings

NIXOS_DIR = Path(__file__).resolve().parent.parent / "nixos"
ADMIN_PASSWORD_LENGTH = 24
REST_PASSWORD_LENGTH = 32
# The one-click unsubscribe HMAC key (nixos/mailman_one_click.py): 64 letters and digits, ~380 bits.
ONE_CLICK_KEY_LENGTH = 64
DKIM_KEY_BITS = 2048


class MailmanSite(pulumi.ComponentResource):
    """Host, DNS and everything the deploy chain needs to configure the host."""

    settings: Settings
    host: Host
    backup: OffsiteBackup
    dns: Dns
    lists: tuple[NormalizedList, ...]
    dkim_private_key_pem: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    rest_api_password: pulumi.Output[str]
    one_click_key: pulumi.Output[str]
    deployment_document: pulumi.Output[str]
    deployment: NixosDeployment
    reconcile: MailmanReconcile
    health: SiteHealthCheck
    volume_grow: pulumi.Resource

    def __init__(
        self,
        name: str,
        settings: Settings,
        opts: pulumi.ResourceOptions | None = None,
        *,
        facts: PreflightFacts | None = None,
    ) -> None:
        super().__init__("mailman:site:MailmanSite", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.settings = settings
        self.lists = settings.lists

        # Secrets that live in the stack and survive a rebuilt server.
        dkim_key = tls.PrivateKey(
            f"{name}-dkim-key", algorithm="RSA", rsa_bits=DKIM_KEY_BITS, opts=child
        )
        self.dkim_private_key_pem = pulumi.Output.secret(dkim_key.private_key_pem)
        if settings.admin_password is not None:
            self.admin_password = settings.admin_password
        else:
            generated = random.RandomPassword(
                f"{name}-admin-password", length=ADMIN_PASSWORD_LENGTH, special=False, opts=child
            )
            self.admin_password = pulumi.Output.secret(generated.result)
        rest_password = random.RandomPassword(
            f"{name}-rest-api-password", length=REST_PASSWORD_LENGTH, special=False, opts=child
        )
        self.rest_api_password = pulumi.Output.secret(rest_password.result)
        # Signs every member's unsubscribe link; replacing this resource (README: rotating the
        # one-click key) invalidates every link already sent.
        link_key = random.RandomPassword(
            f"{name}-one-click-key", length=ONE_CLICK_KEY_LENGTH, special=False, opts=child
        )
        self.one_click_key = pulumi.Output.secret(link_key.result)

        # Server, addresses, firewall, volume, rDNS; NixOS installed and answering.
        self.host = Host(f"{name}-host", settings, opts=child, facts=facts)

        # The Storage Box the host backs up to every night, and the keys to it (stack secrets).
        self.backup = OffsiteBackup(f"{name}-backup", settings, opts=child)

        # Records in the Hetzner zone, or only computed for export when no zone is managed.
        self.dns = Dns(
            f"{name}-dns",
            settings,
            ipv4=self.host.ipv4_address,
            ipv6=self.host.ipv6_address,
            dkim_public_key_pem=dkim_key.public_key_pem,
            opts=child,
        )

        # What NixOS reads from /etc/nixos/deployment.json.
        self.deployment_document = deployment_document_text(
            settings,
            ipv4_address=self.host.ipv4_address,
            ipv6_address=self.host.ipv6_address,
            volume_device=self.host.volume.linux_device,
            deploy_public_key=self.host.deploy_public_key,
            dns_records=self.dns.published,
            backup_host=self.backup.target.host,
            backup_user=self.backup.target.user,
        )

        # Deploy chain: push nixos/ + deployment.json + secrets, switch with rollback
        # (components/nixos.py), reconcile Mailman (components/mailman.py), final health check.
        self.deployment = NixosDeployment(
            f"{name}-nixos",
            connection=self.host.connection,
            nixos_ready=self.host.nixos_ready,
            server_id=self.host.server.id,
            files=read_nixos_tree(NIXOS_DIR),
            deployment_document=self.deployment_document,
            nixos_release=settings.nixos_release,
            secrets=host_secrets(
                rest_api_password=self.rest_api_password,
                dkim_private_key_pem=self.dkim_private_key_pem,
                restic_password=self.backup.repository_password,
                backup_ssh_key=self.backup.ssh_private_key,
                one_click_key=self.one_click_key,
            ),
            opts=child,
        )
        # A larger volumeSize: Hetzner grows the device, this grows ext4 on it, online. After
        # the switch, which mounts the volume (nixos/storage.nix); a no-op at full size.
        self.volume_grow = command.remote.Command(
            f"{name}-volume-grow",
            connection=self.host.connection,
            create=self.host.volume.linux_device.apply(volume_grow_script),
            add_previous_output_in_env=False,
            triggers=[self.host.volume.size],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.host.volume, self.deployment.ready]
            ),
        )
        self.reconcile = MailmanReconcile(
            f"{name}-reconcile",
            connection=self.host.connection,
            server_id=self.host.server.id,
            depends_on=[self.deployment.ready],
            desired=DesiredState(
                hostname=settings.hostname,
                mail_domains=settings.mail_domains,
                admin_user=settings.admin_user,
                admin_email=settings.admin_email,
                admin_password=self.admin_password,
                lists=self.lists,
                social_apps=[
                    SocialApp(
                        login.provider,
                        provider_display_name(login.provider),
                        login.client_id,
                        login.client_secret,
                    )
                    for login in settings.social_logins
                ],
            ),
            opts=child,
        )
        self.health = SiteHealthCheck(
            f"{name}-health",
            connection=self.host.connection,
            server_id=self.host.server.id,
            server_type=self.host.server.server_type,
            # After a resize the server is powered on before this through the deploy chain
            # (nixos-install depends on the power-on, everything else on that).
            depends_on=[self.reconcile.run],
            opts=child,
        )

        self.register_outputs({**self.outputs(), "deploymentDocument": self.deployment_document})

    def outputs(self) -> dict[str, pulumi.Input[object]]:
        """The stack outputs of the DESIGN contract (plus `hostname`, `mailDomains`, host key)."""
        site_url = f"https://{self.settings.hostname}/"
        return {
            "siteUrl": site_url,
            "adminUrl": f"{site_url}admin/",
            "postoriusUrl": f"{site_url}postorius/lists/",
            "hyperkittyUrl": f"{site_url}hyperkitty/",
            "hostname": self.settings.hostname,
            "mailDomains": list(self.settings.mail_domains),
            "ipv4": self.host.ipv4_address,
            "ipv6": self.host.ipv6_address,
            "sshCommand": pulumi.Output.concat("ssh root@", self.host.ipv4_address),
            "sshHostKey": self.host.ssh_host_public_key,
            "dnsRecords": self.dns.records,
            "nixosRelease": self.settings.nixos_release,
            "adminUser": self.settings.admin_user,
            "adminPassword": self.admin_password,
            # What restoring this site elsewhere needs (README, Operations): the repository and,
            # as secrets, its password and the key that logs in to the Storage Box.
            "backupRepository": pulumi.Output.concat(
                "sftp://",
                self.backup.target.user,
                "@",
                self.backup.target.host,
                f":{SSH_PORT}/{REPOSITORY_PATH}",
            ),
            "backupRepositoryPassword": self.backup.repository_password,
            "backupSshPrivateKey": self.backup.ssh_private_key,
        }
