"""The outside world of the mail-path tests: an author domain with p=reject, its DNS records,
its DKIM key, and an SMTP client that speaks as one of its servers (XCLIENT)."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import dkim
from mail_keys import rsa_key

AUTHOR_DOMAIN = "example.com"
AUTHOR = f"alice@{AUTHOR_DOMAIN}"
AUTHOR_SERVER_IP = "192.0.2.10"  # TEST-NET-1, the only address its SPF record allows
AUTHOR_SELECTOR = "test"
AUTHOR_KEY, AUTHOR_DKIM_TXT = rsa_key()

# GTUBE (rspamd: always rejected) and rspamd's add_header test pattern (enable_test_patterns,
# set only by these tests), written here in two halves so no filter flags this file.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = "YJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def author_records() -> dict[tuple[str, str], list[str]]:
    return {
        (AUTHOR_DOMAIN, "TXT"): [f"v=spf1 ip4:{AUTHOR_SERVER_IP} -all"],
        (f"_dmarc.{AUTHOR_DOMAIN}", "TXT"): ["v=DMARC1; p=reject; adkim=r; aspf=r"],
        (f"{AUTHOR_SELECTOR}._domainkey.{AUTHOR_DOMAIN}", "TXT"): [AUTHOR_DKIM_TXT],
    }


def author_message(to: str, subject: str, body: str = "Hello list.\n") -> bytes:
    """A post by AUTHOR, DKIM-signed by the author domain's key (as its own MTA would)."""
    message = EmailMessage()
    message["From"] = f"Alice <{AUTHOR}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=AUTHOR_DOMAIN)
    message.set_content(body)
    raw = message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signature = dkim.sign(
        raw,
        AUTHOR_SELECTOR.encode(),
        AUTHOR_DOMAIN.encode(),
        AUTHOR_KEY,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return signature + raw


def send_from_internet(port: int, recipient: str, data: bytes, sender: str = AUTHOR) -> None:
    """SMTP to 127.0.0.1:port, speaking (XCLIENT) as the author domain's server."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("test")
        code, reply = client.docmd("XCLIENT", f"ADDR={AUTHOR_SERVER_IP} NAME=mail.{AUTHOR_DOMAIN}")
        assert code == 220, reply
        client.ehlo(f"mail.{AUTHOR_DOMAIN}")  # XCLIENT resets the session
        client.sendmail(sender, [recipient], data)
