"""The shipped reconcile program when it cannot do its work: one clear line, exit code, no
traceback, nothing written. Run in the real Mailman environment with servers that are not
started (or a database that is not there)."""

from __future__ import annotations

import copy
import json

import pytest
from mailman_fixture import MailmanSite, dump_database
from test_reconcile_mailman import STATE_A

pytestmark = pytest.mark.mailman


def assert_one_clear_line(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mailman-reconcile: ")
    assert expected in lines[0]


def test_unreachable_core_exits_2_with_a_clear_message(configured_site: MailmanSite):
    before = dump_database(configured_site.web_db)
    done = configured_site.run_reconcile(STATE_A)
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, f"Mailman core is unreachable at {configured_site.rest_url}")
    assert done.stdout == ""
    # Reachability is checked before anything is written.
    assert dump_database(configured_site.web_db) == before


def test_unreachable_database_exits_2_with_a_clear_message(configured_site: MailmanSite):
    configured_site.write_settings_variant("settings_nodb", f"""
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": "{configured_site.directory}/missing/dir/web.db"}}}}
        """)
    done = configured_site.run_reconcile(STATE_A, settings_module="settings_nodb")
    assert done.returncode == 2
    # One line the deploy may show (our words only); the database's own text follows on an
    # indented line, which the deploy's guard keeps in the host journal.
    line, detail = done.stderr.strip().splitlines()
    assert line == ("mailman-reconcile: mailman-web's database is unreachable or not migrated "
                    "(OperationalError)")
    assert detail.startswith("  ") and "unable to open database file" in detail


def test_invalid_input_exits_1_naming_the_field(configured_site: MailmanSite):
    state = copy.deepcopy(STATE_A)
    state["lists"][0]["settings"]["archive_policy"] = "sometimes"
    done = configured_site.run_reconcile(state)
    assert done.returncode == 1
    assert_one_clear_line(
        done.stderr, "lists[announce@example.org].settings.archive_policy must be one of "
        "never, private, public")


def test_input_that_is_not_json_exits_1(configured_site: MailmanSite):
    done = configured_site.run_reconcile("lists: [")
    assert done.returncode == 1
    assert_one_clear_line(done.stderr, "stdin is not JSON")


def test_invalid_input_never_echoes_the_password(configured_site: MailmanSite):
    state = copy.deepcopy(STATE_A)
    state["superuser"]["password"] = ["not", "a", "string", "hunter2"]
    done = configured_site.run_reconcile(json.dumps(state))
    assert done.returncode == 1
    assert "hunter2" not in done.stderr + done.stdout
    assert_one_clear_line(done.stderr, "superuser.password must be a non-empty string")
