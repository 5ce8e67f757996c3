"""Stack settings: defaults, the reference table, and one clear line for every bad value."""

import re
from pathlib import Path

import pulumi
import pytest

from components.settings import CONFIG_KEYS, REQUIRED, config_table
from tests.components.conftest import BASE
from tests.harness import OPERATOR_ED25519_PUBLIC, run_failing_program, run_program

REPO = Path(__file__).resolve().parents[2]
DESIGN_KEYS = [
    "hostname", "adminEmail", "mailDomains", "dnsZone", "serverType", "location",
    "nixosRelease", "sshPublicKeys", "sshAllowedIps", "acmeStaging", "protect", "backups",
    # issue 10: the off-site backup's Storage Box and retention
    "backupLocation", "backupBoxType", "backupRetention",
    "volumeSize", "database", "lists", "adminUser", "adminPassword", "dmarcPolicy",
    "mailman2Redirects", "socialLogins",
]  # fmt: skip

# (config overrides, secret keys, the key the message must name, a fragment of the message)
BAD_INPUTS = [
    ({"hostname": "lists_example"}, (), "hostname", "fully qualified domain name"),
    ({"hostname": "localhost"}, (), "hostname", "fully qualified domain name"),
    ({"hostname": "-lists.example.org"}, (), "hostname", "fully qualified domain name"),
    (
        {"hostname": "listen.bücher.example"},
        (),
        "hostname",
        "punycode: listen.xn--bcher-kva.example",
    ),
    ({"hostname": "lists.example.123"}, (), "hostname", "fully qualified domain name"),
    ({"hostname": "a" * 64 + ".example.org"}, (), "hostname", "fully qualified domain name"),
    ({"adminEmail": "postmaster"}, (), "adminEmail", "e-mail address"),
    ({"adminEmail": "post master@example.org"}, (), "adminEmail", "e-mail address"),
    ({"adminEmail": "a@b@example.org"}, (), "adminEmail", "e-mail address"),
    # Accepted by RFC 5322 but not by Mailman (it becomes the superuser and default list owner).
    ({"adminEmail": "a|b@example.org"}, (), "adminEmail", "e-mail address"),
    # The host keeps no mailboxes: postmaster@/abuse@/root of these domains alias to adminEmail.
    ({"adminEmail": "ops@lists.example.org"}, (), "adminEmail", "outside this host's mail"),
    (
        {"adminEmail": "postmaster@example.org", "mailDomains": ["example.org"]},
        (),
        "adminEmail",
        "mailbox outside this host's mail domains (example.org, lists.example.org)",
    ),
    ({"mailDomains": "example.org"}, (), "mailDomains", "list of domain names"),
    ({"mailDomains": ["example.org", "example.org"]}, (), "mailDomains", "listed once"),
    ({"mailDomains": ["exa mple.org"]}, (), "mailDomains", "fully qualified domain name"),
    ({"dnsZone": "other.org"}, (), "hostname", "inside the managed dnsZone other.org"),
    (
        {"dnsZone": "example.org", "mailDomains": ["example.net"]},
        (),
        "mailDomains",
        "inside the managed dnsZone example.org",
    ),
    ({"serverType": "t2.micro"}, (), "serverType", "Hetzner server type"),
    ({"location": "us-east-1"}, (), "location", "Hetzner location"),
    ({"nixosRelease": "unstable"}, (), "nixosRelease", "NixOS release channel"),
    ({"nixosRelease": "nixos-26.04"}, (), "nixosRelease", "NixOS release channel"),
    ({"sshPublicKeys": ["ssh-ed25519 not-base64!"]}, (), "sshPublicKeys", "OpenSSH public key"),
    (
        {"sshPublicKeys": ["ssh-rsa " + OPERATOR_ED25519_PUBLIC.split()[1]]},
        (),
        "sshPublicKeys",
        "OpenSSH public key",
    ),
    ({"sshPublicKeys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]}, (), "sshPublicKeys", "public key"),
    ({"sshAllowedIps": ["10.0.0.1/8"]}, (), "sshAllowedIps", "CIDR"),
    ({"sshAllowedIps": ["198.51.100.7"]}, (), "sshAllowedIps", "CIDR"),
    ({"sshAllowedIps": ["::ffff:198.51.100.0/120"]}, (), "sshAllowedIps", "as IPv4"),
    ({"sshAllowedIps": []}, (), "sshAllowedIps", "non-empty list of CIDRs"),
    ({"acmeStaging": "yes"}, (), "acmeStaging", "boolean"),
    ({"protect": "0"}, (), "protect", "boolean"),
    ({"backups": "TRUE"}, (), "backups", "boolean"),
    ({"mailman2Redirects": "on"}, (), "mailman2Redirects", "boolean"),
    ({"volumeSize": "5"}, (), "volumeSize", "from 10 to 10240"),
    ({"volumeSize": "20000"}, (), "volumeSize", "from 10 to 10240"),
    ({"volumeSize": "ten"}, (), "volumeSize", "whole number of GB"),
    ({"database": "mysql"}, (), "database", "postgresql, sqlite"),
    ({"dmarcPolicy": "strict"}, (), "dmarcPolicy", "none, quarantine, reject"),
    ({"adminUser": "the admin"}, (), "adminUser", "Django user name"),
    ({"adminPassword": "short"}, ("adminPassword",), "adminPassword", "at least 12 characters"),
    ({"adminPassword": "long enough but plain"}, (), "adminPassword", "a secret"),
    ({"lists": "missing.yaml"}, (), "lists", "existing YAML file"),
    ({"socialLogins": ["github"]}, ("socialLogins",), "socialLogins", "object of provider ids"),
    (
        {"socialLogins": {"GitHub": {"clientId": "x", "clientSecret": "y"}}},
        ("socialLogins",),
        "socialLogins.GitHub",
        "django-allauth provider id",
    ),
    (
        {"socialLogins": {"github": {"clientId": "x"}}},
        ("socialLogins",),
        "socialLogins.github",
        "clientId and clientSecret",
    ),
    (
        {"socialLogins": {"github": {"clientId": "x", "clientSecret": "y"}}},
        (),
        "socialLogins.github.clientSecret",
        "a secret",
    ),
    ({"hostName": "lists.example.org"}, (), "hostName", "did you mean hostname?"),
    ({"backupLocation": "nbg1"}, (), "backupLocation", "one of fsn1, hel1"),
    ({"backupBoxType": "cx23"}, (), "backupBoxType", "Storage Box type"),
    ({"backupRetention": 7}, (), "backupRetention", "an object of daily, weekly, monthly"),
    ({"backupRetention": {"hourly": 24}}, (), "backupRetention", "daily at least 1"),
    ({"backupRetention": {"daily": 0}}, (), "backupRetention.daily", "whole number from 1 to"),
    ({"backupRetention": {"weekly": 4}}, (), "backupRetention.daily", "whole number from 1 to"),
    ({"backupRetention": {"daily": 7, "weekly": -1}}, (), "backupRetention.weekly", "from 0 to"),
    ({"backupRetention": {"daily": "7"}}, (), "backupRetention.daily", "a whole number"),
]


def _id(case):
    overrides, _, key, _ = case
    return f"{key}={next(iter(overrides.values()))!s:.30}"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[_id(c) for c in BAD_INPUTS])
def test_bad_value_fails_with_one_line_naming_the_key_and_nothing_registered(case):
    # The program's own rules, also for values Pulumi.yaml's types make the CLI refuse first
    # (tests/components/test_project_config.py): tools/check_settings.py runs them without it.
    overrides, secrets, key, fragment = case
    run = run_failing_program({**BASE, **overrides}, secrets=secrets, engine_checks=False)
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert "\n" not in message
    assert message.startswith(f"mailman:{key}: ")
    assert " is not " in message
    assert fragment in message
    assert run.resources == []


def test_at_least_25_distinct_bad_inputs_are_covered():
    assert len({repr(case[0]) for case in BAD_INPUTS}) >= 25


@pytest.mark.parametrize("key", ["hostname", "adminEmail"])
def test_required_key_missing_says_how_to_set_it(key):
    config = {k: v for k, v in BASE.items() if k != key}
    # The CLI refuses first: Pulumi.yaml declares both without a default.
    assert str(run_failing_program(config).error) == (
        f"Stack 'test' is missing configuration value '{key}'"
    )
    run = run_failing_program(config, engine_checks=False)
    prefix = f"mailman:{key}: (unset) is not optional: pulumi config set mailman:{key} "
    assert str(run.error).startswith(prefix)
    assert run.resources == []


def test_an_empty_mail_domain_list_means_the_hostname():
    # [] is what Pulumi.yaml declares as the default, so the engine passes it for an unset key.
    run = run_program({**BASE, "mailDomains": []})
    assert run.outputs["mailDomains"] == ["lists.example.org"]


def test_one_operator_key_as_plain_text_is_a_list_of_one():
    # How `pulumi new` saves the answer to its sshPublicKeys prompt.
    settings = run_program({**BASE, "sshPublicKeys": OPERATOR_ED25519_PUBLIC + " op@laptop"})
    keys = settings.namespace["site"].settings.ssh_public_keys
    assert keys == (OPERATOR_ED25519_PUBLIC + " op@laptop",)


def test_bad_value_message_quotes_the_value():
    run = run_failing_program({**BASE, "hostname": "lists_example"})
    assert (
        str(run.error) == 'mailman:hostname: "lists_example" is not a fully qualified domain name'
    )


def test_secret_values_are_never_echoed_in_errors():
    run = run_failing_program({**BASE, "adminPassword": "hunter2"}, secrets={"adminPassword"})
    assert "hunter2" not in str(run.error)
    assert "[secret]" in str(run.error)
    bad_social = {
        "socialLogins": {"github": {"clientId": "x", "clientSecret": "s3cr3t", "extra": 1}}
    }
    run = run_failing_program({**BASE, **bad_social}, secrets={"socialLogins"})
    assert "s3cr3t" not in str(run.error)


def test_lists_file_errors_name_file_list_and_field(tmp_path):
    bad = tmp_path / "bad-lists.yaml"
    bad.write_text(
        "lists:\n  - address: news@lists.example.org\n    owners: [a@example.org]\n"
        "    archive_policy: sometimes\n"
    )
    run = run_failing_program({**BASE, "lists": str(bad)})
    assert str(run.error) == (
        "mailman:lists: bad-lists.yaml: list news@lists.example.org: archive_policy: "
        "'sometimes' is not one of never, private, public"
    )
    assert run.resources == []


@pytest.mark.parametrize(
    ("config", "addresses"),
    [
        (BASE, ["announce@lists.example.org", "discuss@lists.example.org"]),
        (
            {
                "hostname": "mail.example.net",
                "adminEmail": "ops@example.com",
                "mailDomains": ["example.net", "mail.example.net"],
            },
            ["announce@example.net", "discuss@example.net"],
        ),
    ],
)
def test_the_shipped_lists_file_fits_every_site_unchanged(config, addresses):
    settings = run_program(config).namespace["site"].settings
    assert settings.lists_path == Path("lists.yaml")
    assert [entry["address"] for entry in settings.lists] == addresses
    assert [entry["owners"] for entry in settings.lists] == [[config["adminEmail"]]] * 2


def test_a_list_address_outside_the_mail_domains_names_file_list_and_field(tmp_path):
    bad = tmp_path / "lists.yaml"
    bad.write_text("lists:\n  - address: news@example.org\n")
    run = run_failing_program({**BASE, "lists": str(bad)})
    assert str(run.error) == (
        "mailman:lists: lists.yaml: list news@example.org: address: 'news@example.org' "
        "is not in one of mailDomains (lists.example.org)"
    )
    assert run.resources == []


def test_hostname_is_normalized_to_lower_case_without_trailing_dot():
    run = run_program({**BASE, "hostname": "Lists.Example.org."})
    assert run.outputs["hostname"] == "lists.example.org"


def test_defaults(base_run):
    server = base_run.one("hcloud:index/server:Server")
    assert server.inputs["serverType"] == "cx23"
    assert server.inputs["location"] == "nbg1"
    assert base_run.outputs["nixosRelease"] == "nixos-26.05"
    assert base_run.outputs["mailDomains"] == ["lists.example.org"]
    assert base_run.outputs["adminUser"] == "admin"
    box = base_run.one("hcloud:index/storageBox:StorageBox")
    assert (box.inputs["location"], box.inputs["storageBoxType"]) == ("fsn1", "bx11")


def test_config_keys_are_the_design_contract_in_order():
    assert [key.name for key in CONFIG_KEYS] == DESIGN_KEYS
    assert [key.name for key in CONFIG_KEYS if key.default == REQUIRED] == [
        "hostname",
        "adminEmail",
    ]


def test_every_documented_key_is_accepted():
    config = {
        **BASE,
        "mailDomains": ["lists.example.org"],
        "dnsZone": "example.org",
        "serverType": "cax11",
        "location": "fsn1",
        "nixosRelease": "nixos-26.05",
        "sshPublicKeys": [OPERATOR_ED25519_PUBLIC],
        "sshAllowedIps": ["0.0.0.0/0"],
        "acmeStaging": True,
        "protect": False,
        "backups": False,
        "backupLocation": "hel1",
        "backupBoxType": "bx21",
        "backupRetention": {"daily": 14, "weekly": 8},
        "volumeSize": 20,
        "database": "sqlite",
        "lists": "lists.yaml",
        "adminUser": "root-admin",
        "adminPassword": "a long enough password",
        "dmarcPolicy": "reject",
        "mailman2Redirects": True,
        "socialLogins": {"gitlab": {"clientId": "id", "clientSecret": "secret"}},
    }
    assert sorted(config) == sorted(DESIGN_KEYS)
    run_program(config, secrets={"adminPassword", "socialLogins"})


def test_readme_config_table_is_generated_from_config_keys():
    readme = (REPO / "README.md").read_text()
    assert config_table() in readme


def test_a_renamed_project_fails_with_one_line_before_anything_is_registered():
    # `pulumi new` lets the user type another project name; the settings namespace is fixed.
    run = run_failing_program(BASE, project="lists", engine_checks=False)
    assert str(run.error) == (
        'Pulumi.yaml: name "lists" is not mailman (the settings are read from the mailman: '
        "namespace; keep the project name)"
    )
    assert run.resources == []


PRIVATE_CONFIG_API = re.compile(
    r"pulumi\.runtime\.config|\b(set_all_config|get_config_env|is_config_secret|"
    r"get_config_secret_keys_env)\b|\bCONFIG\.get\(|from pulumi\.runtime import"
)


def test_the_program_reads_settings_through_public_api_only():
    # Values through `pulumi.Config`, key names and secrecy from the language host's
    # PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS environment: no SDK config internals.
    sources = [
        REPO / "__main__.py",
        *(REPO / "components").rglob("*.py"),
        *(REPO / "tools").glob("*.py"),
    ]
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in sources
        for match in PRIVATE_CONFIG_API.finditer(path.read_text())
    ]
    assert offenders == []
