"""Stack configurations and whole-program runs shared by the component tests."""

import pytest

from tests.harness import OPERATOR_ED25519_PUBLIC, run_program

# The quick start of DESIGN.md: no zone, mail domain = hostname (what lists.yaml's examples use).
BASE = {"hostname": "lists.example.org", "adminEmail": "postmaster@example.org"}
# A managed zone with two mail domains, operator keys, restricted SSH, every secret set.
ZONED = {
    **BASE,
    # adminEmail must be a mailbox outside the mail domains (settings._admin_outside).
    "adminEmail": "ops@example.net",
    "dnsZone": "example.org",
    "mailDomains": ["example.org", "lists.example.org"],
    "sshPublicKeys": [OPERATOR_ED25519_PUBLIC + " alice@laptop"],
    "sshAllowedIps": ["198.51.100.0/24", "2001:db8:ffff::/48"],
    "dmarcPolicy": "quarantine",
    "adminPassword": "correct horse battery staple",
    "socialLogins": {"github": {"clientId": "Iv1.abc", "clientSecret": "gh-client-secret-123"}},
}
ZONED_SECRETS = {"adminPassword", "socialLogins"}


@pytest.fixture(scope="session")
def base_run():
    return run_program(BASE)


@pytest.fixture(scope="session")
def zoned_run():
    return run_program(ZONED, secrets=ZONED_SECRETS)


@pytest.fixture(scope="session")
def unprotected_run():
    return run_program({**BASE, "protect": False, "backups": False})
