"""Input validation of nixos/mailman_reconcile.py: pure Python, no Mailman needed.

The program validates the whole document before it imports Django or calls Mailman, so these
run in the project's own virtualenv. (The same checks run end to end in
test_reconcile_failures.py.)
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

PROGRAM = Path(__file__).resolve().parents[2] / "nixos" / "mailman_reconcile.py"
# On the host the shared list rules lie next to the program, as they do in nixos/.
if str(PROGRAM.parent) not in sys.path:
    sys.path.append(str(PROGRAM.parent))
_spec = importlib.util.spec_from_file_location("mailman_reconcile", PROGRAM)
assert _spec and _spec.loader
reconcile = importlib.util.module_from_spec(_spec)
sys.modules["mailman_reconcile"] = reconcile
_spec.loader.exec_module(reconcile)

VALID: dict[str, Any] = {
    "version": 1,
    "site": {"domain": "lists.example.org", "name": "Example lists"},
    "superuser": {"username": "admin", "email": "postmaster@example.org", "password": "pw-1"},
    "mailDomains": ["example.org"],
    "webHost": "lists.example.org",
    "lists": [
        {"address": "Announce@example.org", "absent": False, "style": "legacy-announce",
         "owners": ["Postmaster@Example.org"], "moderators": [],
         "settings": {"archive_policy": "public", "max_message_size": 0,
                      "send_welcome_message": False, "reply_to_address": "x@example.org",
                      "preferred_language": "pt_BR"}},
        {"address": "old@example.org", "absent": True},
    ],
    "socialApps": [{"provider": "github", "name": "GitHub", "clientId": "cid",
                    "secret": "very-secret"}],
}


def error_for(mutate: Any) -> str:
    document = copy.deepcopy(VALID)
    mutate(document)
    with pytest.raises(reconcile.ReconcileError) as caught:
        reconcile.parse_state(json.dumps(document))
    assert caught.value.exit_code == reconcile.EXIT_INVALID_INPUT
    return str(caught.value)


def test_valid_document_is_parsed_with_addresses_lower_cased():
    state = reconcile.parse_state(json.dumps(VALID))
    announce, old = state.lists
    assert announce.address == "announce@example.org"
    assert announce.owners == frozenset({"postmaster@example.org"})
    assert announce.settings["max_message_size"] == 0
    assert old.absent and not old.owners


def test_unknown_setting_is_named_with_its_list():
    def mutate(d):
        d["lists"][0]["settings"]["members"] = ["x@example.org"]
    assert "lists[announce@example.org].settings.members is not a known field" in error_for(
        mutate)


def test_bad_enum_value_names_the_allowed_values():
    def mutate(d):
        d["lists"][0]["settings"]["subscription_policy"] = "sometimes"
    assert ("lists[announce@example.org].settings.subscription_policy must be one of open, "
            "confirm, moderate, confirm_then_moderate") in error_for(mutate)


def test_boolean_setting_rejects_a_string():
    def mutate(d):
        d["lists"][0]["settings"]["advertised"] = "yes"
    assert "settings.advertised must be true or false" in error_for(mutate)


def test_integer_setting_rejects_negative_and_boolean():
    def negative(d):
        d["lists"][0]["settings"]["max_num_recipients"] = -1

    def boolean(d):
        d["lists"][0]["settings"]["max_num_recipients"] = True
    assert "must be a whole number >= 0" in error_for(negative)
    assert "must be a whole number >= 0" in error_for(boolean)


def test_list_needs_an_owner():
    def mutate(d):
        d["lists"][0]["owners"] = []
    assert "lists[announce@example.org].owners must name at least one owner" in error_for(
        mutate)


def test_list_domain_must_be_a_mail_domain():
    def mutate(d):
        d["lists"][0]["address"] = "announce@elsewhere.org"
    assert "domain elsewhere.org is not one of mailDomains" in error_for(mutate)


def test_absent_entry_takes_no_other_fields():
    def mutate(d):
        d["lists"][1]["owners"] = ["a@example.org"]
    assert "lists[old@example.org].owners is not a known field" in error_for(mutate)


def test_duplicate_list_is_rejected():
    def mutate(d):
        d["lists"].append(copy.deepcopy(d["lists"][0]))
    assert "appears more than once" in error_for(mutate)


def test_unknown_style_is_rejected():
    def mutate(d):
        d["lists"][0]["style"] = "fancy"
    assert "style must be one of legacy-default, legacy-announce, private-default" in (
        error_for(mutate))


def test_missing_top_level_field_is_named():
    def mutate(d):
        del d["webHost"]
    assert "document.webHost is required" in error_for(mutate)


def test_secret_values_are_never_echoed():
    def password(d):
        d["superuser"]["password"] = ""

    def secret(d):
        d["socialApps"][0]["secret"] = 12345678
    assert "superuser.password must be a non-empty string" in error_for(password)
    message = error_for(secret)
    assert "socialApps[0].secret must be a non-empty string" in message
    assert "12345678" not in message


def test_version_other_than_1_is_rejected():
    def mutate(d):
        d["version"] = 2
    assert "version must be 1" in error_for(mutate)


def test_summary_line_counts_deletions_only_for_lists():
    tally = reconcile.Tally(created=2, unchanged=1, deleted=1)
    assert tally.line("lists", deletions=True) == (
        "lists: 2 created, 0 updated, 1 unchanged, 1 deleted")
    assert tally.line("domains") == "domains: 2 created, 0 updated, 1 unchanged"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Membership is banned", "HTTP 400 from core: Membership is banned"),
        ('{"title": "500 Internal Server Error"}', "HTTP 400 from core: 500 Internal Server Error"),
        ("<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n"
         "<body><h1>Internal Server Error</h1>\n<p>Traceback...</p></body></html>",
         "HTTP 400 from core: 500 Internal Server Error"),
        ("<html><body>\n<h1>Bad Gateway</h1>\n<p>nginx</p></body></html>",
         "HTTP 400 from core: Bad Gateway"),
        ("first line\n  second line", "HTTP 400 from core: first line second line"),
        ("", "HTTP 400 from core"),
    ],
)
def test_cores_refusal_reads_as_one_line_never_html(body, expected):
    assert reconcile.refusal(400, body) == expected


def test_a_long_refusal_is_cut_short():
    line = reconcile.refusal(500, "x" * 1000)
    assert len(line) < 250
    assert line.endswith("...")


def test_a_role_refused_at_parse_time_names_list_field_and_value():
    def mutate(d):
        d["lists"][0]["moderators"] = ["announce@example.org"]
    assert error_for(mutate) == (
        "invalid desired state: lists[announce@example.org].moderators[0] must be an address "
        "other than the list's own (announce@example.org), not \"announce@example.org\"")


def test_a_description_arrives_without_its_trailing_newline():
    document = copy.deepcopy(VALID)
    document["lists"][0]["settings"]["description"] = "Folded.\n"
    state = reconcile.parse_state(json.dumps(document))
    assert state.lists[0].settings["description"] == "Folded."


def test_one_click_switch_defaults_on_and_is_read_when_given():
    state = reconcile.parse_state(json.dumps(VALID))
    assert state.lists[0].one_click_unsubscribe is True
    document = copy.deepcopy(VALID)
    document["lists"][0]["one_click_unsubscribe"] = False
    assert reconcile.parse_state(json.dumps(document)).lists[0].one_click_unsubscribe is False


def test_one_click_switch_must_be_a_boolean():
    message = error_for(lambda d: d["lists"][0].update(one_click_unsubscribe="off"))
    assert message == ("invalid desired state: lists[announce@example.org].one_click_unsubscribe "
                       'must be true or false, not "off"')
