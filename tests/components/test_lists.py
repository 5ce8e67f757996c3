"""lists.yaml: the normalized form the reconcile reads, and errors naming file, list and field."""

import sys
from pathlib import Path

import pytest

from components import lists
from components.lists import ListsError, load_lists, parse_lists
from components.mailman import DesiredState

REPO = Path(__file__).resolve().parents[2]
DOMAINS = ("example.org", "lists.example.org")
SITE_OWNER = "postmaster@example.org"


def _parse(text: str):
    return parse_lists(text, "lists.yaml", DOMAINS, SITE_OWNER)


def test_shipped_lists_file_is_valid_for_the_quick_start_domain():
    lists = load_lists(REPO / "lists.yaml", ("lists.example.org",), SITE_OWNER)
    assert [entry["address"] for entry in lists] == [
        "announce@lists.example.org",
        "discuss@lists.example.org",
    ]
    assert [entry["style"] for entry in lists] == ["legacy-announce", "legacy-default"]
    assert all(entry["settings"]["description"] for entry in lists)
    assert all(entry["owners"] == [SITE_OWNER] for entry in lists)


def test_shipped_lists_file_is_valid_for_any_other_site_unchanged():
    lists = load_lists(REPO / "lists.yaml", ("example.net", "lists.example.net"), "Ops@Example.net")
    assert [entry["address"] for entry in lists] == [
        "announce@example.net",
        "discuss@example.net",
    ]
    assert all(entry["owners"] == ["ops@example.net"] for entry in lists)


def test_a_list_name_without_domain_lives_in_the_first_mail_domain():
    (entry,) = _parse("lists:\n  - address: News\n    owners: [o@example.org]\n")
    assert entry["address"] == "news@example.org"


def test_a_full_address_may_name_any_of_the_mail_domains():
    (entry,) = _parse("lists:\n  - address: news@lists.example.org\n    owners: [o@example.org]\n")
    assert entry["address"] == "news@lists.example.org"


def test_a_list_name_and_its_full_address_are_the_same_list():
    with pytest.raises(ListsError) as error:
        _parse("lists:\n  - {address: news}\n  - {address: news@example.org}\n")
    assert str(error.value) == (
        "lists.yaml: list news@example.org: address: is not unique in the file"
    )


def test_a_list_without_owners_is_owned_by_the_site_owner():
    (entry,) = _parse("lists:\n  - address: news\n")
    assert entry["owners"] == [SITE_OWNER]


def test_named_owners_replace_the_site_owner():
    (entry,) = _parse("lists:\n  - address: news\n    owners: [b@example.org, a@example.org]\n")
    assert entry["owners"] == ["a@example.org", "b@example.org"]


def test_an_absent_entry_may_use_a_list_name():
    (entry,) = _parse("lists:\n  - address: old\n    absent: true\n")
    assert entry == {"address": "old@example.org", "absent": True}


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "dev-announce",
        "python.org_users",
        "x" * 64,
        "owners",
        "requests-team",
        "join-us",
        "news-bounce",
    ],
)
def test_list_names_mailman_accepts(name):
    (entry,) = _parse(f"lists:\n  - address: {name}\n")
    assert entry["address"] == f"{name}@example.org"


@pytest.mark.parametrize(
    "name",
    ["", "news+tag", "news letter", "-news", ".news", "news.", "a..b", "nëws", "x" * 65, "a/b"],
)
def test_list_names_mailman_refuses_are_errors(name):
    with pytest.raises(ListsError) as error:
        _parse(f"lists:\n  - address: '{name}'\n")
    message = f"lists.yaml: list {name}: address: {name!r} is not a list name of at most 64"
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "name",
    [
        "news-owner",
        "news-request",
        "news-bounces",
        "news-admin",
        "news-confirm",
        "news-join",
        "news-leave",
        "news-subscribe",
        "news-unsubscribe",
        "owner",
        "request",
        "News-Request@example.org",
    ],
)
def test_list_names_that_mailman_routes_as_a_sub_address_are_errors(name):
    with pytest.raises(ListsError) as error:
        _parse(f"lists:\n  - address: {name}\n")
    assert str(error.value) == (
        f"lists.yaml: list {name}: address: {name!r} is not a list name whose last -part is "
        "not a Mailman sub-address (admin, bounces, confirm, join, leave, owner, request, "
        "subscribe, unsubscribe)"
    )


def test_normalized_form_has_only_the_settings_the_file_mentions_and_the_dmarc_default():
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
        "one_click_unsubscribe": True,
        "settings": {
            "display_name": "News",
            "dmarc_mitigate_action": "munge_from",
            "max_message_size": 200,
            "subscription_policy": "moderate",
        },
    }


def test_style_defaults_to_legacy_default():
    (entry,) = _parse("lists:\n  - address: a\n")
    assert entry["style"] == "legacy-default"
    assert entry["settings"] == {"dmarc_mitigate_action": "munge_from"}


def test_one_click_unsubscribe_is_on_unless_the_entry_turns_it_off():
    on, off = _parse(
        "lists:\n  - address: a\n  - address: b\n    one_click_unsubscribe: false\n"
    )
    assert (on["one_click_unsubscribe"], off["one_click_unsubscribe"]) == (True, False)
    # A host setting, not Mailman's: never among the settings sent to core.
    assert "one_click_unsubscribe" not in off["settings"]


def test_one_click_unsubscribe_must_be_a_boolean():
    with pytest.raises(ListsError) as error:
        _parse("lists:\n  - address: a\n    one_click_unsubscribe: 'no'\n")
    assert str(error.value) == (
        "lists.yaml: list a@example.org: one_click_unsubscribe: 'no' is not true or false"
    )


def test_preview_shows_the_one_click_switch():
    (entry,) = _parse("lists:\n  - address: a\n    one_click_unsubscribe: false\n")
    state = DesiredState(hostname="lists.example.org", mail_domains=["example.org"],
                         admin_user="admin", admin_email="a@example.org",
                         admin_password="x", lists=[entry])
    assert "  one_click_unsubscribe: false\n" in state.lists_yaml()


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
            "(at least one; leave the key out for mailman:adminEmail)",
        ),
        (
            "lists:\n  - address: a\n    owners:\n",
            "lists.yaml: list a@example.org: owners: None is not a list of e-mail addresses "
            "(at least one",
        ),
        (
            "lists:\n  - address: a@other.net\n",
            "lists.yaml: list a@other.net: address: 'a@other.net' is not in one of mailDomains "
            "(example.org, lists.example.org)",
        ),
        (
            "lists:\n  - address: a@b@example.org\n",
            "lists.yaml: list a@b@example.org: address: 'a@b@example.org' is not a list name or "
            "address (name or name@domain)",
        ),
        (
            "lists:\n  - address: 42\n",
            "lists.yaml: list #1: address: 42 is not a list name or address",
        ),
        (
            "lists:\n  - address: news\n    colour: blue\n",
            "lists.yaml: list news@example.org: colour: 'blue' is not a known list setting",
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


def test_the_contract_example_is_a_valid_lists_file():
    contract = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = contract.split("## 6.", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    lists = parse_lists(example, "contracts.md", ("example.org",), SITE_OWNER)
    assert [(entry["address"], entry["absent"]) for entry in lists] == [
        ("announce@example.org", False),
        ("old@example.org", True),
    ]


# --- what Mailman core refuses, refused at preview (rules: nixos/mailman_list_rules.py) ---------


def _error(text: str) -> str:
    with pytest.raises(ListsError) as caught:
        _parse(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("owners", "a|b@example.org"),
        ("owners", "x@exa..mple.org"),
        ("moderators", "y@-bad.example.org"),
        ("moderators", "local-only"),
    ],
)
def test_addresses_outside_mailmans_rules_are_errors(field, value):
    message = _error(f"lists:\n  - address: news\n    {field}: ['{value}']\n")
    assert message.startswith(f"lists.yaml: list news@example.org: {field}: '{value}' is not ")
    assert "an e-mail address Mailman accepts" in message


@pytest.mark.parametrize("field", ["owners", "moderators"])
def test_a_role_equal_to_the_lists_own_address_is_an_error(field):
    message = _error(f"lists:\n  - address: news\n    {field}: [News@Example.org]\n")
    assert message == (
        f"lists.yaml: list news@example.org: {field}: 'News@Example.org' is not an address "
        "other than the list's own (news@example.org)"
    )


def test_a_site_owner_equal_to_the_lists_address_is_an_error():
    with pytest.raises(ListsError, match=r"list news@example\.org: owners: .* the list's own"):
        parse_lists("lists:\n  - address: news\n", "lists.yaml", DOMAINS, "news@example.org")


def test_a_folded_description_loses_its_trailing_newline():
    (entry,) = _parse("lists:\n  - address: news\n    description: >\n      One\n      line.\n")
    assert entry["settings"]["description"] == "One line."


def test_a_description_with_a_newline_inside_is_an_error():
    message = _error("lists:\n  - address: news\n    description: |\n      One\n      two\n")
    assert message.startswith("lists.yaml: list news@example.org: description: ")
    assert "is not a single line (Mailman refuses a newline in it)" in message


def test_a_malformed_language_code_is_an_error():
    # Which codes exist is core's configuration: the reconcile asks core before any write.
    message = _error("lists:\n  - address: news\n    preferred_language: English\n")
    assert "preferred_language: 'English' is not a language code" in message


def test_preview_and_reconcile_share_one_definition_of_the_rules():
    # components/lists.py puts nixos/ on the path and imports the module the host program
    # imports from its own directory.
    assert Path(lists.rules.__file__).resolve() == REPO / "nixos" / "mailman_list_rules.py"
    assert sys.modules["mailman_list_rules"] is lists.rules


def test_a_list_that_does_not_name_dmarc_mitigation_munges_from():
    (entry,) = _parse("lists:\n  - address: team\n")
    assert entry["settings"] == {"dmarc_mitigate_action": "munge_from"}


@pytest.mark.parametrize("action", ["no_mitigation", "wrap_message", "reject"])
def test_a_list_that_names_dmarc_mitigation_keeps_it(action):
    (entry,) = _parse(f"lists:\n  - address: team\n    dmarc_mitigate_action: {action}\n")
    assert entry["settings"]["dmarc_mitigate_action"] == action
