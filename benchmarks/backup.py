"""Benchmark: back up and restore 100 lists with 3,000 archived posts with the host's program.

On one freshly started Mailman site on PostgreSQL (the reconcile tests' fixtures, the production
setup), this creates 100 lists (the reconcile program), 5 members each (REST), and 30 archived
posts per list imported into HyperKitty (its own `hyperkitty_import`, in one process), then runs
nixos/mailman_site_backup.py -- what the host's nightly unit and `mailman-site-restore` run --
with the real restic against a local repository, and prints:

- the first backup (full) and a second one after 100 more posts (incremental): wall time and
  repository size after each,
- the restore after a wipe (servers stopped, both databases dropped, the site's files, dumps and
  restic's cache deleted): wall time, and that lists, members and archive counts came back.

A local repository measures the program, pg_dump/pg_restore and restic's CPU work; over SFTP to a
Storage Box the upload adds roughly repository size / bandwidth (a first backup only; later ones
send only the new chunks).

Run: `python benchmarks/backup.py [--lists N] [--posts-per-list N]` (needs Debian `restic` and
`postgresql`; builds the cached Mailman venv on first use).
"""

from __future__ import annotations

import argparse
import datetime
import json
import mailbox
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reconcile"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reconcile as reconcile_benchmark  # benchmarks/reconcile.py: the same desired state
from mailman_fixture import Drill, MailmanEnv, MailmanSite, wipe

MEMBERS = 5
WORDS = (
    "list", "archive", "mailman", "message", "thread", "reply", "digest", "moderator",
    "subscriber", "release", "meeting", "agenda", "minutes", "patch", "review", "question",
    "answer", "thanks", "proposal", "vote", "draft", "schedule", "budget", "report", "update",
    "issue", "fix", "announce", "welcome",
)  # fmt: skip


def desired_state(lists: int) -> dict[str, Any]:
    """benchmarks/reconcile.py's lists, each with one owner and public archives."""
    return reconcile_benchmark.desired_state(
        lists,
        owners=lambda i: ["postmaster@example.org"],
        settings=lambda i: {"display_name": f"List {i}", "archive_policy": "public"},
    )


def write_mbox(path: Path, address: str, count: int, start: int, rng: random.Random) -> None:
    """`count` plausible posts (a few KB of text each, half of them replies) as an mbox."""
    box = mailbox.mbox(path)
    for number in range(start, start + count):
        message = EmailMessage()
        message["From"] = f"member{number % MEMBERS}@example.net"
        message["To"] = address
        topic = f"Topic {number // 2}"
        message["Subject"] = topic if number % 2 == 0 else f"Re: {topic}"
        message["Message-ID"] = f"<{address}-{number}@example.net>"
        if number % 2:
            message["In-Reply-To"] = f"<{address}-{number - 1}@example.net>"
        message["Date"] = format_datetime(
            datetime.datetime.fromtimestamp(1_700_000_000 + number * 3600, tz=datetime.UTC))
        message.set_content("\n".join(
            " ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(8, 60))))
        box.add(message)
    box.close()


IMPORT = """
import django, json, sys
django.setup()
from django.core.management import call_command
for address, mbox in json.load(sys.stdin):
    call_command("hyperkitty_import", mbox, list_address=address, no_sync_mailman=True,
                 verbosity=0)
"""

COUNT = """
import django, json
django.setup()
from hyperkitty.models import MailingList
print(json.dumps({ml.name: ml.emails.count() for ml in MailingList.objects.all()}))
"""


def django(site: MailmanSite, code: str, stdin: str = "") -> str:
    done = subprocess.run([str(site.env.python), "-c", code], input=stdin, text=True,
                          capture_output=True, env=site.web_env(), cwd=site.directory,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def import_posts(site: MailmanSite, work: Path, lists: int, per_list: int, start: int) -> None:
    rng = random.Random(start)  # noqa: S311 - sample text, not secrets
    jobs = []
    for i in range(lists):
        address = f"list{i:03d}@example.org"
        path = work / f"import-{start}-{i:03d}.mbox"
        write_mbox(path, address, per_list, start, rng)
        jobs.append((address, str(path)))
    django(site, IMPORT, json.dumps(jobs))


def archive_counts(site: MailmanSite) -> dict[str, int]:
    counts: dict[str, int] = json.loads(django(site, COUNT))
    return counts


def member_count(site: MailmanSite) -> int:
    return int(site.rest("members").get("total_size", 0))


def repository_mib(drill: Drill) -> float:
    size = sum(p.stat().st_size for p in drill.repository.rglob("*") if p.is_file())
    return size / 2**20


def timed(label: str, action: Callable[[], subprocess.CompletedProcess[str]]) -> float:
    start = time.monotonic()
    done = action()
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=100)
    parser.add_argument("--posts-per-list", type=int, default=30)
    args = parser.parse_args()
    env = MailmanEnv.ensure()
    with tempfile.TemporaryDirectory(prefix="backup-benchmark-") as scratch:
        work = Path(scratch)
        site = MailmanSite(env=env, directory=work / "site", database="postgresql")
        site.directory.mkdir()
        try:
            site.start()
            run(site, work, args.lists, args.posts_per_list)
        finally:
            site.stop()


def run(site: MailmanSite, work: Path, lists: int, per_list: int) -> None:
    began = time.monotonic()
    done = site.run_reconcile(desired_state(lists), timeout=600)
    if done.returncode not in (0, 10):
        raise RuntimeError(done.stderr)
    for i in range(lists):
        for k in range(MEMBERS):
            site.rest("members", {"list_id": f"list{i:03d}.example.org",
                                  "subscriber": f"member{k}@example.net", "pre_verified": "true",
                                  "pre_confirmed": "true", "pre_approved": "true"})
    import_posts(site, work, lists, per_list, start=0)
    before = archive_counts(site)
    members = member_count(site)
    print(f"site: {lists} lists, {members} memberships, {sum(before.values())} archived posts "
          f"(built in {time.monotonic() - began:.0f} s)")

    drill = Drill(site=site, work=work)
    first = timed("first backup", drill.program)
    full = repository_mib(drill)
    print(f"backup 1 (full):        {first:6.1f} s   repository {full:6.2f} MiB")
    import_posts(site, work, lists, 1, start=per_list)
    second = timed("second backup", drill.program)
    size = repository_mib(drill)
    print(f"backup 2 (+{lists} posts): {second:6.1f} s   repository {size:6.2f} MiB "
          f"(+{(size - full) * 1024:.0f} KiB)")
    dumps = sum(p.stat().st_size for p in drill.dump_dir.iterdir()) / 2**20
    print(f"database dumps (pg_dump -Fc, compressed): {dumps:.1f} MiB")

    expected = archive_counts(site)
    wipe(drill)
    restore = timed("restore", lambda: drill.program("restore"))
    site.start_servers()
    after = archive_counts(site)
    ok = after == expected and member_count(site) == members
    lists_back = len(site.rest("lists").get("entries", []))
    print(f"restore (after wipe):   {restore:6.1f} s   lists {lists_back}, archived posts "
          f"{sum(after.values())}, memberships {member_count(site)}: "
          f"{'equal to before' if ok else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
