"""Off-site backups: a Hetzner Storage Box, restic's repository key and the box's SSH key.

The host backs up every night with restic over SFTP (nixos/backup.nix, the program
nixos/mailman_site_backup.py); this component creates what must outlive the server:

- the Storage Box (pulumi-hcloud 1.43.3 `StorageBox`, bridging terraform-provider-hcloud
  v1.68.0 internal/storagebox/resource.go), protected like the volume when `protect` is on;
- an ED25519 key the host logs in to the box with: `ssh_keys` can only be set when the box is
  created ("It is not possible to update the SSH Keys through the API", RequiresReplace,
  resource.go lines 114-122), so the key is a stack resource that never changes by itself;
- restic's repository password, generated and kept as a stack secret: losing the server (or its
  disk) must not lose the key that decrypts its backups.

Both secrets reach the host as root-only files (components/nixos.py `HostSecret`), never in
argv, logs or the Nix store.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud
import pulumi_random as random
import pulumi_tls as tls

from components.settings import Settings

REPOSITORY_PASSWORD_LENGTH = 48
BOX_PASSWORD_LENGTH = 32
# The Storage Box password policy (docs.hetzner.cloud, "Storage Boxes password policy", linked
# from the provider's `password` description, resource.go line 109): 12-128 characters, at
# least one upper case letter, lower case letter, digit and special character, the specials
# from a fixed set. The box needs a password even though the host logs in by key only.
BOX_PASSWORD_SPECIALS = "-_.!"  # noqa: S105 - the alphabet of generated passwords
# SSH on port 23 of a Storage Box serves SFTP (and restic's own commands); port 22 serves SFTP
# only. Either works for restic's sftp backend; 23 is the one Hetzner documents for backups.
SSH_PORT = 23
# restic's repository inside the box's home directory (relative: the SFTP chroot is the home).
REPOSITORY_PATH = "mailman-site"


@dataclass(frozen=True)
class BackupTarget:
    """What the deployment document tells the host about the repository (no secrets)."""

    host: pulumi.Output[str]
    user: pulumi.Output[str]


class OffsiteBackup(pulumi.ComponentResource):
    """The Storage Box and the two secrets the host needs to write encrypted backups to it."""

    storage_box: hcloud.StorageBox
    target: BackupTarget
    ssh_private_key: pulumi.Output[str]
    repository_password: pulumi.Output[str]

    def __init__(
        self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mailman:backup:OffsiteBackup", name, {}, opts)
        # Like the volume: `protect` guards it against `pulumi destroy` and replacement, and
        # Hetzner's delete protection against deletion elsewhere. A replaced server keeps it.
        persistent = pulumi.ResourceOptions(parent=self, protect=settings.protect)

        ssh_key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=persistent)
        self.ssh_private_key = pulumi.Output.secret(ssh_key.private_key_openssh)
        repository_password = random.RandomPassword(
            f"{name}-repository-password",
            length=REPOSITORY_PASSWORD_LENGTH,
            special=False,
            opts=persistent,
        )
        self.repository_password = pulumi.Output.secret(repository_password.result)
        box_password = random.RandomPassword(
            f"{name}-box-password",
            length=BOX_PASSWORD_LENGTH,
            override_special=BOX_PASSWORD_SPECIALS,
            min_upper=1,
            min_lower=1,
            min_numeric=1,
            min_special=1,
            opts=persistent,
        )

        self.storage_box = hcloud.StorageBox(
            f"{name}-storage-box",
            # Hetzner names are unique per project (the provider imports a box by name,
            # internal/storagebox/resource.go ImportState: GetByName), and the name is updatable
            # in place (Update, line 522). With the location in it, a `backupLocation` change
            # creates the new box before the engine deletes the old one, as it does by default.
            name=f"{settings.resource_prefix}-backup-{settings.backup_location}",
            storage_box_type=settings.backup_box_type,
            location=settings.backup_location,
            # `password` is Sensitive (resource.go line 111) and `result` a secret output of
            # random; a change is a ResetPassword (in place).
            password=box_password.result,
            # The provider keeps ssh_keys as sent (the API never returns them: Read fills only
            # the attributes of commonModel, model.go lines 17-30), so tls's trailing newline
            # would not cause a diff; stripped anyway, as Hetzner stores keys trimmed.
            ssh_keys=[ssh_key.public_key_openssh.apply(str.strip)],
            # Every subsystem defaults to off (resource.go lines 69-76, 130-158): SSH/SFTP on,
            # and reachable from outside Hetzner's network so an operator (or a host elsewhere)
            # can restore. Access stays key-only in practice: the password is random and unused.
            access_settings=hcloud.StorageBoxAccessSettingsArgs(
                ssh_enabled=True,
                reachable_externally=True,
                samba_enabled=False,
                webdav_enabled=False,
                zfs_enabled=False,
            ),
            delete_protection=settings.protect,
            labels=settings.labels,
            # Replaced (a new `backupLocation`, RequiresReplace at resource.go line 105), the
            # new box starts empty and the old one, with every snapshot, is deleted: with
            # `protect` on, the engine refuses that instead.
            opts=persistent,
        )
        self.target = BackupTarget(host=self.storage_box.server, user=self.storage_box.username)
        self.register_outputs({"server": self.target.host, "user": self.target.user})
