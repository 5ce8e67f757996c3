"""Benchmark: one post to a 1,000-member list, delivered three ways by a real Mailman 3.3.10 core.

On one freshly started site (the reconcile tests' fixtures) whose `[mta] outgoing` is the host's
one-click delivery (nixos/mailman_one_click_mta.py), three lists with the same --members
members, each sent one post through core's LMTP server into an SMTP sink on 127.0.0.1:
- `bulk`: one_click_unsubscribe off, so core's stock BulkDelivery (one copy per 10 recipients,
  decorated once, no per-member header);
- `one-click`: our delivery (one copy per member, decorated once, the two headers per member);
- `per-recipient`: one_click_unsubscribe off and `personalize: individual`, so core's stock
  per-recipient `Deliver` (one copy per member, decorated per member) -- what adding per-member
  headers with Mailman's own machinery costs.

For each it prints core's own delivery time (the `smtp to LIST for N recips, completed in T
seconds` line core logs around the delivery agent, mailman/mta/deliver.py:88-118, which our
delivery logs the same way) and the wall time from the post until the sink has every
recipient (the pipeline and archiving included), then the ratios. Targets (issue 15): one-click
<= 5 s for 1,000 members and >= 5x faster than per-recipient.

Run: `python benchmarks/one_click.py [--members N]` (builds the cached Mailman venv on first
use; about a minute at 1,000 members, most of it in the per-recipient run).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import smtplib
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reconcile"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nixos"))

import mailman_one_click as one_click
from mailman_fixture import MailmanEnv, MailmanSite, SmtpSink

TARGET_SECONDS = 5.0
TARGET_RATIO = 5.0
OWNER = "postmaster@example.org"
# name -> (one_click_unsubscribe, personalize); runs in this order, the slow one last.
LISTS = {"bulk": (False, "none"), "one-click": (True, "none"),
         "per-recipient": (False, "individual")}
SMTP_LINE = re.compile(r"smtp to (\S+) for (\d+) recips, completed in ([0-9.]+) seconds")


def state() -> dict[str, object]:
    return {
        "version": 1,
        "site": {"domain": "lists.example.org", "name": "lists.example.org"},
        "superuser": {"username": "admin", "email": OWNER, "password": "benchmark-Password-1"},
        "mailDomains": ["example.org"],
        "webHost": "lists.example.org",
        "lists": [{"address": f"{name}@example.org", "owners": [OWNER], "moderators": [],
                   "one_click_unsubscribe": on,
                   "settings": {"default_member_action": "accept",
                                "send_welcome_message": False}}
                  for name, (on, _) in LISTS.items()],
        "socialApps": [],
    }


def add_members(site: MailmanSite, list_address: str, addresses: Path) -> None:
    subprocess.run(site.mailman("addmembers", "-W", str(addresses), list_address), check=True,
                   capture_output=True, env=site.core_env(), cwd=site.directory)


def post(site: MailmanSite, list_address: str) -> str:
    tag = secrets.token_hex(6)
    message = EmailMessage()
    message["From"], message["To"] = "member00000@example.com", list_address
    message["Subject"], message["Message-ID"] = f"Benchmark {tag}", f"<{tag}@example.com>"
    message.set_content("One post to every member.\n" * 20)
    with smtplib.LMTP("127.0.0.1", site.lmtp_port) as lmtp:
        lmtp.send_message(message)
    return tag


def delivered(sink: SmtpSink) -> tuple[int, int]:
    """(messages, recipients) the sink holds."""
    messages = recipients = 0
    for path in sink.directory.glob("*.json"):
        messages += 1
        recipients += len(json.loads(path.read_text(encoding="utf-8"))["to"])
    return messages, recipients


def core_seconds(site: MailmanSite, list_address: str) -> tuple[int, float]:
    found = [m for m in SMTP_LINE.finditer(site.log_tail("var/logs/smtp.log", 1_000_000))
             if m.group(1) == list_address]
    if not found:
        raise RuntimeError(f"no delivery of {list_address} in core's smtp log")
    return int(found[-1].group(2)), float(found[-1].group(3))


def run(site: MailmanSite, sink: SmtpSink, name: str, members: int) -> dict[str, float]:
    sink.clear()
    started = time.monotonic()
    post(site, f"{name}@example.org")
    while True:
        messages, recipients = delivered(sink)
        if recipients >= members:
            break
        if time.monotonic() - started > 600:
            raise RuntimeError(f"{name}: {recipients} of {members} recipients after 10 min")
        time.sleep(0.2)
    wall = time.monotonic() - started
    time.sleep(1)  # let core write its log line after the last message
    recipients_logged, seconds = core_seconds(site, f"{name}@example.org")
    assert recipients_logged == members, (name, recipients_logged)
    return {"core": seconds, "wall": wall, "messages": messages, "recipients": recipients}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    members = parser.parse_args().members
    env = MailmanEnv.ensure()
    with tempfile.TemporaryDirectory(prefix="one-click-bench-") as scratch:
        root = Path(scratch)
        (root / "key").write_text(secrets.token_urlsafe(48))
        sink = SmtpSink(env, root / "sink")
        sink.start()
        site = MailmanSite(env=env, directory=root / "site", outgoing=one_click.OUTGOING,
                           smtp=("127.0.0.1", sink.port), one_click_settings={
                               "base_url": "https://lists.example.org/one-click",
                               "key_file": str(root / "key"),
                               "switches_file": str(root / "switches.json")})
        site.directory.mkdir()
        try:
            site.start()
            done = site.run_reconcile(state())
            if done.returncode not in (0, 10):
                raise RuntimeError(done.stderr)
            addresses = root / "members.txt"
            addresses.write_text("".join(f"member{i:05d}@example.com\n" for i in range(members)))
            for name, (_, personalize) in LISTS.items():
                site.rest(f"lists/{name}.example.org/config", {"personalize": personalize},
                          method="PATCH")
                add_members(site, f"{name}@example.org", addresses)
            results = {name: run(site, sink, name, members) for name in LISTS}
        finally:
            site.stop()
            sink.stop()
    print(f"One post to {members} members, real Mailman 3.3.10 core, SMTP sink on 127.0.0.1")
    print(f"{'delivery':<15}{'core (s)':>10}{'wall (s)':>10}{'SMTP messages':>15}")
    for name, result in results.items():
        print(f"{name:<15}{result['core']:>10.2f}{result['wall']:>10.2f}"
              f"{int(result['messages']):>15}")
    fast, stock, bulk = (results[n]["core"] for n in ("one-click", "per-recipient", "bulk"))
    speedup = stock / fast
    print(f"per-recipient / one-click: {speedup:.1f}x (target >= {TARGET_RATIO:.0f}x)")
    print(f"one-click / bulk: {fast / bulk:.1f}x")
    scaled = TARGET_SECONDS * members / 1000
    ok = fast <= scaled and speedup >= TARGET_RATIO
    print(f"one-click {fast:.2f} s (target <= {scaled:.1f} s): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
