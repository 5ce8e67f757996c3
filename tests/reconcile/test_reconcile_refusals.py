"""Values Mailman core refuses are refused before the first write; what core can still refuse
leaves no half-made list; a superuser rename renames. Against a real Mailman 3.3.10 site.

Every refused document also carries an edit of an earlier list and a new list before the bad
one, so a run that wrote anything before it found the bad value would change the databases.
"""

from __future__ import annotations

import copy
import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from mailman_fixture import MailmanSite, dump_database
from test_reconcile_mailman import STATE_A, Browser

pytestmark = pytest.mark.mailman

BANNED = "banned@example.org"


@pytest.fixture(scope="module")
def converged(mailman_site: MailmanSite) -> MailmanSite:
    done = mailman_site.run_reconcile(STATE_A)
    assert done.returncode == 10, done.stderr
    return mailman_site


def with_bad_value(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """STATE_A with an edited first list, a new list, and last a list that `mutate` spoils."""
    state = copy.deepcopy(STATE_A)
    state["lists"][0]["settings"]["subscription_policy"] = "moderate"
    state["lists"].append({"address": "aaa@example.org", "owners": ["alice@example.org"]})
    bad = {"address": "zzz@example.org", "owners": ["alice@example.org"], "moderators": [],
           "settings": {"description": "Fine."}}
    state["lists"].append(bad)
    mutate(bad)
    return state


def _set(path: tuple[str, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        target = entry
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


REFUSED = {
    "description with a newline inside": (
        _set(("settings", "description"), "Line one.\nLine two.\n"),
        "lists[zzz@example.org].settings.description must be a single line"),
    "owner with a pipe": (
        _set(("owners",), ["a|b@example.org"]),
        "lists[zzz@example.org].owners[0] must be an e-mail address Mailman accepts"),
    "owner with an empty domain label": (
        _set(("owners",), ["x@exa..mple.org"]),
        "lists[zzz@example.org].owners[0] must be an e-mail address Mailman accepts"),
    "moderator with a domain label starting with a dash": (
        _set(("moderators",), ["y@-bad.example.org"]),
        "lists[zzz@example.org].moderators[0] must be an e-mail address Mailman accepts"),
    "moderator equal to the list's address": (
        _set(("moderators",), ["zzz@example.org"]),
        "lists[zzz@example.org].moderators[0] must be an address other than the list's own"),
    "owner equal to the list's address": (
        _set(("owners",), ["ZZZ@example.org"]),
        "lists[zzz@example.org].owners[0] must be an address other than the list's own"),
    "language core does not know": (
        _set(("settings", "preferred_language"), "xx"),
        "lists[zzz@example.org].settings.preferred_language must be a language Mailman core "
        "knows"),
    "setting of the wrong type": (
        _set(("settings", "max_message_size"), "big"),
        "lists[zzz@example.org].settings.max_message_size must be a whole number >= 0"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_value_exits_1_naming_list_and_field_and_changes_nothing(
        converged: MailmanSite, case: str):
    mutate, expected = REFUSED[case]
    before = dump_database(converged.web_db), dump_database(converged.core_db)
    done = converged.run_reconcile(with_bad_value(mutate))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"mailman-reconcile: invalid desired state: {expected}"), lines
    assert done.stdout == ""
    assert (dump_database(converged.web_db), dump_database(converged.core_db)) == before


def test_description_from_a_folded_yaml_block_loses_its_trailing_newline(
        converged: MailmanSite):
    state = copy.deepcopy(STATE_A)
    state["lists"][0]["settings"]["description"] = "Folded, as `description: >` gives it.\n"
    done = converged.run_reconcile(state)
    assert done.returncode == 0, done.stderr
    config = converged.rest("lists/announce.example.org/config")
    assert config["description"] == "Folded, as `description: >` gives it."
    again = converged.run_reconcile(state)
    assert again.returncode == 0, again.stderr
    assert "lists: 0 created, 0 updated, 3 unchanged" in again.stdout


def test_known_language_is_accepted(converged: MailmanSite):
    state = copy.deepcopy(STATE_A)
    state["lists"][1]["settings"]["preferred_language"] = "de"
    done = converged.run_reconcile(state)
    assert done.returncode == 0, done.stderr
    assert converged.rest("lists/dev.example.org/config")["preferred_language"] == "de"


def test_list_creation_refused_by_core_leaves_no_half_made_list(converged: MailmanSite):
    # A site-wide ban is one refusal no rule of ours can foresee (app/membership.py:67-68).
    converged.rest("bans", {"email": BANNED})
    state = copy.deepcopy(STATE_A)
    state["lists"].append({"address": "half@example.org", "owners": ["alice@example.org", BANNED],
                           "settings": {"description": "Never half made."}})
    done = converged.run_reconcile(state)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "mailman-reconcile: Mailman core refused POST members (list half.example.org, owner "
        f"{BANNED}): HTTP 400 from core: Membership is banned; the new list half@example.org "
        "was deleted again")
    lists = {e["fqdn_listname"] for e in converged.rest("lists")["entries"]}
    assert "half@example.org" not in lists
    query = urllib.parse.urlencode({"list_id": "half.example.org", "role": "owner"})
    assert converged.rest(f"members/find?{query}").get("entries", []) == []


def _users(site: MailmanSite) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(site.web_db) as db:
        users = db.execute("SELECT id, username, email, is_superuser, is_staff, is_active "
                           "FROM auth_user ORDER BY id").fetchall()
        addresses = db.execute("SELECT user_id, email, verified, \"primary\" "
                               "FROM account_emailaddress ORDER BY id").fetchall()
    return users, addresses


def _logs_in(site: MailmanSite, username: str, password: str) -> bool:
    url, _page = Browser(site.web_url).post_form(
        "/admin/login/?next=/admin/", {"username": username, "password": password,
                                       "next": "/admin/"})
    return urllib.parse.urlparse(url).path == "/admin/"


def test_superuser_rename_renames_the_same_user(converged: MailmanSite):
    (before,), _ = _users(converged)
    state = copy.deepcopy(STATE_A)
    state["superuser"] = {"username": "root", "email": "hostmaster@example.org",
                          "password": "renamed-Password-42"}
    done = converged.run_reconcile(state)
    assert done.returncode == 0, done.stderr
    assert "superuser: 0 created, 1 updated, 0 unchanged" in done.stdout
    users, addresses = _users(converged)
    # The same row: its id (and everything pointing at it) stays; the old name is gone.
    assert users == [(before[0], "root", "hostmaster@example.org", 1, 1, 1)]
    assert addresses == [(before[0], "hostmaster@example.org", 1, 1)]
    assert _logs_in(converged, "root", "renamed-Password-42")
    assert not _logs_in(converged, "admin", STATE_A["superuser"]["password"])
    again = converged.run_reconcile(state)
    assert "superuser: 0 created, 0 updated, 1 unchanged" in again.stdout


def test_rename_with_several_superusers_stops_and_changes_nothing(converged: MailmanSite):
    with sqlite3.connect(converged.web_db) as db:
        db.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, "
                   "last_name, email, is_staff, is_active, date_joined) VALUES "
                   "('!', 1, 'handmade', '', '', 'hand@example.org', 1, 1, "
                   "'2024-01-01 00:00:00')")
    before = dump_database(converged.web_db)
    state = copy.deepcopy(STATE_A)
    state["superuser"]["username"] = "third"
    done = converged.run_reconcile(state)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "mailman-reconcile: superuser.username third does not exist and 2 active superusers "
        "do (root, handmade): rename the one it replaces in the Django admin, or deactivate "
        "the others")
    assert dump_database(converged.web_db) == before
