"""Real Postfix with postfix.nix's configuration: where mail to the host's people goes.

RFC 5321 (postmaster) and RFC 2142 (abuse): these mailboxes of every mail domain and of the
hostname must reach a human. The host keeps no mailboxes, so they must leave for adminEmail
(ops@example.net in the sample document), which stands behind the SMTP sink here.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
from nixos_support import DOCUMENTS
from postfix_live import PostfixInstance, postfix_module, start_postfix

ADMIN = "ops@example.net"


@pytest.fixture(scope="module")
def module(nix_instantiate: str) -> dict[str, Any]:
    return postfix_module(nix_instantiate, DOCUMENTS / "production.json")


@pytest.fixture(scope="module")
def postfix(module: dict[str, Any]) -> Iterator[PostfixInstance]:
    # The milters are not what this file tests (test_nixos_mail_path.py runs them).
    no_milters = {"smtpd_milters": None, "non_smtpd_milters": None}
    yield from start_postfix(module, overrides=no_milters)


def _send(postfix: PostfixInstance, recipient: str, subject: str) -> None:
    message = f"From: someone@example.com\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.sendmail("someone@example.com", [recipient], message)


@pytest.mark.nix
@pytest.mark.parametrize("local_part", ["postmaster", "abuse"])
@pytest.mark.parametrize("domain", ["example.org", "lists.example.org"])
def test_mail_to_postmaster_and_abuse_reaches_admin_email(postfix, local_part, domain):
    subject = f"to {local_part}@{domain}"
    _send(postfix, f"{local_part}@{domain}", subject)
    messages = postfix.sink.find(f"Subject: {subject}".encode())
    assert messages, postfix.log()[-3000:]
    assert messages[0].recipients == [ADMIN]


@pytest.mark.nix
def test_root_alias_is_admin_email(module):
    assert module["rootAlias"] == ADMIN
    assert module["postmasterAlias"] == "root"


@pytest.mark.nix
def test_unknown_local_part_is_still_refused(postfix):
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.ehlo("client.example.com")
        client.mail("someone@example.com")
        code, _ = client.rcpt("no-such-person@example.org")
    assert code == 550
