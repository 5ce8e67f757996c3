"""The deployment document (docs/contracts.md section 2): per-deployment values for NixOS.

Rendered as JSON text so that `pulumi preview --diff` shows a changed value as a changed line.
It holds no secrets; its JSON Schema is `SCHEMA_FILE` (components/deployment.schema.json), which
the tests of both sides validate against. It is not in nixos/: only host files are pushed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi

from components.backup import REPOSITORY_PATH, SSH_PORT
from components.dns_records import MtaStsPolicy, Record
from components.settings import Settings

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("deployment.schema.json")
IPV6_PREFIX_LENGTH = 64


def deployment_document(
    settings: Settings,
    *,
    ipv4_address: str,
    ipv6_address: str,
    volume_device: str,
    ssh_authorized_keys: list[str],
    dns_records: list[Record],
    backup_host: str,
    backup_user: str,
) -> dict[str, Any]:
    """The document as a dict, in the contract's key order."""
    mta_sts = MtaStsPolicy.for_certificates(acme_staging=settings.acme_staging)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "hostname": settings.hostname,
        "adminEmail": settings.admin_email,
        "mailDomains": list(settings.mail_domains),
        "nixosRelease": settings.nixos_release,
        # The exact nixpkgs the host builds with (components/nixpkgs_pin.py): a bump is a diff here.
        "nixpkgs": settings.nixpkgs.as_document(),
        "network": {
            "ipv4Address": ipv4_address,
            "ipv6Address": ipv6_address,
            "ipv6PrefixLength": IPV6_PREFIX_LENGTH,
        },
        "dataVolume": {"device": volume_device, "fsType": "ext4"},
        "database": settings.database,
        "acmeStaging": settings.acme_staging,
        "mailman2Redirects": settings.mailman2_redirects,
        "socialLoginProviders": [login.provider for login in settings.social_logins],
        "dkimSelector": settings.dkim_selector,
        "sshAuthorizedKeys": ssh_authorized_keys,
        "sshAllowedIps": list(settings.ssh_allowed_ips),
        # The policy served at https://mta-sts.<domain>/; DNS publishes the hash of its text.
        "mtaSts": {"mode": mta_sts.mode, "maxAge": mta_sts.max_age},
        # What the stack publishes (components/dns_records.py site_records), so the host's
        # status report (nixos/mailman_status_report.py) can compare it with what DNS answers.
        "dnsRecords": [
            {"name": r.name, "type": r.type, "values": list(r.values)} for r in dns_records
        ],
        # The off-site restic repository (components/backup.py); its password and the SSH key
        # are host secrets, not here.
        "backup": {
            "host": backup_host,
            "user": backup_user,
            "port": SSH_PORT,
            "path": REPOSITORY_PATH,
            "keep": dict(settings.backup_retention),
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable JSON text: one value per line, so diffs are line diffs."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def deployment_document_text(
    settings: Settings,
    *,
    ipv4_address: pulumi.Input[str],
    ipv6_address: pulumi.Input[str],
    volume_device: pulumi.Input[str],
    deploy_public_key: pulumi.Input[str],
    dns_records: pulumi.Output[list[Record]],
    backup_host: pulumi.Input[str],
    backup_user: pulumi.Input[str],
) -> pulumi.Output[str]:
    """The document's JSON text once the addresses, the volume, the deploy key, the records and
    the backup Storage Box are known."""
    return pulumi.Output.all(
        ipv4_address,
        ipv6_address,
        volume_device,
        deploy_public_key,
        dns_records,
        backup_host,
        backup_user,
    ).apply(
        lambda v: render(
            deployment_document(
                settings,
                ipv4_address=str(v[0]),
                ipv6_address=str(v[1]),
                volume_device=str(v[2]),
                ssh_authorized_keys=[str(v[3]).strip(), *settings.ssh_public_keys],
                dns_records=list(v[4]),
                backup_host=str(v[5]),
                backup_user=str(v[6]),
            )
        )
    )
