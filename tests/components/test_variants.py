"""Properties that hold for every configuration variant, checked on whole-program runs."""

import json

import jsonschema
import pytest

from components.deployment_document import SCHEMA_FILE
from tests.components.conftest import BASE, ZONED, ZONED_SECRETS
from tests.harness import plain_strings, run_program

SCHEMA = json.loads(SCHEMA_FILE.read_text())
NO_LISTS = "tests/components/data/no-lists.yaml"
VARIANTS = {
    "quick-start": (BASE, set()),
    "zoned-two-domains": (ZONED, ZONED_SECRETS),
    "throwaway-arm-sqlite": (
        {
            **BASE,
            "protect": False,
            "backups": False,
            "database": "sqlite",
            "serverType": "cax21",
            "location": "hel1",
            "acmeStaging": True,
        },
        set(),
    ),
    "zone-is-a-subdomain": (
        {
            "hostname": "lists.corp.example.org",
            "adminEmail": "it@example.org",
            "dnsZone": "corp.example.org",
            "mailDomains": ["corp.example.org", "lists.corp.example.org"],
            "lists": NO_LISTS,
        },
        set(),
    ),
    "three-domains-no-zone": (
        {
            **BASE,
            "adminEmail": "ops@example.com",
            "mailDomains": ["example.org", "example.net", "lists.example.org"],
            "dmarcPolicy": "reject",
        },
        set(),
    ),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request):
    config, secrets = VARIANTS[request.param]
    return config, run_program(config, secrets=secrets)


def test_one_server_two_addresses_one_volume_one_firewall(variant):
    _, run = variant
    assert len(run.of_type("hcloud:index/server:Server")) == 1
    assert len(run.of_type("hcloud:index/primaryIp:PrimaryIp")) == 2
    assert len(run.of_type("hcloud:index/volume:Volume")) == 1
    assert len(run.one("hcloud:index/firewall:Firewall").inputs["rules"]) == 5


def test_both_ptrs_name_the_hostname(variant):
    config, run = variant
    ptrs = [r.inputs["dnsPtr"] for r in run.of_type("hcloud:index/rdns:Rdns")]
    assert ptrs == [config["hostname"]] * 2


def test_protection_is_all_or_nothing(variant):
    config, run = variant
    expected = config.get("protect", True)
    persistent = [
        run.one("hcloud:index/server:Server"),
        run.one("hcloud:index/volume:Volume"),
        *run.of_type("hcloud:index/primaryIp:PrimaryIp"),
    ]
    assert {r.protect for r in persistent} == {expected}
    assert {r.inputs["deleteProtection"] for r in persistent} == {expected}


def test_zone_holds_exactly_the_exported_records_inside_it(variant):
    config, run = variant
    zone = config.get("dnsZone")
    inside = [
        r
        for r in run.outputs["dnsRecords"]
        if zone and (r["name"] == zone or r["name"].endswith("." + zone))
    ]
    record_sets = run.of_type("hcloud:index/zoneRrset:ZoneRrset")
    assert len(record_sets) == len(inside)
    for mail_domain in config.get("mailDomains", [config["hostname"]]):
        names = {(r["name"], r["type"]) for r in run.outputs["dnsRecords"]}
        assert {
            (mail_domain, "MX"),
            (mail_domain, "TXT"),
            (f"_dmarc.{mail_domain}", "TXT"),
        } <= names


def test_deployment_document_is_schema_valid(variant):
    _, run = variant
    site = run.one("mailman:site:MailmanSite")
    document = json.loads(run.component_outputs[site.urn]["deploymentDocument"])
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(
        document
    )


def test_no_provider_secret_appears_in_plain_inputs(variant):
    _, run = variant
    secrets = {
        value
        for r in run.resources
        for key in r.additional_secret_outputs
        if isinstance(value := r.outputs.get(key), str) and value
    }
    for resource in run.resources:
        assert not [
            t for t in plain_strings(resource.raw_inputs) for s in secrets if s.strip() in t
        ]
