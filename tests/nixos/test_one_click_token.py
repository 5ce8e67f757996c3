"""nixos/mailman_one_click.py's pure parts: the signed link and the RFC 8058 body check.

End to end (real core, the delivery, the endpoint as a service) in
tests/reconcile/test_one_click.py; these pin the edge cases of the token and the body.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from uuid import uuid4

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nixos"))
import mailman_one_click as one_click

KEY = b"k" * 40
BASE = "https://lists.example.org/one-click"


def path_of(url: str) -> str:
    return url.removeprefix("https://lists.example.org")


def test_a_link_verifies_for_its_list_and_member_only():
    member = uuid4()
    path = path_of(one_click.unsubscribe_url(BASE, KEY, "news.example.org", member))
    assert path.startswith("/one-click/news.example.org/")
    assert one_click.verify(KEY, path) == ("news.example.org", member)
    assert one_click.verify(b"x" * 40, path) is None  # another key: rotation kills old links
    assert one_click.verify(KEY, path.replace("news.", "dev.")) is None


def test_a_token_has_one_spelling():
    """43 base64url characters hold 258 bits: a different last character that decodes to the
    same bytes must not be a second valid token."""
    path = path_of(one_click.unsubscribe_url(BASE, KEY, "news.example.org", uuid4()))
    prefix, token = path.rsplit("/", 1)
    raw = base64.urlsafe_b64decode(token + "=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twins = [token[:-1] + c for c in alphabet
             if c != token[-1] and base64.urlsafe_b64decode(token[:-1] + c + "=") == raw]
    assert twins  # base64 decoders accept them ...
    for twin in twins:
        assert one_click.verify(KEY, f"{prefix}/{twin}") is None  # ... we do not


@pytest.mark.parametrize("path", [
    "/one-click/news.example.org/",
    "/one-click/news.example.org/short",
    "/one-click/news.example.org/" + "A" * 44,
    "/one-click//" + "A" * 43,
    "/other/news.example.org/" + "A" * 43,
    "/one-click/news.example.org/" + "A" * 42 + "=",
    "/one-click/News.Example.org/" + "A" * 43,
    "/one-click/news.example.org/" + "A" * 43 + "/more",
])
def test_malformed_paths_are_refused(path):
    assert one_click.verify(KEY, path) is None


@pytest.mark.parametrize(("content_type", "body", "ok"), [
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click", True),
    ("application/x-www-form-urlencoded; charset=utf-8", b"List-Unsubscribe=One-Click", True),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&a=b", False),
    ("application/x-www-form-urlencoded", b"List-Unsubscribe=one-click", False),
    ("application/x-www-form-urlencoded", b"", False),
    ("application/x-www-form-urlencoded", b"\xff", False),
    ("text/plain", b"List-Unsubscribe=One-Click", False),
    ("", b"List-Unsubscribe=One-Click", False),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
     b"One-Click\r\n--x--\r\n", True),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
     b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\n1\r\n--x--\r\n', False),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="Other"\r\n\r\nOne-Click\r\n--x--\r\n', False),
])
def test_only_the_rfc_8058_body_is_accepted(content_type, body, ok):
    assert one_click.is_one_click_body(content_type, body) is ok


def test_a_short_or_missing_key_is_refused(tmp_path):
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(one_click.KeyFileError, match="shorter than 32"):
        one_click.read_key(tmp_path / "short")
    with pytest.raises(one_click.KeyFileError, match="unreadable"):
        one_click.read_key(tmp_path / "missing")


def test_switches_round_trip():
    text = one_click.switches_text(["b@example.org", "a@example.org"])
    assert one_click.switched_off(text, "a@example.org")
    assert not one_click.switched_off(text, "c@example.org")
