"""RFC 8058 one-click unsubscribe end to end, with a real Mailman 3.3.10 core on 127.0.0.1.

Core delivers through the host's `[mta] outgoing` (nixos/mailman_one_click_mta.py) into an SMTP
sink; the lists come from the shipped reconcile program (which writes the per-list switches);
the endpoint is nixos/mailman_one_click.py started as its systemd unit starts it (credentials in
a directory, settings in the environment); membership is checked through core's REST API.
The tests run in order on one site: the first post, then the link's GET and POSTs, then the
forged requests, then the other kinds of mail.
"""

from __future__ import annotations

import base64
import email
import email.message
import os
import re
import secrets
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from mailman_fixture import (
    NIXOS_DIR,
    REST_USER,
    MailmanEnv,
    MailmanSite,
    SmtpSink,
    free_port,
)

sys.path.insert(0, str(NIXOS_DIR))
import mailman_one_click as one_click

pytestmark = pytest.mark.mailman

HOST = "lists.example.org"
BASE_URL = f"https://{HOST}/one-click"
MEMBERS = ("anne@example.com", "bert@example.com", "cleo@example.com")
OWNER = "postmaster@example.org"
SETTINGS = {"default_member_action": "accept", "send_welcome_message": False,
            "send_goodbye_message": False}
NEWS = {"address": "news@example.org", "owners": [OWNER], "moderators": [],
        "settings": {**SETTINGS, "default_nonmember_action": "hold"}}
QUIET = {"address": "quiet@example.org", "owners": [OWNER], "moderators": [],
         "one_click_unsubscribe": False, "settings": SETTINGS}
PERSONAL = {"address": "personal@example.org", "owners": [OWNER], "moderators": [],
            "settings": SETTINGS}
BARE = {"address": "bare@example.org", "owners": [OWNER], "moderators": [],
        "settings": {**SETTINGS, "include_rfc2369_headers": False}}
STATE: dict[str, Any] = {
    "version": 1,
    "site": {"domain": HOST, "name": HOST},
    "superuser": {"username": "admin", "email": OWNER, "password": "one-click-Password-1"},
    "mailDomains": ["example.org"],
    "webHost": HOST,
    "lists": [BARE, NEWS, PERSONAL, QUIET],
    "socialApps": [],
}
LINK = re.compile(r"<(https://[^>]+)>")


@dataclass
class OneClickSite:
    site: MailmanSite
    sink: SmtpSink
    endpoint: str
    log: Path
    key: bytes
    switches: Path
    first_post: list[dict[str, Any]] = field(default_factory=list)

    def members(self, list_id: str) -> dict[str, str]:
        """Address -> member id of the list's members, as core's REST API answers."""
        found = self.site.rest(f"lists/{list_id}/roster/member")
        return {m["email"]: m["member_id"] for m in found.get("entries", [])}

    def post(self, list_address: str, sender: str = MEMBERS[0], count: int = 3,
             to: str | None = None) -> list[dict[str, Any]]:
        """Send a post through core's LMTP server (as Postfix does); the `count` messages the
        sink got that carry it (its subject), to `to` when given (core's own notices to the
        sender are left aside)."""
        tag = secrets.token_hex(6)
        message = email.message.EmailMessage()
        message["From"], message["To"] = sender, list_address
        message["Subject"] = f"Hello {tag}"
        message["Message-ID"] = f"<{tag}@example.com>"
        message.set_content("Hello members.\n")
        with smtplib.LMTP("127.0.0.1", self.site.lmtp_port) as lmtp:
            lmtp.send_message(message)
        return self.wait(tag, count, to)

    def wait(self, tag: str, count: int, to: str | None = None) -> list[dict[str, Any]]:
        """The `count` messages in the sink whose text has `tag` (and, if given, only `to`)."""
        def found() -> list[dict[str, Any]]:
            return [m for m in self.sink.messages()
                    if tag in m["data"] and (to is None or m["to"] == [to])]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(found()) >= count:
                time.sleep(0.5)  # and no more than that
                return found()
            time.sleep(0.05)
        raise AssertionError(f"{len(found())} messages carry {tag!r}, not {count}")

    def local(self, url: str) -> str:
        """The link as nginx hands it to the service: same path, on the service's address."""
        assert url.startswith(BASE_URL + "/")
        return self.endpoint + url.removeprefix(f"https://{HOST}")

    def request(self, url: str, method: str = "GET", body: bytes | None = None,
                content_type: str = "application/x-www-form-urlencoded",
                ) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def _start_endpoint(directory: Path, site: MailmanSite, key: bytes,
                    port: int) -> subprocess.Popen[bytes]:
    """nixos/one-click.nix's unit: the file run by a plain Python, its credentials in
    CREDENTIALS_DIRECTORY, its settings in the environment, nothing in argv."""
    credentials = directory / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / one_click.KEY_CREDENTIAL).write_bytes(key + b"\n")
    (credentials / one_click.REST_PASSWORD_CREDENTIAL).write_text(site.rest_pass + "\n")
    environment = {"PATH": os.environ.get("PATH", ""), "CREDENTIALS_DIRECTORY": str(credentials),
                   "ONE_CLICK_LISTEN": f"127.0.0.1:{port}", "ONE_CLICK_REST_URL": site.rest_url,
                   "ONE_CLICK_REST_USER": REST_USER}
    with (directory / "endpoint.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, str(NIXOS_DIR / "mailman_one_click.py")],
                                   env=environment, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"listening" not in (directory / "endpoint.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((directory / "endpoint.log").read_text())
        time.sleep(0.05)
    return process


@pytest.fixture(scope="module")
def oc(mailman_env: MailmanEnv, tmp_path_factory: pytest.TempPathFactory,
       ) -> Iterator[OneClickSite]:
    root = tmp_path_factory.mktemp("one-click")
    key = secrets.token_urlsafe(48).encode()
    (root / "core-credentials").mkdir(mode=0o700)
    (root / "core-credentials" / "one-click-key").write_bytes(key)
    (root / "state").mkdir()
    switches = root / "state" / "lists.json"
    sink = SmtpSink(mailman_env, root / "sink")
    sink.start()
    site = MailmanSite(env=mailman_env, directory=root / "site", outgoing=one_click.OUTGOING,
                       smtp=("127.0.0.1", sink.port), one_click_settings={
                           "base_url": BASE_URL,
                           "key_file": str(root / "core-credentials" / "one-click-key"),
                           "switches_file": str(switches)})
    site.directory.mkdir()
    endpoint: subprocess.Popen[bytes] | None = None
    try:
        site.start()
        done = site.run_reconcile(STATE)
        assert done.returncode == 10, done.stderr  # converged, and the Site renamed (first run)
        site.rest(f"lists/{PERSONAL['address'].replace('@', '.')}/config",
                  {"personalize": "full"}, method="PATCH")
        for list_id in ("news.example.org", "quiet.example.org", "personal.example.org",
                        "bare.example.org"):
            for address in MEMBERS:
                site.rest("members", {"list_id": list_id, "subscriber": address,
                                      "pre_verified": "true", "pre_confirmed": "true",
                                      "pre_approved": "true", "send_welcome_message": "false"})
        port = free_port()
        endpoint = _start_endpoint(root, site, key, port)
        yield OneClickSite(site, sink, f"http://127.0.0.1:{port}", root / "endpoint.log", key,
                           switches)
    finally:
        if endpoint is not None:
            endpoint.terminate()
            endpoint.wait(timeout=30)
        site.stop()
        sink.stop()


@pytest.fixture(scope="module")
def first_post(oc: OneClickSite) -> dict[str, email.message.Message]:
    """One post to news@ (three members): each copy by its recipient."""
    copies = oc.post("news@example.org")
    assert all(len(c["to"]) == 1 for c in copies), "one SMTP transaction per member"
    return {c["to"][0]: email.message_from_string(c["data"]) for c in copies}


def link_of(message: email.message.Message) -> str:
    links = LINK.findall(message["List-Unsubscribe"])
    assert len(links) == 1, message["List-Unsubscribe"]
    return links[0]


# --- the post -------------------------------------------------------------------------------

def test_the_reconcile_wrote_the_lists_that_turn_one_click_off(oc: OneClickSite) -> None:
    assert oc.switches.read_text() == one_click.switches_text(["quiet@example.org"])


def test_each_member_gets_one_copy_with_its_own_link(first_post: dict[str, Any],
                                                     oc: OneClickSite) -> None:
    assert sorted(first_post) == sorted(MEMBERS)
    ids = oc.members("news.example.org")
    links = {}
    for recipient, message in first_post.items():
        header = " ".join(message["List-Unsubscribe"].split())
        links[recipient] = link_of(message)
        assert header == f"<{links[recipient]}>, <mailto:news-leave@example.org>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
        # Opaque: no address or local part in it, and it verifies for exactly this member.
        assert "@" not in links[recipient]
        assert recipient.partition("@")[0] not in links[recipient]
        path = links[recipient].removeprefix(f"https://{HOST}")
        assert one_click.verify(oc.key, path) == ("news.example.org",
                                                  _uuid(ids[recipient]))
    assert len(set(links.values())) == 3


def test_the_decoration_is_that_of_the_list_once_per_copy(first_post: dict[str, Any]) -> None:
    bodies = {r: m.get_payload(decode=True).decode().replace("\r\n", "\n")
              for r, m in first_post.items()}
    assert len(set(bodies.values())) == 1  # decorated once, the same text for everyone
    (body,) = set(bodies.values())
    assert body.startswith("Hello members.\n")
    # Core's default footer for the list (list:member:regular:footer), exactly once.
    assert body.count("To unsubscribe send an email to news-leave@example.org") == 1
    for message in first_post.values():
        assert message["Subject"].startswith("[News] Hello ")
        assert message.get_all("List-Id") == ["<news.example.org>"]


# --- the endpoint -------------------------------------------------------------------------

def test_get_shows_one_button_that_posts_and_removes_nobody(first_post: dict[str, Any],
                                                            oc: OneClickSite) -> None:
    for message in first_post.values():
        status, page = oc.request(oc.local(link_of(message)))
        assert status == 200
        assert page.count(b"<form") == 1 and b'method="post"' in page
        assert b'name="List-Unsubscribe" value="One-Click"' in page
        assert page.count(b"<button") == 1
    status, _ = oc.request(oc.local(link_of(first_post[MEMBERS[0]])), method="HEAD")
    assert status == 200
    assert sorted(oc.members("news.example.org")) == sorted(MEMBERS)


def test_post_removes_exactly_that_member_from_exactly_that_list(
        first_post: dict[str, Any], oc: OneClickSite) -> None:
    bert_id = oc.members("news.example.org")[MEMBERS[1]]
    status, page = oc.request(oc.local(link_of(first_post[MEMBERS[1]])), "POST",
                              one_click.POST_HEADER_VALUE.encode())
    assert status == 200 and b"Unsubscribed" in page
    assert sorted(oc.members("news.example.org")) == [MEMBERS[0], MEMBERS[2]]
    # Bert's other lists keep him.
    assert sorted(oc.members("quiet.example.org")) == sorted(MEMBERS)
    assert sorted(oc.members("personal.example.org")) == sorted(MEMBERS)
    # Logged with list, member id and time, never the address or the token.
    log = oc.log.read_text()
    (line,) = [x for x in log.splitlines() if "outcome=unsubscribed" in x]
    assert re.fullmatch(rf"one-click unsubscribe: list=news\.example\.org member={bert_id} "
                        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 outcome=unsubscribed", line)
    assert "@" not in log and link_of(first_post[MEMBERS[1]]).rpartition("/")[2] not in log


def test_a_second_post_is_harmless_and_answers_the_same(first_post: dict[str, Any],
                                                        oc: OneClickSite) -> None:
    url = oc.local(link_of(first_post[MEMBERS[1]]))
    status, page = oc.request(url, "POST", one_click.POST_HEADER_VALUE.encode())
    assert (status, b"Unsubscribed" in page) == (200, True)
    assert sorted(oc.members("news.example.org")) == [MEMBERS[0], MEMBERS[2]]


def test_a_multipart_form_post_works_too(first_post: dict[str, Any], oc: OneClickSite) -> None:
    """RFC 8058 section 3.1 allows multipart/form-data; a mail provider may send it."""
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    status, _ = oc.request(oc.local(link_of(first_post[MEMBERS[2]])), "POST", body,
                           f"multipart/form-data; boundary={boundary}")
    assert status == 200
    assert sorted(oc.members("news.example.org")) == [MEMBERS[0]]


def _uuid(member_id: str) -> UUID:
    return UUID(hex=member_id)


def _forgeries(anne: str, cleo: str, key: bytes) -> dict[str, tuple[str, str, bytes | None, str]]:
    """Ten kinds of forged or broken request: (path, method, body, content type)."""
    good = one_click.POST_HEADER_VALUE.encode()
    form = "application/x-www-form-urlencoded"
    token = anne.rpartition("/")[2]
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[-1] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    # Cleo's member id behind Anne's MAC: one member's link turned into another's.
    cleo_raw = base64.urlsafe_b64decode(cleo.rpartition("/")[2] + "=")
    swapped = base64.urlsafe_b64encode(
        cleo_raw[:16] + bytes(base64.urlsafe_b64decode(token + "="))[16:]
    ).rstrip(b"=").decode()
    base = anne.rpartition("/")[0]
    other_key = one_click.make_token(secrets.token_bytes(32), "news.example.org",
                                     _uuid(bytes(raw[:16]).hex()))
    return {
        "wrong token": (f"{base}/{secrets.token_urlsafe(32)[:43]}", "POST", good, form),
        "truncated token": (f"{base}/{token[:-1]}", "POST", good, form),
        "altered token": (f"{base}/{altered}", "POST", good, form),
        "member id swapped": (f"{base}/{swapped}", "POST", good, form),
        "another list's path": (anne.replace("/news.example.org/", "/quiet.example.org/"),
                                "POST", good, form),
        "signed with another key": (f"{base}/{other_key}", "POST", good, form),
        "malformed body": (anne, "POST", b"List-Unsubscribe=One-Click-Now", form),
        "extra field": (anne, "POST", good + b"&member=bert", form),
        "body over the limit": (anne, "POST", good + b"&x=" + b"y" * 2000, form),
        "not a form": (anne, "POST", good, "text/plain"),
        "other method": (anne, "DELETE", None, form),
    }


def test_forged_or_broken_requests_change_nothing(first_post: dict[str, Any],
                                                  oc: OneClickSite) -> None:
    anne = link_of(first_post[MEMBERS[0]]).removeprefix(f"https://{HOST}")
    cleo = link_of(first_post[MEMBERS[2]]).removeprefix(f"https://{HOST}")
    before = {lid: oc.members(lid) for lid in ("news.example.org", "quiet.example.org")}
    not_found = set()
    for kind, (path, method, body, content_type) in _forgeries(anne, cleo, oc.key).items():
        status, page = oc.request(oc.endpoint + path, method, body, content_type)
        assert 400 <= status < 500, (kind, status)
        if status == 404:
            not_found.add(page)
        assert {lid: oc.members(lid) for lid in before} == before, kind
    # Every refused link gets the same page: nothing tells a valid member from a guess.
    assert len(not_found) == 1
    # Cleo's link, still valid, answers like Anne's would: gone or not, the same 200.
    status, _ = oc.request(oc.endpoint + cleo, "POST", one_click.POST_HEADER_VALUE.encode())
    assert status == 200


# --- other mail ------------------------------------------------------------------------------

def test_a_list_with_the_switch_off_gets_mailmans_stock_header(oc: OneClickSite) -> None:
    (copy_,) = oc.post("quiet@example.org", count=1)
    assert sorted(copy_["to"]) == sorted(MEMBERS)  # core's bulk delivery: one copy for all
    message = email.message_from_string(copy_["data"])
    assert message.get_all("List-Unsubscribe") == ["<mailto:quiet-leave@example.org>"]
    assert message["List-Unsubscribe-Post"] is None


def test_a_list_without_list_headers_gets_no_link(oc: OneClickSite) -> None:
    """include_rfc2369_headers off: core writes no List-* headers (rfc_2369.py:42-43), nor do we."""
    (copy_,) = oc.post("bare@example.org", count=1)
    message = email.message_from_string(copy_["data"])
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


def test_a_personalized_list_gets_full_personalization_and_the_links(oc: OneClickSite) -> None:
    copies = oc.post("personal@example.org")
    ids = oc.members("personal.example.org")
    for copy_ in copies:
        (recipient,) = copy_["to"]
        message = email.message_from_string(copy_["data"])
        assert message["To"] == recipient  # core's To: personalization (personalized.py)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        path = link_of(message).removeprefix(f"https://{HOST}")
        assert one_click.verify(oc.key, path) == ("personal.example.org",
                                                  _uuid(ids[recipient]))


def test_owner_and_moderator_mail_gets_no_link(oc: OneClickSite) -> None:
    # Mail to the owner address (forwarded to the owner), a non-member's post held for
    # moderation (core's notice to the list's -owner address) and core's notice to the sender:
    # none is a list post.
    (owner_copy,) = oc.post("news-owner@example.org", count=1)
    assert owner_copy["to"] == [OWNER]
    (held_notice,) = oc.post("news@example.org", sender="stranger@example.net", count=1,
                             to="news-owner@example.org")
    (sender_notice,) = oc.post("news@example.org", sender="stranger@example.net", count=1,
                               to="stranger@example.net")
    for copy_ in (owner_copy, held_notice, sender_notice):
        message = email.message_from_string(copy_["data"])
        assert message["List-Unsubscribe-Post"] is None
        assert BASE_URL not in copy_["data"]


def test_an_approved_held_post_gets_the_links(oc: OneClickSite) -> None:
    """Core keeps a held post's metadata (to_list) when a moderator approves it
    (mailman/app/moderator.py:140-159)."""
    held = oc.site.rest("lists/news.example.org/held")["entries"][0]
    oc.site.rest(f"lists/news.example.org/held/{held['request_id']}", {"action": "accept"})
    (copy_,) = oc.wait(held["subject"], 1, to=MEMBERS[0])
    message = email.message_from_string(copy_["data"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = link_of(message).removeprefix(f"https://{HOST}")
    assert one_click.verify(oc.key, path) == (
        "news.example.org", _uuid(oc.members("news.example.org")[MEMBERS[0]]))


def test_a_digest_carries_the_members_link(oc: OneClickSite) -> None:
    reader = "dora@example.com"
    oc.site.rest("members", {"list_id": "news.example.org", "subscriber": reader,
                             "delivery_mode": "mime_digests", "pre_verified": "true",
                             "pre_confirmed": "true", "pre_approved": "true",
                             "send_welcome_message": "false"})
    oc.post("news@example.org", count=1, to=MEMBERS[0])
    oc.site.rest("lists/news.example.org/digest", {"send": "true"})
    (digest,) = oc.wait("Digest", 1, to=reader)
    message = email.message_from_string(digest["data"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = link_of(message).removeprefix(f"https://{HOST}")
    assert one_click.verify(oc.key, path) == (
        "news.example.org", _uuid(oc.members("news.example.org")[reader]))
