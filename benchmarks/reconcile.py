"""Benchmark: reconcile 100 (or --lists N) lists with 3 owners each against a real Mailman 3 site.

Measures, on one freshly started site (the reconcile tests' fixtures):
- wall time of `mailman_reconcile.py` on the empty site (target <= 10 s),
- wall time of the same input again, a no-op (target <= 2 s),
- the same 100 lists created the naive way, one `mailman create` process per list,
  and the ratio naive / reconcile (target >= 10x),
- resident memory of Mailman core + mailman-web (RSS and PSS summed over their processes),
  idle after start and the peak while the reconcile runs.

It also prints the time Mailman core itself spent answering the reconcile's requests, by
kind (from core's REST access log), which is the floor no client can go below.

With `--lists 1000` the targets are <= 90 s and <= 10 s, and the naive way (about 25 minutes
at that size) is not run.

Run: `python benchmarks/reconcile.py [--database postgresql|sqlite] [--lists N]` (default
postgresql, the production host's default, on a private server the fixture starts; builds
the cached Mailman venv on first use). PostgreSQL needs Debian `postgresql` (initdb, pg_ctl).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reconcile"))

from mailman_fixture import MailmanSite, running_site

OWNERS = 3
# Targets by list count (issue 9): empty site, no-op re-run, and at 100 the naive ratio.
TARGETS = {100: (10.0, 2.0), 1000: (90.0, 10.0)}


def desired_state(
    lists: int,
    owners: Callable[[int], list[str]] = lambda i: [
        f"owner{i}-{k}@example.org" for k in range(OWNERS)
    ],
    settings: Callable[[int], dict[str, str]] = lambda i: {
        "display_name": f"List {i}",
        "description": f"Benchmark list {i}",
    },
) -> dict[str, Any]:
    """The desired state of `lists` lists; list i gets `owners(i)` and `settings(i)`."""
    return {
        "version": 1,
        "site": {"domain": "lists.example.org", "name": "lists.example.org"},
        "superuser": {"username": "admin", "email": "postmaster@example.org",
                      "password": "benchmark-Password-1"},
        "mailDomains": ["example.org"],
        "webHost": "lists.example.org",
        "lists": [
            {"address": f"list{i:03d}@example.org", "absent": False,
             "owners": owners(i), "moderators": [], "settings": settings(i)}
            for i in range(lists)],
        "socialApps": [],
    }


def proportional_set_size_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def memory(site: MailmanSite) -> tuple[int, int]:
    """(RSS, PSS) in MiB summed over core's and the web app's processes."""
    pids = site.process_ids()
    return site.resident_memory_kib() // 1024, sum(map(proportional_set_size_kib, pids)) // 1024


class PeakMemory(threading.Thread):
    def __init__(self, site: MailmanSite) -> None:
        super().__init__(daemon=True)
        self.site, self.peak, self.done = site, (0, 0), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            rss, pss = memory(self.site)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))


def timed_reconcile(site: MailmanSite, state: dict[str, Any]) -> tuple[float, str]:
    start = time.perf_counter()
    done = site.run_reconcile(state, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 10):
        raise SystemExit(f"reconcile failed ({done.returncode}): {done.stderr}")
    return elapsed, done.stdout


def naive_create(site: MailmanSite, lists: int) -> float:
    start = time.perf_counter()
    for i in range(lists):
        owners = [arg for k in range(OWNERS) for arg in ("-o", f"naive{i}-{k}@example.org")]
        subprocess.run(site.mailman("create", "--quiet", "-N", *owners,
                                    f"naive{i:03d}@example.org"),
                       check=True, capture_output=True, cwd=site.directory,
                       env=site.core_env())
    return time.perf_counter() - start


REQUEST_LINE = re.compile(r'"(?P<verb>[A-Z]+) /3\.1/(?P<path>[^ ?]*)\S* HTTP/[\d.]+" '
                          r'(?P<status>\d+) .* (?P<ms>\d+)$')


def core_time_by_request(site: MailmanSite) -> dict[str, tuple[int, float]]:
    """{"POST lists": (count, seconds)} from core's REST access log, as logged so far."""
    totals: dict[str, tuple[int, float]] = {}
    for line in site.log_tail("var/logs/mailman.log", chars=10**8).splitlines():
        match = REQUEST_LINE.search(line)
        if match is None:
            continue
        resource = re.sub(r"^lists/[^/]+", "lists/<list>", match["path"])
        key = f"{match['verb']} {resource}"
        count, seconds = totals.get(key, (0, 0.0))
        totals[key] = (count + 1, seconds + int(match["ms"]) / 1000)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--lists", type=int, choices=sorted(TARGETS), default=100)
    args = parser.parse_args()
    database, lists = args.database, args.lists
    empty_target, noop_target = TARGETS[lists]
    with running_site(database=database) as site:
        idle = memory(site)
        state = desired_state(lists)
        sampler = PeakMemory(site)
        sampler.start()
        empty, first_output = timed_reconcile(site, state)
        sampler.done.set()
        sampler.join()
        core_time = core_time_by_request(site)
        noop, noop_output = timed_reconcile(site, state)
        naive = naive_create(site, lists) if lists <= 100 else None
        lists_created = site.rest("lists")["total_size"]
        after = memory(site)

    assert f"lists: {lists} created" in first_output, first_output
    assert f"lists: 0 created, 0 updated, {lists} unchanged" in noop_output, noop_output
    assert "postfix maps: ok" in first_output, first_output
    assert lists_created == lists * (2 if naive is not None else 1), lists_created
    rows = [
        ("reconcile, empty site", f"{empty:.2f} s", f"<= {empty_target:g} s",
         empty <= empty_target),
        ("reconcile, no-op re-run", f"{noop:.2f} s", f"<= {noop_target:g} s", noop <= noop_target),
    ]
    if naive is not None:
        rows += [
            ("naive: one `mailman create` per list", f"{naive:.2f} s", "", None),
            ("ratio naive / reconcile", f"{naive / empty:.1f}x", ">= 10x", naive / empty >= 10),
        ]
    rows += [
        ("memory idle (RSS / PSS)", f"{idle[0]} / {idle[1]} MiB", "", None),
        ("memory peak during reconcile", f"{sampler.peak[0]} / {sampler.peak[1]} MiB", "",
         None),
        (f"memory after {lists_created} lists", f"{after[0]} / {after[1]} MiB", "", None),
    ]
    print(f"\nReconcile {lists} lists x {OWNERS} owners against GNU Mailman 3.3.10 "
          f"({'PostgreSQL' if database == 'postgresql' else 'SQLite'}, 127.0.0.1)\n")
    print(f"| {'measure':<38} | {'value':>18} | {'target':<8} | met |")
    print(f"|{'-' * 40}|{'-' * 20}|{'-' * 10}|-----|")
    for name, value, target, met in rows:
        mark = "" if met is None else ("yes" if met else "NO")
        print(f"| {name:<38} | {value:>18} | {target:<8} | {mark:<3} |")

    in_core = sum(seconds for _count, seconds in core_time.values())
    print(f"\nMailman core's own time answering the empty-site reconcile: {in_core:.2f} s "
          f"of {empty:.2f} s\n")
    print(f"| {'request':<38} | {'count':>5} | {'core time':>9} | {'each':>8} |")
    print(f"|{'-' * 40}|{'-' * 7}|{'-' * 11}|{'-' * 10}|")
    for key, (count, seconds) in sorted(core_time.items(), key=lambda item: -item[1][1]):
        if seconds >= 0.05:
            each = 1000 * seconds / count
            print(f"| {key:<38} | {count:>5} | {seconds:>7.2f} s | {each:>5.1f} ms |")


if __name__ == "__main__":
    main()
