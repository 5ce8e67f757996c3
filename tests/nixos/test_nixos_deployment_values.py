"""nixos/deployment.nix evaluated for real: nix-instantiate --eval --strict --json, no nixpkgs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from nixos_support import DOCUMENTS, NIXOS, EvalError, evaluate_json

from components.nixpkgs_pin import PIN_FILE

VALID_DOCUMENTS = sorted(DOCUMENTS.glob("*.json"))
VM_TEST_DOCUMENT = NIXOS / "tests" / "deployment.json"


@pytest.mark.nix
@pytest.mark.parametrize("path", VALID_DOCUMENTS, ids=lambda p: p.name)
def test_sample_documents_satisfy_the_schema(path: Path, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [e.message for e in validator.iter_errors(json.loads(path.read_text()))]
    assert errors == []


def test_vm_test_document_with_the_repository_pin_satisfies_the_schema(schema) -> None:
    """nixos/tests/mailman-site.nix merges components/nixpkgs-pin.json in as `nixpkgs`."""
    document = json.loads(VM_TEST_DOCUMENT.read_text())
    document["nixpkgs"] = json.loads(PIN_FILE.read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert [e.message for e in validator.iter_errors(document)] == []
    assert "nixpkgs" not in json.loads(VM_TEST_DOCUMENT.read_text())  # one definition: the pin


def test_sample_documents_carry_the_committed_pin() -> None:
    for path in VALID_DOCUMENTS:
        assert json.loads(path.read_text())["nixpkgs"] == json.loads(PIN_FILE.read_text()), path


@pytest.mark.nix
def test_production_document_becomes_these_values(evaluate) -> None:
    assert evaluate(DOCUMENTS / "production.json") == {
        "schemaVersion": 1,
        "hostname": "lists.example.org",
        "hostName": "lists",
        "domain": "example.org",
        "adminEmail": "ops@example.net",
        "mailDomains": ["example.org", "lists.example.org"],
        "primaryMailDomain": "example.org",
        "nixosRelease": "nixos-26.05",
        "nixosVersion": "26.05",
        "nixpkgs": json.loads(PIN_FILE.read_text()),
        "network": {
            "ipv4Address": "203.0.113.10",
            "ipv6Address": "2001:db8:1:2::1",
            "ipv6PrefixLength": 64,
            "ipv4Gateway": "172.31.1.1",
            "ipv6Gateway": "fe80::1",
        },
        "dataVolume": {"device": "/dev/disk/by-id/scsi-0HC_Volume_12345678", "fsType": "ext4"},
        "database": "postgresql",
        "usePostgresql": True,
        "acmeStaging": False,
        "acmeServer": None,
        "mailman2Redirects": True,
        "socialLoginProviders": ["github", "gitlab"],
        "socialLoginApps": [
            "allauth.socialaccount.providers.github",
            "allauth.socialaccount.providers.gitlab",
        ],
        "dkimSelector": "mailman",
        "sshAuthorizedKeys": [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyDeployKeyDeployKeyDeployKey deploy"
        ],
        "sshAllowedIps": ["0.0.0.0/0", "::/0"],
        "mtaSts": {
            "mode": "enforce",
            "maxAge": 604800,
            "policy": "version: STSv1\nmode: enforce\nmx: lists.example.org\nmax_age: 604800\n",
            "hosts": ["mta-sts.example.org", "mta-sts.lists.example.org"],
        },
        "dnsRecords": json.loads((DOCUMENTS / "production.json").read_text())["dnsRecords"],
        "backup": {
            "host": "u123456.your-storagebox.de",
            "user": "u123456",
            "port": 23,
            "path": "mailman-site",
            "keep": {"daily": 7, "weekly": 4, "monthly": 6},
        },
    }


@pytest.mark.nix
def test_staging_document_serves_a_testing_mta_sts_policy(evaluate) -> None:
    mta_sts = evaluate(DOCUMENTS / "staging-sqlite.json")["mtaSts"]
    assert "mode: testing\n" in mta_sts["policy"]
    assert "mx: pr-123.lists.example.net\n" in mta_sts["policy"]


@pytest.mark.nix
def test_staging_document_uses_sqlite_and_the_staging_acme_directory(evaluate) -> None:
    values = evaluate(DOCUMENTS / "staging-sqlite.json")
    assert values["usePostgresql"] is False
    assert values["acmeServer"] == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert values["socialLoginApps"] == []


@pytest.mark.nix
def test_hostname_splits_into_first_label_and_domain(evaluate) -> None:
    values = evaluate(DOCUMENTS / "staging-sqlite.json")
    assert (values["hostName"], values["domain"]) == ("pr-123", "lists.example.net")


@pytest.mark.nix
def test_first_mail_domain_is_the_redirect_domain(evaluate, production_document) -> None:
    production_document["mailDomains"] = ["example.net", "example.org"]
    assert evaluate(production_document)["primaryMailDomain"] == "example.net"


def _broken(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    *parents, key = path.split(".")
    target = broken
    for parent in parents:
        target = target[parent]
    target[key] = value
    return broken


@pytest.mark.nix
@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("schemaVersion", 2, "deployment.json: schemaVersion: expected 1"),
        ("hostname", "localhost", "deployment.json: hostname: expected a fully qualified"),
        ("nixosRelease", "unstable", "deployment.json: nixosRelease: expected a NixOS branch"),
        ("database", "mysql", "deployment.json: database: expected one of postgresql, sqlite"),
        ("acmeStaging", "no", "deployment.json: acmeStaging: expected true or false"),
        ("mailDomains", [], "deployment.json: mailDomains: expected at least one entry"),
        ("sshAuthorizedKeys", "ssh-ed25519 AAAA", "sshAuthorizedKeys: expected a list of strings"),
        ("network.ipv6PrefixLength", "64", "network.ipv6PrefixLength: expected an integer"),
        ("dataVolume.fsType", "xfs", "dataVolume.fsType: expected one of ext4"),
        ("network", "203.0.113.10", "deployment.json: network: expected an object"),
        ("mtaSts.mode", "none", "deployment.json: mtaSts.mode: expected one of enforce, testing"),
        ("mtaSts.maxAge", 60, "deployment.json: mtaSts.maxAge: expected an integer number"),
        ("mtaSts.maxAge", "604800", "deployment.json: mtaSts.maxAge: expected an integer number"),
        ("dnsRecords", {}, "deployment.json: dnsRecords: expected a list of objects"),
        ("dnsRecords", [{"name": "x.example.org", "type": "SRV", "values": ["1"]}],
         "deployment.json: dnsRecords.0.type: expected one of A, AAAA, MX, TXT"),
        ("dnsRecords", [{"name": "x.example.org", "type": "A", "values": []}],
         "deployment.json: dnsRecords.0.values: expected at least one entry"),
        ("dnsRecords", [{"name": "x.example.org", "type": "A"}],
         "deployment.json: dnsRecords.0.values: expected a value"),
        ("nixpkgs.branch", "nixos-26.11", "nixpkgs.branch: expected nixos-26.05 \\(the pin must"),
        ("nixpkgs.rev", "nixos-26.05", "nixpkgs.rev: expected a full nixpkgs commit id"),
        ("nixpkgs.url", "https://example.org/x.tar.gz", "nixpkgs.url: expected https://github"),
        ("nixpkgs.sha256", "0" * 52, "nixpkgs.sha256: expected the NAR hash"),
        ("backup.port", 22, "deployment.json: backup.port: expected 23"),
        ("backup.host", "box;rm", "deployment.json: backup.host: expected the Storage Box's host"),
        ("backup.path", "../x", "deployment.json: backup.path: expected a directory name"),
        ("backup.keep.daily", 0, "backup.keep.daily: expected a whole number from 1 to 1000"),
        ("backup.keep.weekly", -1, "backup.keep.weekly: expected a whole number from 0 to 1000"),
    ],
)
def test_bad_value_stops_evaluation_with_one_line_naming_the_key(
    evaluate, production_document, path: str, value: Any, message: str
) -> None:
    with pytest.raises(EvalError, match=message):
        evaluate(_broken(production_document, path, value))


@pytest.mark.parametrize("cidr", ["10.0.0.1", "any", "192.0.2.0/24; drop", "2001:db8::"])
def test_schema_rejects_ssh_sources_that_are_not_cidrs(schema, production_document, cidr) -> None:
    production_document["sshAllowedIps"] = [cidr]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid(production_document)


@pytest.mark.nix
def test_mailman_units_evaluate_without_nixpkgs(nix_instantiate: str) -> None:
    units = evaluate_json(nix_instantiate, str(NIXOS / "mailman-units.nix"))
    assert "mailman" in units["core"]
    assert {"mailman-web-setup", "hyperkitty", "hyperkitty-yearly"} <= set(units["web"])
