"""The spam gate at SMTP time: real Postfix + real rspamd, both from our Nix files.

postfix.nix's milter settings (rspamd for internet clients, only OpenDKIM for this host's own
mail) and spam.nix's rspamd files (local.d, the proxy worker) run for real (Debian's rspamd
3.4, Debian's Postfix); a DNS server on 127.0.0.1 holds the author domain's SPF, DKIM and
DMARC (p=reject) records. Internet clients are simulated with XCLIENT.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from mail_dns import dns_server
from mail_world import (
    AUTHOR_DOMAIN,
    GTUBE,
    GTUBE_ADD_HEADER,
    author_message,
    author_records,
    send_from_internet,
)
from milters_live import Daemon, rspamd_module, start_rspamd
from nixos_support import DOCUMENTS
from postfix_live import PostfixInstance, daemon_directory, postfix_module, start_postfix

RECIPIENT = "abuse@example.org"  # exists (aliased to adminEmail, delivered to the sink)
HOST = "lists.example.org"


def rspamd_test_options(dns_port: int) -> str:
    """What differs from the host: the test's DNS server, and rspamd's GTUBE-like test
    patterns (the add_header one stands for a borderline message)."""
    return (
        f'dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 1s; retransmits = 1; }}\n'
        "enable_test_patterns = true;\n"
    )


@pytest.fixture(scope="module")
def services(nix_instantiate: str) -> dict[str, Any]:
    return rspamd_module(nix_instantiate)


@pytest.fixture(scope="module")
def rspamd(services: dict[str, Any]) -> Iterator[Daemon]:
    with dns_server(author_records()) as port, daemon_directory("rspamd-live-") as root:
        yield from start_rspamd(services, root, test_options=rspamd_test_options(port))


@pytest.fixture(scope="module")
def postfix(nix_instantiate: str, rspamd: Daemon) -> Iterator[PostfixInstance]:
    module = postfix_module(nix_instantiate, DOCUMENTS / "production.json")
    # OpenDKIM is not what this file tests (test_nixos_dkim_signing.py runs it): its socket
    # stays absent, and milter_default_action = accept lets mail pass it.
    paths = {"/run/rspamd/rspamd-milter.sock": str(rspamd.socket)}
    yield from start_postfix(module, paths=paths)


def _delivered(postfix: PostfixInstance, subject: str, timeout: float = 60) -> Any:
    found = postfix.sink.find(f"Subject: {subject}".encode(), timeout=timeout)
    assert found, postfix.log()[-4000:]
    return message_from_bytes(found[0].data)


@pytest.mark.nix
def test_gtube_is_rejected_during_the_smtp_dialogue(postfix, rspamd):
    data = author_message(RECIPIENT, "gtube", body=f"{GTUBE}\n")
    with pytest.raises(smtplib.SMTPDataError) as rejected:
        send_from_internet(postfix.port, RECIPIENT, data)
    assert rejected.value.smtp_code == 554, rejected.value
    assert postfix.sink.find(b"Subject: gtube", timeout=3) == []


@pytest.mark.nix
def test_borderline_mail_is_delivered_tagged(postfix):
    send_from_internet(
        postfix.port, RECIPIENT, author_message(RECIPIENT, "borderline", f"{GTUBE_ADD_HEADER}\n")
    )
    message = _delivered(postfix, "borderline")
    assert message["X-Spam"] == "Yes"


@pytest.mark.nix
def test_clean_mail_gets_spf_dkim_dmarc_results_under_the_hostname(postfix):
    send_from_internet(postfix.port, RECIPIENT, author_message(RECIPIENT, "clean"))
    message = _delivered(postfix, "clean")
    assert message["X-Spam"] is None
    (results,) = message.get_all("Authentication-Results")
    results = " ".join(results.split())
    assert results.startswith(f"{HOST};"), results
    assert "spf=pass" in results and f"smtp.mailfrom=alice@{AUTHOR_DOMAIN}" in results
    assert f"dkim=pass header.d={AUTHOR_DOMAIN}" in results
    assert f"dmarc=pass (policy=reject) header.from={AUTHOR_DOMAIN}" in results


@pytest.mark.nix
def test_forged_authentication_results_are_removed(postfix):
    # Two of them: every Authentication-Results the message brings goes (remove = 0).
    forged = (
        f"Authentication-Results: {HOST}; dmarc=pass header.from=paypal.com\r\n"
        f"Authentication-Results: {HOST}; dkim=pass header.d=paypal.com\r\n"
    ).encode()
    send_from_internet(postfix.port, RECIPIENT, forged + author_message(RECIPIENT, "forged"))
    message = _delivered(postfix, "forged")
    (results,) = message.get_all("Authentication-Results")
    assert "paypal.com" not in results


@pytest.mark.nix
def test_spoofed_author_fails_dmarc(postfix):
    # The author domain's p=reject, from a server its SPF does not list and without its
    # signature: recorded as a DMARC failure (rspamd's DMARC_POLICY_REJECT adds to the score).
    data = author_message(RECIPIENT, "spoofed")
    unsigned = data[data.index(b"From:") :]
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as client:
        client.ehlo("test")
        client.docmd("XCLIENT", "ADDR=198.51.100.7 NAME=[UNAVAILABLE]")
        client.ehlo("spoofer.example.net")
        try:
            client.sendmail(f"alice@{AUTHOR_DOMAIN}", [RECIPIENT], unsigned)
        except smtplib.SMTPDataError as rejected:
            assert rejected.smtp_code in (550, 554)
            return
    results = _delivered(postfix, "spoofed")["Authentication-Results"]
    assert "dmarc=fail" in " ".join(results.split())


@pytest.mark.nix
def test_mail_from_this_host_is_not_scanned(postfix):
    # Mailman's own list traffic (127.0.0.1/::1): smtpd_milter_maps gives it only OpenDKIM,
    # so even GTUBE passes (inbound, it never got this far).
    body = (
        "From: announce@example.org\r\nTo: someone@example.net\r\nSubject: local\r\n\r\n"
        f"{GTUBE}\r\n"
    )
    with smtplib.SMTP("::1", postfix.port, timeout=30) as client:
        client.sendmail("announce-bounces@example.org", ["someone@example.net"], body)
    message = _delivered(postfix, "local")
    assert message["X-Spam-Status"] is None and message["Authentication-Results"] is None
