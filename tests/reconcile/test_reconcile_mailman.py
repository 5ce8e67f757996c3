"""The shipped reconcile program against a real Mailman 3 core + mailman-web.

One site per module; the fixtures below drive it through the life of a deployment in order
(empty site -> same input again -> edited input -> killed mid-run and re-run) and keep what
each step saw, so every test checks one behaviour of one step. Tests that read the live site
come in the order of the steps (a test asking for a later step's fixture runs that step).
"""

from __future__ import annotations

import copy
import json
import re
import smtplib
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from mailman_fixture import Browser, MailmanSite, dump_database, snapshot

pytestmark = pytest.mark.mailman

PASSWORD_A = "first-Password-4711"
PASSWORD_B = "second-Password-0815"
GITHUB_SECRET_A = "github-secret-aaaa"
GITHUB_SECRET_B = "github-secret-bbbb"
GITHUB_CLIENT_ID = "github-client-id-1234"

ANNOUNCE = {
    "address": "announce@example.org", "absent": False, "style": "legacy-announce",
    "owners": ["postmaster@example.org"], "moderators": [],
    "settings": {"display_name": "Announcements", "description": "Release announcements.",
                 "subscription_policy": "confirm", "archive_policy": "public",
                 "dmarc_mitigate_action": "munge_from", "max_message_size": 200},
}
DEV = {
    "address": "dev@example.org", "absent": False, "style": "legacy-default",
    "owners": ["alice@example.org", "bob@example.org"], "moderators": ["mod@example.org"],
    "settings": {"archive_policy": "public", "default_nonmember_action": "accept",
                 "send_welcome_message": False, "advertised": True},
}
OLD = {
    "address": "old@lists.example.org", "absent": False, "owners": ["postmaster@example.org"],
    "moderators": [], "settings": {"description": "To be retired."},
}
STATE_A: dict[str, Any] = {
    "version": 1,
    "site": {"domain": "lists.example.org", "name": "lists.example.org"},
    "superuser": {"username": "admin", "email": "postmaster@example.org",
                  "password": PASSWORD_A},
    "mailDomains": ["example.org", "lists.example.org"],
    "webHost": "lists.example.org",
    "lists": [ANNOUNCE, DEV, OLD],
    "socialApps": [{"provider": "github", "name": "GitHub", "clientId": GITHUB_CLIENT_ID,
                    "secret": GITHUB_SECRET_A}],
}


def edited_state() -> dict[str, Any]:
    """STATE_A with one edit of each kind."""
    state = copy.deepcopy(STATE_A)
    state["superuser"]["password"] = PASSWORD_B
    state["socialApps"][0]["secret"] = GITHUB_SECRET_B
    announce, dev, _old = state["lists"]
    announce["settings"]["subscription_policy"] = "moderate"
    dev["owners"] = ["alice@example.org", "carol@example.org"]  # bob out, carol in
    dev["moderators"] = []
    state["lists"] = [
        announce, dev,
        {"address": "old@lists.example.org", "absent": True},
        {"address": "new@example.org", "absent": False, "owners": ["alice@example.org"],
         "moderators": ["mod@example.org"], "settings": {"display_name": "New"}},
    ]
    return state


def bulk_state(count: int) -> dict[str, Any]:
    state = edited_state()
    state["lists"] += [
        {"address": f"bulk{i:03d}@example.org", "absent": False,
         "owners": [f"owner{i}@example.org", "postmaster@example.org"], "moderators": [],
         "settings": {"description": f"Bulk list {i}", "subscription_policy": "moderate"}}
        for i in range(count)]
    return state


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    lists: dict[str, dict[str, Any]]
    rest_statuses: list[int] = field(default_factory=list)  # core's answers, if recorded

    def summary(self) -> dict[str, dict[str, int]]:
        """`lists: 2 created, 0 updated, ...` lines as {"lists": {"created": 2, ...}}."""
        counts: dict[str, dict[str, int]] = {}
        for line in self.stdout.splitlines():
            kind, _, rest = line.partition(": ")
            numbers = re.findall(r"(\d+) (created|updated|unchanged|deleted)", rest)
            if numbers:
                counts[kind] = {word: int(n) for n, word in numbers}
        return counts

    def changes(self) -> int:
        return sum(c.get("created", 0) + c.get("updated", 0) + c.get("deleted", 0)
                   for c in self.summary().values())


def run(site: MailmanSite, state: dict[str, Any]) -> Run:
    done = site.run_reconcile(state)
    return Run(done.returncode, done.stdout, done.stderr, snapshot(site))


@pytest.fixture(scope="module")
def first_run(mailman_site: MailmanSite) -> Run:
    log = mailman_site.var_dir / "logs" / "mailman.log"
    start = log.stat().st_size
    result = run(mailman_site, STATE_A)
    with log.open() as lines:
        lines.seek(start)
        # mailmanclient's user agent tells the program's requests from the test's own.
        result.rest_statuses = [
            int(found[1]) for line in lines if "GNU Mailman REST client" in line
            and (found := re.search(r'HTTP/1\.1" (\d{3}) ', line))]
    return result


@dataclass
class Rerun:
    run: Run
    web_before: list[str]
    web_after: list[str]
    core_before: list[str]
    core_after: list[str]


@pytest.fixture(scope="module")
def second_run(mailman_site: MailmanSite, first_run: Run) -> Rerun:
    web_before, core_before = (dump_database(mailman_site.web_db),
                               dump_database(mailman_site.core_db))
    again = run(mailman_site, STATE_A)
    return Rerun(again, web_before, dump_database(mailman_site.web_db), core_before,
                 dump_database(mailman_site.core_db))


@pytest.fixture(scope="module")
def edited_run(mailman_site: MailmanSite, second_run: Rerun) -> Run:
    # A member who joined through the web UI: the file never mentions members.
    mailman_site.rest("members", {"list_id": "dev.example.org", "subscriber": "reader@example.net",
                                  "pre_verified": "true", "pre_confirmed": "true",
                                  "pre_approved": "true"})
    return run(mailman_site, edited_state())


@dataclass
class KilledRun:
    killed_after_lists: int
    rerun: Run
    final: Run


@pytest.fixture(scope="module")
def killed_run(mailman_site: MailmanSite, edited_run: Run) -> KilledRun:
    state = bulk_state(40)
    created = mailman_site.kill_reconcile_after(state, 3, timeout=60)
    assert 0 < created < 40, f"the kill did not land mid-run ({created} lists created)"
    return KilledRun(created, run(mailman_site, state), run(mailman_site, state))


# --- empty site ---------------------------------------------------------------------------


def test_first_run_creates_everything_and_asks_for_a_web_restart(first_run: Run):
    assert first_run.returncode == 10, first_run.stderr
    assert first_run.summary() == {
        "superuser": {"created": 1, "updated": 0, "unchanged": 0},
        "site": {"created": 0, "updated": 1, "unchanged": 0},
        "domains": {"created": 2, "updated": 0, "unchanged": 0},
        "lists": {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0},
        "social apps": {"created": 1, "updated": 0, "unchanged": 0},
    }
    assert "restart needed" in first_run.stdout


def test_first_run_makes_no_request_that_core_refuses(first_run: Run):
    assert first_run.rest_statuses, "no REST requests logged"
    assert [s for s in first_run.rest_statuses if s >= 400] == []


def test_first_run_needs_no_per_list_lookups(first_run: Run):
    # Reads are site-wide (lists, owners, moderators, domains, configuration: 10 requests,
    # plus 3 for the map deferral: core's MTA class and its var_dir); each new list then costs
    # one create, one settings PATCH and one request per role.
    per_list = sum(2 + len(e["owners"]) + len(e["moderators"]) for e in (ANNOUNCE, DEV, OLD))
    assert len(first_run.rest_statuses) <= 13 + 2 + per_list  # + the 2 domain creations


def test_each_list_has_its_settings_in_mailman_core(first_run: Run):
    for wanted in (ANNOUNCE, DEV, OLD):
        config = first_run.lists[wanted["address"]]["config"]
        assert {k: config[k] for k in wanted["settings"]} == wanted["settings"]


def test_list_style_is_applied_on_creation(first_run: Run):
    # legacy-announce turns list posts off; the legacy-default list keeps them on.
    assert first_run.lists["announce@example.org"]["config"]["allow_list_posts"] is False
    assert first_run.lists["dev@example.org"]["config"]["allow_list_posts"] is True


def test_owners_and_moderators_are_exactly_the_listed_sets(first_run: Run):
    for wanted in (ANNOUNCE, DEV, OLD):
        got = first_run.lists[wanted["address"]]
        assert got["owner"] == sorted(wanted["owners"])
        assert got["moderator"] == sorted(wanted["moderators"])


def test_site_domain_is_the_hostname(mailman_site: MailmanSite, first_run: Run):
    with sqlite3.connect(mailman_site.web_db) as db:
        assert db.execute("SELECT id, domain, name FROM django_site").fetchall() == [
            (1, "lists.example.org", "lists.example.org")]


def test_mail_domains_exist_in_core_and_are_linked_to_the_site(mailman_site: MailmanSite,
                                                               first_run: Run):
    hosts = {d["mail_host"] for d in mailman_site.rest("domains")["entries"]}
    assert hosts == {"example.org", "lists.example.org"}
    with sqlite3.connect(mailman_site.web_db) as db:
        links = db.execute("SELECT mail_domain, site_id FROM django_mailman3_maildomain "
                           "ORDER BY mail_domain").fetchall()
    assert links == [("example.org", 1), ("lists.example.org", 1)]


def test_postfix_maps_route_every_list_to_mailman(mailman_site: MailmanSite, first_run: Run):
    lmtp = (mailman_site.data_dir / "postfix_lmtp").read_text()
    for wanted in (ANNOUNCE, DEV, OLD):
        assert re.search(rf"^{re.escape(wanted['address'])}\s+lmtp:", lmtp, re.MULTILINE)
    assert (mailman_site.data_dir / "postfix_lmtp.db").exists()
    assert "postfix maps: ok" in first_run.stdout


# --- same input again ---------------------------------------------------------------------


def test_rerun_with_same_input_reports_no_change(second_run: Rerun):
    assert second_run.run.returncode == 0, second_run.run.stderr
    assert second_run.run.changes() == 0
    assert second_run.run.summary()["lists"]["unchanged"] == 3


def test_rerun_with_same_input_leaves_web_database_identical(second_run: Rerun):
    assert second_run.web_after == second_run.web_before


def test_rerun_with_same_input_leaves_core_database_identical(second_run: Rerun):
    assert second_run.core_after == second_run.core_before


# --- edited input -------------------------------------------------------------------------


def test_edit_reports_only_the_edits(edited_run: Run):
    assert edited_run.returncode == 0, edited_run.stderr
    assert edited_run.summary() == {
        "superuser": {"created": 0, "updated": 1, "unchanged": 0},
        "site": {"created": 0, "updated": 0, "unchanged": 1},
        "domains": {"created": 0, "updated": 0, "unchanged": 2},
        "lists": {"created": 1, "updated": 2, "unchanged": 0, "deleted": 1},
        "social apps": {"created": 0, "updated": 1, "unchanged": 0},
    }


def test_edited_setting_is_changed_and_others_kept(first_run: Run, edited_run: Run):
    before = first_run.lists["announce@example.org"]["config"]
    after = edited_run.lists["announce@example.org"]["config"]
    assert after["subscription_policy"] == "moderate"
    changed = {k for k in before if before[k] != after[k] and k != "http_etag"}
    assert changed == {"subscription_policy"}


def test_owners_and_moderators_follow_the_edit(edited_run: Run):
    dev = edited_run.lists["dev@example.org"]
    assert dev["owner"] == ["alice@example.org", "carol@example.org"]
    assert dev["moderator"] == []


def test_members_are_never_touched(edited_run: Run):
    assert edited_run.lists["dev@example.org"]["member"] == ["reader@example.net"]


def test_absent_list_is_deleted_and_new_list_created(edited_run: Run):
    assert "old@lists.example.org" not in edited_run.lists
    assert edited_run.lists["new@example.org"]["owner"] == ["alice@example.org"]
    assert edited_run.lists["new@example.org"]["moderator"] == ["mod@example.org"]


def test_social_app_is_updated_and_bound_to_the_site(mailman_site: MailmanSite,
                                                     edited_run: Run):
    with sqlite3.connect(mailman_site.web_db) as db:
        apps = db.execute("SELECT id, provider, name, client_id, secret "
                          "FROM socialaccount_socialapp").fetchall()
        sites = db.execute("SELECT socialapp_id, site_id "
                           "FROM socialaccount_socialapp_sites").fetchall()
    assert [a[1:] for a in apps] == [("github", "GitHub", GITHUB_CLIENT_ID, GITHUB_SECRET_B)]
    assert sites == [(apps[0][0], 1)]


def test_superuser_stays_one_user(mailman_site: MailmanSite, edited_run: Run):
    with sqlite3.connect(mailman_site.web_db) as db:
        users = db.execute("SELECT username, email, is_superuser, is_staff "
                           "FROM auth_user").fetchall()
        addresses = db.execute("SELECT email, verified, \"primary\" "
                               "FROM account_emailaddress").fetchall()
    assert users == [("admin", "postmaster@example.org", 1, 1)]
    assert addresses == [("postmaster@example.org", 1, 1)]


def test_output_contains_no_secret(first_run: Run, edited_run: Run):
    for output in (first_run.stdout + first_run.stderr, edited_run.stdout + edited_run.stderr):
        for secret in (PASSWORD_A, PASSWORD_B, GITHUB_SECRET_A, GITHUB_SECRET_B,
                       GITHUB_CLIENT_ID):
            assert secret not in output


# --- killed mid-run -----------------------------------------------------------------------


def test_rerun_after_a_kill_converges(killed_run: KilledRun):
    assert killed_run.rerun.returncode == 0, killed_run.rerun.stderr
    bulk = {a: got for a, got in killed_run.rerun.lists.items() if a.startswith("bulk")}
    assert len(bulk) == 40
    for address, got in bulk.items():
        number = int(address[4:7])
        assert got["owner"] == sorted([f"owner{number}@example.org", "postmaster@example.org"])
        assert got["config"]["subscription_policy"] == "moderate"
        assert got["config"]["description"] == f"Bulk list {number}"


def test_run_after_convergence_changes_nothing(killed_run: KilledRun):
    assert killed_run.final.returncode == 0, killed_run.final.stderr
    assert killed_run.final.changes() == 0


# --- the site works -----------------------------------------------------------------------


def admin_login(site: MailmanSite, password: str) -> str:
    url, _page = Browser(site.web_url).post_form(
        "/admin/login/?next=/admin/",
        {"username": "admin", "password": password, "next": "/admin/"})
    return urllib.parse.urlparse(url).path


def test_superuser_logs_in_to_django_admin_with_the_current_password(
        mailman_site: MailmanSite, killed_run: KilledRun):
    assert admin_login(mailman_site, PASSWORD_B) == "/admin/"


def test_old_superuser_password_no_longer_logs_in(mailman_site: MailmanSite,
                                                  killed_run: KilledRun):
    assert admin_login(mailman_site, PASSWORD_A) == "/admin/login/"


def postorius_browser(site: MailmanSite) -> Browser:
    browser = Browser(site.web_url)
    url, _page = browser.post_form("/accounts/login/",
                                   {"login": "admin", "password": PASSWORD_B})
    # Without a verified primary address allauth sends the user to confirm-email instead.
    assert "confirm-email" not in url and "/accounts/login/" not in url, url
    return browser


def test_superuser_logs_in_to_postorius_and_sees_the_domains(mailman_site: MailmanSite,
                                                             killed_run: KilledRun):
    _url, page = postorius_browser(mailman_site).get("/postorius/domains/")
    assert "example.org" in page
    assert "lists.example.org" in page


def test_message_through_lmtp_lands_in_the_hyperkitty_archive(mailman_site: MailmanSite,
                                                              killed_run: KilledRun):
    message = EmailMessage()
    message["From"] = "someone@example.net"
    message["To"] = "dev@example.org"
    message["Subject"] = "Archive wiring check"
    message["Message-ID"] = "<archive-wiring-check@example.net>"
    message.set_content("Proves domain, list and archiver wiring end to end.")
    with smtplib.LMTP("127.0.0.1", mailman_site.lmtp_port) as lmtp:
        lmtp.send_message(message)
    api = f"{mailman_site.web_url}/archives/api/list/dev@example.org/emails/"
    deadline = time.monotonic() + 90
    subjects: list[str] = []
    while time.monotonic() < deadline:
        try:
            body = json.loads(mailman_site.http(api))
            entries = body["results"] if isinstance(body, dict) else body
            subjects = [entry["subject"] for entry in entries]
        except (urllib.error.HTTPError, KeyError, json.JSONDecodeError):
            subjects = []
        if "[Dev] Archive wiring check" in subjects:
            break
        time.sleep(0.5)
    # The list's subject prefix proves the message went through the list's pipeline.
    assert "[Dev] Archive wiring check" in subjects, mailman_site.log_tail(
        "var/logs/mailman.log")


def test_wrong_rest_password_exits_2_naming_the_settings(mailman_site: MailmanSite,
                                                         killed_run: KilledRun):
    mailman_site.write_settings_variant("settings_badauth", """
        MAILMAN_REST_API_PASS = "not-the-password"
        """)
    done = mailman_site.run_reconcile(STATE_A, settings_module="settings_badauth")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"mailman-reconcile: Mailman core at {mailman_site.rest_url} rejected the REST "
        "credentials (MAILMAN_REST_API_USER/MAILMAN_REST_API_PASS in mailman-web's settings)")


def test_missing_postfix_map_exits_3_naming_the_fix(mailman_site: MailmanSite,
                                                    killed_run: KilledRun):
    # Last test of the module: it breaks the site's maps on purpose.
    lmtp_map = mailman_site.data_dir / "postfix_lmtp"
    lmtp_map.unlink()
    done = mailman_site.run_reconcile(bulk_state(40))
    assert done.returncode == 3
    assert done.stderr.strip() == (
        f"mailman-reconcile: Postfix map {lmtp_map} is missing: run `mailman aliases` as the "
        "mailman user (or restart mailman.service, which regenerates the maps)")
