"""The restore drill: a real site backed up with the host's own program, wiped, and restored.

A real Mailman core + mailman-web on PostgreSQL (the production setup, mailman_fixture.py) gets
lists, members, held messages, archived posts and a superuser through the same paths the host
uses (the reconcile program, REST, LMTP). nixos/mailman_site_backup.py -- the program the
nightly unit and `mailman-site-restore` run on the host -- backs it up with the real restic
into a local repository. Then everything is wiped (servers stopped, both databases dropped, the
site's files, the dumps and restic's cache deleted), the same program restores it, and the
servers start again on what came back. A second backup, killed while restic writes, must leave
the repository with its earlier snapshot intact and restorable.

These tests live beside the reconcile tests because they share the running-site fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from mailman_fixture import (
    BACKUP_PROGRAM,
    Browser,
    Drill,
    MailmanEnv,
    MailmanSite,
    PostgresServer,
    snapshot,
    wipe,
)

pytestmark = pytest.mark.mailman

ADMIN_PASSWORD = "drill-Password-4711"
POSTS = 6
HELD = 2
MEMBERS = ("alice@example.net", "bob@example.net", "carol@example.net")
STATE: dict[str, Any] = {
    "version": 1,
    "site": {"domain": "lists.example.org", "name": "lists.example.org"},
    "superuser": {"username": "admin", "email": "postmaster@example.org",
                  "password": ADMIN_PASSWORD},
    "mailDomains": ["example.org"],
    "webHost": "lists.example.org",
    "lists": [
        {"address": "dev@example.org", "absent": False, "style": "legacy-default",
         "owners": ["postmaster@example.org"], "moderators": ["mod@example.org"],
         "settings": {"archive_policy": "public", "default_nonmember_action": "accept",
                      "send_welcome_message": False, "description": "Developers"}},
        {"address": "board@example.org", "absent": False, "style": "legacy-default",
         "owners": ["postmaster@example.org"], "moderators": [],
         "settings": {"archive_policy": "private", "default_nonmember_action": "hold",
                      "send_welcome_message": False, "subject_prefix": "[B] "}},
    ],
    "socialApps": [],
}


def require_tools() -> None:
    """restic and PostgreSQL's server binaries; missing, a skip here and a failure on CI."""
    missing = [name for name, found in (("restic", shutil.which("restic")),
                                        ("postgresql", PostgresServer.bin_dir())) if not found]
    if missing:
        message = f"{', '.join(missing)} not installed (CI installs them through .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def send(site: MailmanSite, to: str, sender: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.net>"
    message.set_content(f"Body of {subject}.")
    # Core's LMTP runner may start after its REST API (which is what the fixture waits for).
    deadline = time.monotonic() + 60
    while True:
        try:
            with smtplib.LMTP("127.0.0.1", site.lmtp_port) as lmtp:
                lmtp.send_message(message)
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def archived_subjects(site: MailmanSite, address: str) -> list[str]:
    """Subjects HyperKitty's API lists for the list (its archive, read back through the web)."""
    api = f"{site.web_url}/archives/api/list/{address}/emails/?limit=200"
    try:
        body = json.loads(site.http(api))
    except (urllib.error.HTTPError, json.JSONDecodeError):
        return []
    entries = body["results"] if isinstance(body, dict) else body
    return sorted(entry["subject"] for entry in entries)


def held_subjects(site: MailmanSite, list_id: str) -> list[str]:
    held = site.rest(f"lists/{list_id}/held")
    return sorted(entry["subject"] for entry in held.get("entries", []))


def wait_for(what: str, check: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def logs_in(site: MailmanSite, password: str) -> bool:
    """The superuser logs in to Postorius through allauth's form, as a browser does."""
    url, _page = Browser(site.web_url).post_form(
        "/accounts/login/", {"login": "admin", "password": password})
    return "/accounts/login/" not in url and "confirm-email" not in url


@dataclass
class State:
    """What the drill compares: core's view of every list, held messages, archives."""

    lists: dict[str, dict[str, Any]]
    held: list[str]
    archived: list[str]


def site_state(site: MailmanSite) -> State:
    return State(lists=snapshot(site), held=held_subjects(site, "board.example.org"),
                 archived=archived_subjects(site, "dev@example.org"))


def populate(site: MailmanSite) -> None:
    done = site.run_reconcile(STATE)
    assert done.returncode in (0, 10), done.stderr
    for member in MEMBERS:
        site.rest("members", {"list_id": "dev.example.org", "subscriber": member,
                              "pre_verified": "true", "pre_confirmed": "true",
                              "pre_approved": "true"})
    for number in range(POSTS):
        send(site, "dev@example.org", MEMBERS[number % len(MEMBERS)], f"Post {number}")
    for number in range(HELD):
        send(site, "board@example.org", "stranger@example.net", f"Held {number}")
    wait_for(f"{POSTS} archived posts",
             lambda: len(archived_subjects(site, "dev@example.org")) == POSTS)
    wait_for(f"{HELD} held messages", lambda: len(held_subjects(site, "board.example.org")) == HELD)


@dataclass
class Restored:
    before: State
    after: State
    backup: subprocess.CompletedProcess[str]
    restore: subprocess.CompletedProcess[str]
    snapshot_ids: list[str]


@pytest.fixture(scope="module")
def drill(mailman_env: MailmanEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    require_tools()
    work = tmp_path_factory.mktemp("backup-drill")
    site = MailmanSite(env=mailman_env, directory=work / "site", database="postgresql")
    site.directory.mkdir()
    try:
        site.start()
        populate(site)
        yield Drill(site=site, work=work)
    finally:
        site.stop()


@pytest.fixture(scope="module")
def restored(drill: Drill) -> Restored:
    before = site_state(drill.site)
    backup = drill.program()
    assert backup.returncode == 0, backup.stdout + backup.stderr
    ids = drill.snapshots()
    wipe(drill)
    restore = drill.program("restore")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    drill.site.start_servers()
    return Restored(before, site_state(drill.site), backup, restore, ids)


def test_backup_makes_one_snapshot_and_records_it(drill: Drill, restored: Restored):
    assert len(restored.snapshot_ids) == 1
    status = json.loads((drill.work / "status.json").read_text())
    assert restored.snapshot_ids[0].startswith(status["snapshot"])


def test_restore_brings_back_every_list_with_its_settings(restored: Restored):
    assert sorted(restored.after.lists) == ["board@example.org", "dev@example.org"]
    for name, before in restored.before.lists.items():
        assert restored.after.lists[name]["config"] == before["config"], name


def test_restore_brings_back_owners_moderators_and_members(restored: Restored):
    dev = restored.after.lists["dev@example.org"]
    assert dev["member"] == sorted(MEMBERS)
    assert dev["moderator"] == ["mod@example.org"]
    for name, before in restored.before.lists.items():
        for role in ("owner", "moderator", "member"):
            assert restored.after.lists[name][role] == before[role], (name, role)


def test_restore_brings_back_held_messages(restored: Restored):
    assert restored.after.held == restored.before.held == [f"Held {n}" for n in range(HELD)]


def test_restore_brings_back_the_archive(restored: Restored):
    assert len(restored.after.archived) == POSTS
    assert restored.after.archived == restored.before.archived


def test_superuser_still_logs_in_after_restore(drill: Drill, restored: Restored):
    assert logs_in(drill.site, ADMIN_PASSWORD)
    assert not logs_in(drill.site, "not-the-password-123")


def test_hyperkitty_accepts_archiving_with_the_restored_key(drill: Drill, restored: Restored):
    # Core posts to HyperKitty with the key in its restored mailman-hyperkitty.cfg; HyperKitty
    # checks it against MAILMAN_ARCHIVER_KEY in its restored settings.
    send(drill.site, "dev@example.org", MEMBERS[0], "After restore")
    wait_for("the post made after the restore in the archive",
             lambda: len(archived_subjects(drill.site, "dev@example.org")) == POSTS + 1)


def test_restore_of_an_unknown_snapshot_fails_before_touching_anything(drill: Drill,
                                                                      restored: Restored):
    before = sorted(p.name for p in drill.site.directory.iterdir())
    done = drill.program("restore", "deadbeef")
    assert done.returncode == 1
    assert "no snapshot 'deadbeef'" in done.stderr
    assert sorted(p.name for p in drill.site.directory.iterdir()) == before


def test_killed_backup_leaves_the_previous_snapshot_usable(drill: Drill, restored: Restored):
    site = drill.site
    good = drill.snapshots()
    # Enough incompressible data that restic is still writing when it is killed.
    ballast = site.directory / "ballast.bin"
    ballast.write_bytes(os.urandom(64 * 1024 * 1024))
    packs_before = sum(1 for _ in (drill.repository / "data").rglob("*"))
    process = subprocess.Popen([sys.executable, str(BACKUP_PROGRAM)], env=drill.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if sum(1 for _ in (drill.repository / "data").rglob("*")) > packs_before:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the backup finished before it was killed"
    assert drill.snapshots() == good

    # The snapshot from before the kill restores the site as it was then.
    ballast.unlink()
    site.stop_servers()
    done = drill.program("restore", good[-1][:8])
    assert done.returncode == 0, done.stdout + done.stderr
    site.start_servers()
    assert not ballast.exists()
    assert snapshot(site) == restored.after.lists

    # The next nightly run clears the dead run's lock and succeeds; the repository is sound.
    again = drill.program()
    assert again.returncode == 0, again.stdout + again.stderr
    check = drill.restic("check")
    assert check.returncode == 0, check.stdout + check.stderr
