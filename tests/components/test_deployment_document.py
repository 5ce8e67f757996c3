"""The deployment document: valid against its JSON Schema (SCHEMA_FILE), no secrets, line diffs."""

import json

import jsonschema
import pytest

from components.deployment_document import SCHEMA_FILE
from components.dns_records import txt_presentation
from tests.components.conftest import BASE
from tests.harness import (
    MOCK_ED25519_PUBLIC,
    MOCK_IPV4,
    OPERATOR_ED25519_PUBLIC,
    Secret,
    run_program,
)

SCHEMA = json.loads(SCHEMA_FILE.read_text())


def _document_text(run):
    site = run.one("mailman:site:MailmanSite")
    return run.component_outputs[site.urn]["deploymentDocument"]


def _document(run):
    return json.loads(_document_text(run))


@pytest.mark.parametrize("run_name", ["base_run", "zoned_run", "unprotected_run"])
def test_document_is_valid_against_the_schema(request, run_name):
    document = _document(request.getfixturevalue(run_name))
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    assert list(validator.iter_errors(document)) == []


def test_document_has_exactly_the_schema_keys_in_contract_order(base_run):
    assert list(_document(base_run)) == list(SCHEMA["properties"])
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"])


def test_document_carries_network_volume_and_keys(zoned_run):
    document = _document(zoned_run)
    volume = zoned_run.one("hcloud:index/volume:Volume")
    assert document["network"] == {
        "ipv4Address": MOCK_IPV4,
        "ipv6Address": "2001:db8:1:2::1",
        "ipv6PrefixLength": 64,
    }
    assert document["dataVolume"] == {"device": volume.outputs["linuxDevice"], "fsType": "ext4"}
    assert document["sshAuthorizedKeys"] == [
        MOCK_ED25519_PUBLIC,
        OPERATOR_ED25519_PUBLIC + " alice@laptop",
    ]
    assert document["sshAllowedIps"] == ["198.51.100.0/24", "2001:db8:ffff::/48"]
    assert document["mailDomains"] == ["example.org", "lists.example.org"]
    assert document["socialLoginProviders"] == ["github"]


def test_document_is_plain_text_so_previews_show_its_lines(zoned_run):
    text = _document_text(zoned_run)
    assert not isinstance(text, Secret)
    assert text.endswith("\n")
    assert len(text.splitlines()) > 20  # one value per line


def test_document_holds_no_secret(zoned_run):
    text = _document_text(zoned_run)
    for secret in ("correct horse battery staple", "gh-client-secret-123", "PRIVATE KEY"):
        assert secret not in text


def test_document_asks_for_an_enforced_mta_sts_policy_with_real_certificates(zoned_run):
    assert _document(zoned_run)["mtaSts"] == {"mode": "enforce", "maxAge": 604800}


def test_document_asks_for_a_testing_mta_sts_policy_on_acme_staging():
    run = run_program({**BASE, "acmeStaging": True})
    assert _document(run)["mtaSts"] == {"mode": "testing", "maxAge": 86400}


def test_document_carries_the_records_the_stack_publishes(zoned_run):
    # The Dns component's own records (TXT in zone-file quoting there, the plain text here).
    dns = zoned_run.one("mailman:dns:Dns")
    exported = zoned_run.component_outputs[dns.urn]["records"]
    published = _document(zoned_run)["dnsRecords"]
    assert [(r["name"], r["type"]) for r in published] == [
        (r["name"], r["type"]) for r in exported
    ]
    for mine, theirs in zip(published, exported, strict=True):
        if mine["type"] == "TXT":
            assert [txt_presentation(v) for v in mine["values"]] == theirs["values"]
        else:
            assert mine["values"] == theirs["values"]
    assert {"name": "lists.example.org", "type": "A", "values": [MOCK_IPV4]} in published
