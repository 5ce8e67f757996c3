"""lists.yaml: the normalized form the reconcile reads, and errors naming file, list and field."""

from pathlib import Path

import pytest

from components.lists import ListsError, load_lists, parse_lists

REPO = Path(__file__).resolve().parents[2]
DOMAINS = ("example.org", "lists.example.org")


def _parse(text: str):
    return parse_lists(text, "lists.yaml", DOMAINS)


def test_shipped_lists_file_is_valid_for_the_quick_start_domain():
    lists = load_lists(REPO / "lists.yaml", ("lists.example.org",))
    assert [entry["address"] for entry in lists] == [
        "announce@lists.example.org",
        "discuss@lists.example.org",
    ]
    assert all(entry["settings"]["description"] for entry in lists)
    assert all(entry["owners"] for entry in lists)


def test_normalized_form_has_only_the_settings_the_file_mentions():
    (entry,) = _parse(
        "lists:\n"
        "  - address: News@Example.org\n"
        "    style: legacy-announce\n"
        "    display_name: News\n"
        "    owners: [b@example.org, A@example.org]\n"
        "    subscription_policy: moderate\n"
        "    max_message_size: 200\n"
    )
    assert entry == {
        "address": "news@example.org",
        "absent": False,
        "style": "legacy-announce",
        "owners": ["a@example.org", "b@example.org"],
        "moderators": [],
        "settings": {
            "display_name": "News",
            "max_message_size": 200,
            "subscription_policy": "moderate",
        },
    }


def test_style_defaults_to_legacy_default():
    (entry,) = _parse("lists:\n  - address: a@example.org\n    owners: [o@example.org]\n")
    assert entry["style"] == "legacy-default"
    assert entry["settings"] == {}


def test_lists_are_sorted_by_address():
    lists = _parse(
        "lists:\n  - {address: zz@example.org, owners: [o@example.org]}\n"
        "  - {address: aa@example.org, owners: [o@example.org]}\n"
    )
    assert [entry["address"] for entry in lists] == ["aa@example.org", "zz@example.org"]


def test_absent_entry_has_only_address_and_absent():
    (entry,) = _parse("lists:\n  - address: old@example.org\n    absent: true\n")
    assert entry == {"address": "old@example.org", "absent": True}


def test_empty_file_means_no_lists():
    assert _parse("") == ()
    assert _parse("lists: []\n") == ()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "lists:\n  - address: a@example.org\n    owners: []\n",
            "lists.yaml: list a@example.org: owners: [] is not a list of e-mail addresses "
            "(at least one)",
        ),
        (
            "lists:\n  - address: a@example.org\n    owners: [o@example.org]\n    colour: blue\n",
            "lists.yaml: list a@example.org: colour: 'blue' is not a known list setting",
        ),
        (
            "lists:\n  - address: a@other.net\n    owners: [o@example.org]\n",
            "lists.yaml: list a@other.net: address: 'a@other.net' is not in one of mailDomains",
        ),
        (
            "lists:\n  - address: a@example.org\n    owners: [o@example.org]\n"
            "    advertised: 'yes'\n",
            "lists.yaml: list a@example.org: advertised: 'yes' is not true or false",
        ),
        (
            "lists:\n  - address: a@example.org\n    owners: [o@example.org]\n"
            "    max_num_recipients: -1\n",
            "lists.yaml: list a@example.org: max_num_recipients: -1 is not a whole number >= 0",
        ),
        (
            "lists:\n  - address: a@example.org\n    owners: [not-an-address]\n",
            "lists.yaml: list a@example.org: owners: 'not-an-address' is not an e-mail address",
        ),
        (
            "lists:\n  - address: a@example.org\n    owners: [o@example.org]\n    style: fancy\n",
            "lists.yaml: list a@example.org: style: 'fancy' is not one of legacy-default",
        ),
        (
            "lists:\n  - address: a@example.org\n    absent: true\n    owners: [o@example.org]\n",
            "lists.yaml: list a@example.org: owners: ['o@example.org'] is not allowed on an absent",
        ),
        (
            "lists:\n  - {address: a@example.org, owners: [o@example.org]}\n"
            "  - {address: A@example.org, owners: [o@example.org]}\n",
            "lists.yaml: list a@example.org: address: is not unique in the file",
        ),
        (
            "lists:\n  - just-a-string\n",
            "lists.yaml: list #1: entry: 'just-a-string' is not a mapping",
        ),
        (
            "mailing_lists: []\n",
            "lists.yaml: the top level is not a mapping with the one key `lists:`",
        ),
        ("lists: [\n", "lists.yaml: line 2 is not valid YAML"),
        (
            "lists:\n  - address: a@example.org\n    owners: [o@example.org]\n"
            "    preferred_language: English\n",
            "lists.yaml: list a@example.org: preferred_language: 'English' is not a language code",
        ),
    ],
)
def test_schema_errors_name_file_list_and_field(yaml_text, message):
    with pytest.raises(ListsError) as error:
        _parse(yaml_text)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
