"""Real Postfix + real OpenDKIM, both configured from our Nix files: what gets signed.

Mailman submits to Postfix on `localhost`, which resolves to ::1 first (the issue that found
it); list mail from ::1 must be signed like mail from 127.0.0.1. Mail from an internet client
(XCLIENT ADDR=192.0.2.1) is not ours to sign: the control that shows InternalHosts decides.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
from mail_keys import rsa_key, txt_lookup
from milters_live import Daemon, opendkim_module, start_opendkim
from nixos_support import DOCUMENTS
from postfix_live import Message, PostfixInstance, daemon_directory, postfix_module, start_postfix

KEY, DKIM_TXT = rsa_key()


@pytest.fixture(scope="module")
def opendkim(nix_instantiate: str) -> Iterator[Daemon]:
    module = opendkim_module(nix_instantiate, DOCUMENTS / "production.json")
    with daemon_directory("opendkim-live-") as root:
        yield from start_opendkim(module, root, KEY)


@pytest.fixture(scope="module")
def postfix(nix_instantiate: str, opendkim: Daemon) -> Iterator[PostfixInstance]:
    module = postfix_module(nix_instantiate, DOCUMENTS / "production.json")
    # rspamd is not what this file tests (test_nixos_spam_gate.py runs it): its socket stays
    # absent and milter_default_action = accept lets mail pass it.
    yield from start_postfix(module, paths={"/run/opendkim/opendkim.sock": str(opendkim.socket)})


def _send(
    postfix: PostfixInstance, host: str, subject: str, *, xclient: str = "", extra: str = ""
) -> Message:
    recipient = "abuse@example.org" if xclient else "someone@example.com"
    body = (
        f"From: Announce <announce@example.org>\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"{extra}"
        "Message-ID: <" + subject.replace(" ", "-") + "@example.org>\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP(host, postfix.port, timeout=30) as client:
        if xclient:
            client.ehlo("test")
            code, reply = client.docmd("XCLIENT", xclient)
            assert code == 220, reply
            client.ehlo("client.example.net")  # XCLIENT resets the session
        client.sendmail("announce-bounces@example.org", [recipient], body)
    found = postfix.sink.find(f"Subject: {subject}".encode())
    assert found, postfix.log()[-3000:]
    return found[0]


@pytest.mark.nix
@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_mail_submitted_on_loopback_is_signed(postfix, host):
    message = _send(postfix, host, f"from {host}")
    assert b"DKIM-Signature:" in message.data
    assert b"d=example.org" in message.data and b"s=mailman" in message.data
    records = {"mailman._domainkey.example.org": DKIM_TXT}
    assert dkim.verify(message.data, dnsfunc=txt_lookup(records))


@pytest.mark.nix
def test_mail_from_an_internet_client_is_not_signed(postfix):
    message = _send(
        postfix, "127.0.0.1", "from outside", xclient="ADDR=192.0.2.1 NAME=[UNAVAILABLE]"
    )
    assert b"DKIM-Signature:" not in message.data


@pytest.mark.nix
def test_opendkim_settings_name_both_loopback_addresses(nix_instantiate: str) -> None:
    module: dict[str, Any] = opendkim_module(nix_instantiate, DOCUMENTS / "production.json")
    assert set(module["settings"]["InternalHosts"].removeprefix("csl:").split(",")) == {
        "127.0.0.1",
        "::1",
    }


@pytest.mark.nix
def test_the_signature_covers_both_one_click_headers(postfix):
    """RFC 8058 section 4: a receiver acts on one-click only if a valid DKIM signature covers
    List-Unsubscribe and List-Unsubscribe-Post (nixos/dkim.nix SignHeaders, OversignHeaders)."""
    one_click = (
        "List-Unsubscribe: <https://lists.example.org/one-click/announce.example.org/t0ken>,"
        " <mailto:announce-leave@example.org>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )
    message = _send(postfix, "::1", "one-click headers", extra=one_click)
    records = {"mailman._domainkey.example.org": DKIM_TXT}
    assert dkim.verify(message.data, dnsfunc=txt_lookup(records))
    signature = message.data.split(b"DKIM-Signature:", 1)[1].split(b"\r\n\r\n", 1)[0]
    found = re.search(rb"(?:^|;)\s*h=([^;]+);", signature)
    assert found, signature
    names = [name.strip().lower() for name in found[1].split(b":")]
    # Each present once, oversigned once: in h= twice, so none can be added after signing.
    assert names.count(b"list-unsubscribe") == 2
    assert names.count(b"list-unsubscribe-post") == 2
    # A receiver that appended a second List-Unsubscribe-Post breaks the signature.
    forged = message.data.replace(
        b"\r\n\r\nhello", b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nhello", 1
    )
    assert not dkim.verify(forged, dnsfunc=txt_lookup(records))
