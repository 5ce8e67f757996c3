"""components/mailman.py: the desired-state document (docs/contracts.md section 5)."""

import json

import pulumi
import pytest

from components.mailman import DesiredState, SocialApp

LISTS = [
    {
        "address": "announce@example.org",
        "absent": False,
        "style": "legacy-announce",
        "owners": ["postmaster@example.org"],
        "moderators": [],
        "settings": {"display_name": "Announcements"},
    },
    {"address": "old@example.org", "absent": True},
]


@pytest.fixture
def document() -> pulumi.Output[str]:
    return DesiredState(
        hostname="lists.example.org",
        mail_domains=["example.org"],
        admin_user="admin",
        admin_email="postmaster@example.org",
        admin_password=pulumi.Output.secret("pw"),
        lists=LISTS,
        social_apps=[SocialApp("github", "GitHub", "client-1", pulumi.Output.secret("gh"))],
    ).document()


@pulumi.runtime.test
def test_document_has_exactly_the_contract_fields(document):
    def check(text: str) -> None:
        assert json.loads(text) == {
            "version": 1,
            "site": {"domain": "lists.example.org", "name": "lists.example.org"},
            "superuser": {"username": "admin", "email": "postmaster@example.org", "password": "pw"},
            "mailDomains": ["example.org"],
            "webHost": "lists.example.org",
            "lists": LISTS,
            "socialApps": [
                {"provider": "github", "name": "GitHub", "clientId": "client-1", "secret": "gh"}
            ],
        }

    return document.apply(check)


@pulumi.runtime.test
def test_document_is_secret_even_if_the_password_is_not(document):
    plain = DesiredState(
        hostname="lists.example.org",
        mail_domains=["example.org"],
        admin_user="admin",
        admin_email="postmaster@example.org",
        admin_password="not-marked",
        lists=[],
    ).document()

    def check(secret: bool) -> None:
        assert secret

    return pulumi.Output.from_input(plain.is_secret()).apply(check)


def test_readable_yaml_puts_one_setting_per_line():
    text = DesiredState("h", [], "admin", "a@b", "pw", LISTS[:1]).lists_yaml()

    assert text.startswith("lists:\n- address: announce@example.org\n")
    assert "    display_name: Announcements\n" in text
    assert "{" not in text
