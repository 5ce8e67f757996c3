"""Core's Postfix maps regenerated once per bulk creation, not once per list
(nixos/mailman_deferred_mta.py), and a run killed while they are deferred repaired by the next."""

from __future__ import annotations

import contextlib
import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from mailman_fixture import NIXOS_DIR, RECONCILE_PROGRAM, MailmanSite
from test_reconcile_mailman import STATE_A, bulk_state, run

pytestmark = pytest.mark.mailman

LISTS = 50


def constant(path: Any, name: str) -> str:
    """A string constant of a host file (the program imports Django, core's class Mailman)."""
    found = re.search(rf'^{name} = "([^"]+)"$', path.read_text(), re.M)
    assert found, f"{name} not in {path}"
    return found[1]


DEFERRED_MTA = constant(RECONCILE_PROGRAM, "DEFERRED_MTA")
DEFER_MARKER = constant(RECONCILE_PROGRAM, "DEFER_MARKER")


def test_core_loads_our_mta_class(mailman_site: MailmanSite) -> None:
    mta = mailman_site.rest("system/configuration/mta")
    assert mta["incoming"] == DEFERRED_MTA
    module, _, name = DEFERRED_MTA.rpartition(".")
    assert (NIXOS_DIR / f"{module}.py").exists()
    assert f"class {name}(" in (NIXOS_DIR / f"{module}.py").read_text()


def test_core_recognises_the_program_by_its_file_name() -> None:
    assert constant(NIXOS_DIR / "mailman_deferred_mta.py", "RECONCILE_PROGRAM") == \
        RECONCILE_PROGRAM.name


def test_program_and_core_name_the_same_marker() -> None:
    assert constant(NIXOS_DIR / "mailman_deferred_mta.py", "MARKER") == DEFER_MARKER


def marker(site: MailmanSite) -> Any:
    return site.var_dir / DEFER_MARKER


def routed(site: MailmanSite) -> set[str]:
    text = (site.data_dir / "postfix_lmtp").read_text()
    return {line.split()[0] for line in text.splitlines()
            if line.strip() and not line.startswith("#")}


def assert_whole(site: MailmanSite, state: dict[str, Any]) -> None:
    """Every list of the state exists with its owners and settings and is in the maps."""
    lists = {e["fqdn_listname"]: e for e in site.rest("lists")["entries"]}
    owners: dict[str, set[str]] = {}
    for member in site.rest("members/find?role=owner").get("entries", []):
        owners.setdefault(member["list_id"], set()).add(member["email"])
    maps = routed(site)
    for entry in state["lists"]:
        if entry["absent"]:
            continue
        address = entry["address"]
        assert address in lists, address
        list_id = lists[address]["list_id"]
        assert owners.get(list_id) == set(entry["owners"]), address
        if "description" in entry["settings"]:
            config = site.rest(f"lists/{list_id}/config")
            assert config["description"] == entry["settings"]["description"], address
        assert address in maps, f"{address} is not in the Postfix transport map"


def test_bulk_creation_routes_every_list_and_leaves_no_marker(mailman_site: MailmanSite):
    state = bulk_state(20)
    done = run(mailman_site, state)
    assert done.returncode in (0, 10), done.stderr  # 10: first run, the Site was renamed
    assert "postfix maps: ok" in done.stdout
    assert not marker(mailman_site).exists()
    assert_whole(mailman_site, state)


def test_a_stale_marker_does_not_defer(mailman_site: MailmanSite):
    # A killed reconcile's marker names a process that is gone: core regenerates as stock.
    marker(mailman_site).write_text("999999\n")
    try:
        mailman_site.rest("lists", {"fqdn_listname": "stale@example.org"})
        assert "stale@example.org" in routed(mailman_site)
    finally:
        marker(mailman_site).unlink()


@contextlib.contextmanager
def process_named(*argv: str) -> Iterator[int]:
    """A live process whose command line is `python -c ... ARGV`; its pid."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *argv])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_a_live_marker_defers_until_the_next_regeneration(mailman_site: MailmanSite):
    with process_named(str(RECONCILE_PROGRAM)) as pid:
        marker(mailman_site).write_text(f"{pid}\n")
        try:
            mailman_site.rest("lists", {"fqdn_listname": "deferred@example.org"})
            assert "deferred@example.org" not in routed(mailman_site)
        finally:
            marker(mailman_site).unlink()
    mailman_site.rest("lists", {"fqdn_listname": "after@example.org"})
    assert {"deferred@example.org", "after@example.org"} <= routed(mailman_site)


def test_a_marker_whose_pid_was_reused_does_not_defer(mailman_site: MailmanSite):
    # A killed reconcile's pid now belongs to some other program: core regenerates as stock.
    with process_named("some-other-program") as pid:
        marker(mailman_site).write_text(f"{pid}\n")
        try:
            mailman_site.rest("lists", {"fqdn_listname": "reused@example.org"})
            assert "reused@example.org" in routed(mailman_site)
        finally:
            marker(mailman_site).unlink()


def test_the_program_refuses_while_another_reconcile_holds_the_marker(mailman_site: MailmanSite):
    state = kill_state("busy", 3)
    before = mailman_site.list_count()
    with process_named(str(RECONCILE_PROGRAM)) as pid:
        marker(mailman_site).write_text(f"{pid}\n")
        try:
            done = run(mailman_site, state)
        finally:
            marker(mailman_site).unlink()
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"mailman-reconcile: another reconcile (pid {pid}) is changing lists; "
        "run again when it has finished"]
    assert mailman_site.list_count() == before


def kill_state(prefix: str, lists: int) -> dict[str, Any]:
    state = copy.deepcopy(STATE_A)
    state["lists"] = [
        {"address": f"{prefix}-{i:04d}@example.org", "absent": False,
         "owners": [f"o{i}-{k}@example.org" for k in range(3)], "moderators": [],
         "settings": {"description": f"Kill test list {i}"}}
        for i in range(lists)]
    return state


def assert_killed_run_converges(site: MailmanSite, state: dict[str, Any], created: int) -> None:
    lists = len(state["lists"])
    seen = site.kill_reconcile_after(state, created, timeout=600)
    assert 0 < seen < lists, f"the kill did not land mid-run ({seen} of {lists} lists created)"
    # The killed run deferred the maps: the lists it created are not routed yet.
    done = run(site, state)
    assert done.returncode == 0, done.stderr
    assert "postfix maps: ok" in done.stdout
    assert not marker(site).exists()
    assert_whole(site, state)


# 1: right after the marker was written; LISTS - 1: between the marker's removal and the last
# creation (the one that regenerates the maps for all).
@pytest.mark.parametrize("created", [1, 10, 35, LISTS - 1])
def test_a_kill_mid_creation_converges_on_the_next_run(mailman_site: MailmanSite, created: int):
    assert_killed_run_converges(mailman_site, kill_state(f"kill{created}", LISTS), created)


def test_a_kill_deep_into_a_thousand_list_creation_converges(mailman_site: MailmanSite):
    assert_killed_run_converges(mailman_site, kill_state("kill-k", 1000), 700)
