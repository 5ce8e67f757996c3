"""Core's Postfix maps regenerated once per bulk creation, not once per list
(nixos/mailman_deferred_mta.py), and a run killed while they are deferred repaired by the next."""

from __future__ import annotations

import copy
import os
import re
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


def test_a_live_marker_defers_until_the_next_regeneration(mailman_site: MailmanSite):
    marker(mailman_site).write_text(f"{os.getpid()}\n")
    try:
        mailman_site.rest("lists", {"fqdn_listname": "deferred@example.org"})
        assert "deferred@example.org" not in routed(mailman_site)
    finally:
        marker(mailman_site).unlink()
    mailman_site.rest("lists", {"fqdn_listname": "after@example.org"})
    assert {"deferred@example.org", "after@example.org"} <= routed(mailman_site)


@pytest.mark.parametrize("created", [1, 10, 35])
def test_a_kill_mid_creation_converges_on_the_next_run(mailman_site: MailmanSite, created: int):
    state = copy.deepcopy(STATE_A)
    state["lists"] = [
        {"address": f"kill{created}-{i:02d}@example.org", "absent": False,
         "owners": [f"o{i}-{k}@example.org" for k in range(3)], "moderators": [],
         "settings": {"description": f"Kill test list {i}"}}
        for i in range(LISTS)]
    seen = mailman_site.kill_reconcile_after(state, created)
    assert 0 < seen < LISTS, f"the kill did not land mid-run ({seen} lists created)"
    # The killed run deferred the maps: the lists it created are not routed yet.
    done = run(mailman_site, state)
    assert done.returncode == 0, done.stderr
    assert "postfix maps: ok" in done.stdout
    assert not marker(mailman_site).exists()
    assert_whole(mailman_site, state)
