"""Contracts across parts, checked end to end with both real sides (docs/contracts.md).

Each side has its own tests against the shared schema; these run the Python side's real output
through the Nix side's real reader, so a drift on either side fails here.
"""

import hashlib
import importlib.util
import json
import sys

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.components.conftest import BASE, ZONED, ZONED_SECRETS
from tests.harness import run_program
from tests.nixos.nixos_support import NIXOS, read_document, require_tool


def _rendered_document(config, secrets=frozenset()):
    run = run_program(config, secrets=set(secrets))
    site = run.one("mailman:site:MailmanSite")
    return run.component_outputs[site.urn]["deploymentDocument"]


def _nix_read(document_text, tmp_path):
    path = tmp_path / "deployment.json"
    path.write_text(document_text)
    return read_document(require_tool("nix-instantiate"), path)


@pytest.mark.nix
@pytest.mark.parametrize(
    ("config", "secrets"),
    [(BASE, frozenset()), (ZONED, ZONED_SECRETS), ({**BASE, "database": "sqlite"}, frozenset())],
    ids=["quick-start", "zoned-two-domains", "sqlite"],
)
def test_nix_reads_every_value_the_program_renders(config, secrets, tmp_path):
    text = _rendered_document(config, secrets)
    written = json.loads(text)
    read = _nix_read(text, tmp_path)
    # The reader passes every document value through under its own name (and derives more);
    # a value renamed or reshaped on one side only shows up as a difference here.
    for key, value in written.items():
        if isinstance(value, dict):
            assert {name: read[key][name] for name in value} == value, key
        else:
            assert read[key] == value, key


@pytest.mark.nix
def test_nix_derives_host_names_from_the_rendered_hostname(tmp_path):
    read = _nix_read(_rendered_document(ZONED, ZONED_SECRETS), tmp_path)
    assert (read["hostName"], read["domain"]) == ("lists", "example.org")


def _txt_text(presentation: str) -> str:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, presentation)
    return b"".join(rdata.strings).decode()


@pytest.mark.nix
@pytest.mark.parametrize(
    ("config", "secrets"),
    [(BASE, frozenset()), (ZONED, ZONED_SECRETS), ({**BASE, "acmeStaging": True}, frozenset())],
    ids=["quick-start", "zoned-two-domains", "acme-staging"],
)
def test_mta_sts_id_in_dns_is_the_hash_of_the_policy_nix_serves(config, secrets, tmp_path):
    run = run_program(config, secrets=set(secrets))
    site = run.one("mailman:site:MailmanSite")
    read = _nix_read(run.component_outputs[site.urn]["deploymentDocument"], tmp_path)
    served = read["mtaSts"]["policy"]
    expected_id = hashlib.sha256(served.encode()).hexdigest()[:20]
    records = run.outputs["dnsRecords"]
    for domain in read["mailDomains"]:
        (value,) = [
            v
            for r in records
            if (r["name"], r["type"]) == (f"_mta-sts.{domain}", "TXT")
            for v in r["values"]
        ]
        assert _txt_text(value) == f"v=STSv1; id={expected_id}"
    # Nix serves the policy at exactly the hosts DNS points at us.
    hosts = {r["name"] for r in records if r["type"] == "A" and r["name"].startswith("mta-sts.")}
    assert hosts == set(read["mtaSts"]["hosts"]) - {read["hostname"]}


def _reconcile_parser():
    # The reconcile program runs on the host; its input validation needs no Django or Mailman.
    # On the host its list rules (mailman_list_rules.py) lie next to it, as they do in nixos/.
    if str(NIXOS) not in sys.path:
        sys.path.append(str(NIXOS))
    spec = importlib.util.spec_from_file_location(
        "mailman_reconcile", NIXOS / "mailman_reconcile.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module.parse_state


@pytest.mark.parametrize(
    ("config", "secrets"),
    [(BASE, frozenset()), (ZONED, ZONED_SECRETS)],
    ids=["quick-start", "zoned-two-domains-social-login"],
)
def test_reconcile_accepts_the_desired_state_the_program_sends(config, secrets):
    run = run_program(config, secrets=set(secrets))
    command = run.one("command:remote:Command", "mailman-reconcile-run")
    state = _reconcile_parser()(command.inputs["stdin"])
    site = run.namespace["site"]

    sent_lists = {entry["address"]: entry for entry in site.lists}
    assert {entry.address for entry in state.lists} == set(sent_lists)
    for entry in state.lists:
        sent = sent_lists[entry.address]
        assert entry.owners == frozenset(sent["owners"])
        assert dict(entry.settings) == sent["settings"]
    assert list(state.mail_domains) == json.loads(
        _rendered_document(config, secrets)
    )["mailDomains"]
    assert state.site_domain == state.web_host == config["hostname"]
    assert [app.provider for app in state.social_apps] == list(config.get("socialLogins", {}))
