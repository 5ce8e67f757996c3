"""DNS: record sets per configuration, their values checked with real DNS/SPF/DKIM parsers."""

import base64

import checkdmarc.mta_sts
import checkdmarc.smtp_tls_reporting
import dkim.crypto
import dkim.util
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import spf

from components.dns_records import MtaStsPolicy, dkim_public_key_base64, txt_presentation
from tests.harness import MOCK_IPV4, MOCK_RSA_PUBLIC_PEM, run_program

RRSET = "hcloud:index/zoneRrset:ZoneRrset"
_NO_LISTS = {
    "hostname": "lists.example.org",
    "adminEmail": "postmaster@example.org",
    "lists": "tests/components/data/no-lists.yaml",
}
IPV6 = "2001:db8:1:2::1"
SPF = f"v=spf1 ip4:{MOCK_IPV4} ip6:{IPV6} -all"


def _rdata(type_: str, value: str):
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type_), value)


def _txt(value: str) -> str:
    """The text a resolver hands to an application: the strings of the record, concatenated."""
    rdata = _rdata("TXT", value)
    assert all(len(chunk) <= 255 for chunk in rdata.strings)
    return b"".join(rdata.strings).decode()


def _zone(run) -> dict[tuple[str, str], list[str]]:
    return {
        (r.inputs["name"], r.inputs["type"]): [v["value"] for v in r.inputs["records"]]
        for r in run.of_type(RRSET)
    }


def _exported(run) -> dict[tuple[str, str], list[str]]:
    return {(r["name"], r["type"]): r["values"] for r in run.outputs["dnsRecords"]}


def test_no_zone_means_no_dns_resources(base_run):
    assert base_run.of_type(RRSET) == []
    assert not [token for token, _ in base_run.invokes if "txtRecord" in token]


def test_no_zone_exports_exactly_the_records_to_create(base_run):
    records = _exported(base_run)
    assert sorted(records) == [
        ("_dmarc.lists.example.org", "TXT"),
        ("_mta-sts.lists.example.org", "TXT"),
        ("_smtp._tls.lists.example.org", "TXT"),
        ("lists.example.org", "A"),
        ("lists.example.org", "AAAA"),
        ("lists.example.org", "MX"),
        ("lists.example.org", "TXT"),
        ("mailman._domainkey.lists.example.org", "TXT"),
        ("mta-sts.lists.example.org", "A"),
        ("mta-sts.lists.example.org", "AAAA"),
    ]
    assert records[("lists.example.org", "A")] == [MOCK_IPV4]
    assert records[("lists.example.org", "AAAA")] == [IPV6]
    assert records[("lists.example.org", "MX")] == ["10 lists.example.org."]
    assert [_txt(v) for v in records[("lists.example.org", "TXT")]] == [SPF]
    assert all(r["ttl"] == 3600 for r in base_run.outputs["dnsRecords"])


def test_zone_gets_one_record_set_per_name_and_type(zoned_run):
    assert sorted(_zone(zoned_run)) == [
        ("@", "MX"),
        ("@", "TXT"),
        ("_dmarc", "TXT"),
        ("_dmarc.lists", "TXT"),
        ("_mta-sts", "TXT"),
        ("_mta-sts.lists", "TXT"),
        ("_smtp._tls", "TXT"),
        ("_smtp._tls.lists", "TXT"),
        ("lists", "A"),
        ("lists", "AAAA"),
        ("lists", "MX"),
        ("lists", "TXT"),
        ("mailman._domainkey", "TXT"),
        ("mailman._domainkey.lists", "TXT"),
        ("mta-sts", "A"),
        ("mta-sts", "AAAA"),
        ("mta-sts.lists", "A"),
        ("mta-sts.lists", "AAAA"),
    ]
    for record_set in zoned_run.of_type(RRSET):
        assert record_set.inputs["zone"] == "example.org"
        assert record_set.inputs["labels"] == {"project": "mailman", "stack": "test"}


def test_zone_records_equal_the_exported_records(zoned_run):
    zone = {
        (name if name != "@" else "", type_): values
        for (name, type_), values in _zone(zoned_run).items()
    }
    for (name, type_), values in _exported(zoned_run).items():
        if not name.endswith("example.org"):
            continue  # the DMARC report authorization lives in adminEmail's domain
        relative = name.removesuffix("example.org").removesuffix(".")
        assert zone[(relative, type_)] == values


def test_address_records_point_at_the_primary_ips(zoned_run):
    zone = _zone(zoned_run)
    assert [_rdata("A", v).address for v in zone[("lists", "A")]] == [MOCK_IPV4]
    assert [_rdata("AAAA", v).address for v in zone[("lists", "AAAA")]] == [IPV6]


@pytest.mark.parametrize("name", ["@", "lists"])
def test_every_mail_domain_has_mx_to_the_hostname(zoned_run, name):
    (mx,) = [_rdata("MX", v) for v in _zone(zoned_run)[(name, "MX")]]
    assert mx.preference == 10
    assert mx.exchange.to_text() == "lists.example.org."


def _spf_result(txt_records: dict[str, list[str]], ip: str, sender: str) -> str:
    def lookup(name, qtype, *_args, **_kwargs):
        if qtype != "TXT":
            return []
        values = txt_records.get(name.rstrip("."), [])
        return [((name, "TXT"), [_txt(v).encode()]) for v in values]

    original = spf.DNSLookup
    spf.DNSLookup = lookup
    try:
        result, _ = spf.check2(i=ip, s=sender, h="lists.example.org")
    finally:
        spf.DNSLookup = original
    return result


@pytest.mark.parametrize("sender", ["list@example.org", "list@lists.example.org"])
def test_spf_passes_our_addresses_and_fails_others(zoned_run, sender):
    txt = {name: values for (name, type_), values in _exported(zoned_run).items() if type_ == "TXT"}
    assert _spf_result(txt, MOCK_IPV4, sender) == "pass"
    assert _spf_result(txt, IPV6, sender) == "pass"
    assert _spf_result(txt, "198.51.100.1", sender) == "fail"


def _tags(value: str) -> dict[bytes, bytes]:
    return dkim.util.parse_tag_value(_txt(value).encode())


@pytest.mark.parametrize("name", ["mailman._domainkey", "mailman._domainkey.lists"])
def test_dkim_record_publishes_the_stack_key(zoned_run, name):
    (value,) = _zone(zoned_run)[(name, "TXT")]
    tags = _tags(value)
    assert tags[b"v"] == b"DKIM1"
    assert tags[b"k"] == b"rsa"
    key = dkim.crypto.parse_public_key(base64.b64decode(tags[b"p"]))
    assert key["modulus"].bit_length() == 2048
    assert tags[b"p"].decode() == dkim_public_key_base64(MOCK_RSA_PUBLIC_PEM)


def test_long_dkim_value_is_split_into_quoted_strings_by_the_provider_function(zoned_run):
    (value,) = _zone(zoned_run)[("mailman._domainkey", "TXT")]
    assert len(_rdata("TXT", value).strings) == 2
    assert ("hcloud:index/txtRecord:txtRecord", {"record": _txt(value)}) in zoned_run.invokes
    assert value == txt_presentation(_txt(value))


@pytest.mark.parametrize("name", ["_dmarc", "_dmarc.lists"])
def test_dmarc_policy_and_reports_to_admin(zoned_run, name):
    (value,) = _zone(zoned_run)[(name, "TXT")]
    text = _txt(value)
    assert text.startswith("v=DMARC1; ")  # v must be the first tag (RFC 7489 6.3)
    tags = _tags(value)
    assert tags[b"p"] == b"quarantine"
    assert tags[b"rua"] == b"mailto:ops@example.net"


def test_dmarc_policy_defaults_to_none(base_run):
    (value,) = _exported(base_run)[("_dmarc.lists.example.org", "TXT")]
    assert _tags(value)[b"p"] == b"none"


def test_hostname_outside_mail_domains_gets_its_own_spf_for_helo():
    run = run_program(
        {
            "hostname": "lists.example.org",
            "adminEmail": "ops@example.net",
            "mailDomains": ["example.org"],
            "lists": "tests/components/data/no-lists.yaml",
        }
    )
    records = _exported(run)
    assert [_txt(v) for v in records[("lists.example.org", "TXT")]] == [SPF]
    assert ("lists.example.org", "MX") not in records


def test_report_address_in_another_domain_needs_its_authorization_record():
    run = run_program(
        {
            "hostname": "lists.example.org",
            "adminEmail": "dmarc@reports.example.net",
            "lists": "tests/components/data/no-lists.yaml",
        }
    )
    records = _exported(run)
    (value,) = records[("lists.example.org._report._dmarc.reports.example.net", "TXT")]
    assert _txt(value) == "v=DMARC1"


def test_zone_leaves_out_the_authorization_record_of_a_foreign_domain():
    run = run_program(
        {
            "hostname": "lists.example.org",
            "adminEmail": "dmarc@example.net",
            "dnsZone": "example.org",
            "lists": "tests/components/data/no-lists.yaml",
        }
    )
    assert all("_report" not in r.inputs["name"] for r in run.of_type(RRSET))
    assert ("lists.example.org._report._dmarc.example.net", "TXT") in _exported(run)


@pytest.mark.parametrize("domain", ["example.org", "lists.example.org"])
def test_mta_sts_record_names_the_policy_of_every_mail_domain(zoned_run, domain):
    (value,) = _exported(zoned_run)[(f"_mta-sts.{domain}", "TXT")]
    tags = checkdmarc.mta_sts.parse_mta_sts_record(_txt(value))["tags"]
    policy = MtaStsPolicy.for_certificates(acme_staging=False)
    assert tags == {"v": "STSv1", "id": policy.policy_id("lists.example.org")}


def test_mta_sts_policy_enforces_our_hostname_as_the_only_mx():
    policy = MtaStsPolicy.for_certificates(acme_staging=False)
    parsed = checkdmarc.mta_sts.parse_mta_sts_policy(policy.text("lists.example.org"))
    assert parsed["warnings"] == []
    assert parsed["policy"] == {
        "version": "STSv1",
        "mode": "enforce",
        "mx": ["lists.example.org"],
        "max_age": 604800,
    }


def test_mta_sts_policy_only_tests_while_certificates_are_staging_ones():
    policy = MtaStsPolicy.for_certificates(acme_staging=True)
    parsed = checkdmarc.mta_sts.parse_mta_sts_policy(policy.text("lists.example.org"))
    assert parsed["policy"]["mode"] == "testing"


def test_mta_sts_id_changes_exactly_when_the_policy_changes():
    enforce = MtaStsPolicy.for_certificates(acme_staging=False)
    testing = MtaStsPolicy.for_certificates(acme_staging=True)
    host = "lists.example.org"
    assert enforce.policy_id(host) == MtaStsPolicy("enforce", 604800).policy_id(host)
    ids = {enforce.policy_id(host), testing.policy_id(host), enforce.policy_id("mx.example.org")}
    assert len(ids) == 3


def test_staging_stack_publishes_the_testing_policy_id():
    run = run_program({**_NO_LISTS, "acmeStaging": True})
    (value,) = _exported(run)[("_mta-sts.lists.example.org", "TXT")]
    testing = MtaStsPolicy.for_certificates(acme_staging=True)
    assert checkdmarc.mta_sts.parse_mta_sts_record(_txt(value))["tags"]["id"] == (
        testing.policy_id("lists.example.org")
    )


@pytest.mark.parametrize("domain", ["example.org", "lists.example.org"])
def test_tls_reports_go_to_the_admin(zoned_run, domain):
    (value,) = _exported(zoned_run)[(f"_smtp._tls.{domain}", "TXT")]
    parsed = checkdmarc.smtp_tls_reporting.parse_smtp_tls_reporting_record(_txt(value))
    assert parsed["tags"]["v"]["value"] == "TLSRPTv1"
    assert parsed["tags"]["rua"]["value"] == ["mailto:ops@example.net"]


@pytest.mark.parametrize("name", ["mta-sts", "mta-sts.lists"])
def test_policy_hosts_point_at_the_primary_ips(zoned_run, name):
    zone = _zone(zoned_run)
    assert [_rdata("A", v).address for v in zone[(name, "A")]] == [MOCK_IPV4]
    assert [_rdata("AAAA", v).address for v in zone[(name, "AAAA")]] == [IPV6]


def test_exported_policy_host_records_say_they_are_needed_before_the_first_deploy(base_run):
    notes = {(r["name"], r["type"]): r.get("note") for r in base_run.outputs["dnsRecords"]}
    for type_ in ("A", "AAAA"):
        assert "before the first deploy" in notes[("mta-sts.lists.example.org", type_)]
        assert "Let's Encrypt" in notes[("mta-sts.lists.example.org", type_)]
    assert notes[("lists.example.org", "A")] is None


def test_hostname_that_is_a_policy_host_gets_one_address_record_set():
    run = run_program(
        {
            **_NO_LISTS,
            "hostname": "mta-sts.example.org",
            "adminEmail": "ops@example.net",
            "mailDomains": ["example.org"],
        }
    )
    names = [(r["name"], r["type"]) for r in run.outputs["dnsRecords"]]
    assert names.count(("mta-sts.example.org", "A")) == 1
    assert names.count(("mta-sts.example.org", "AAAA")) == 1
