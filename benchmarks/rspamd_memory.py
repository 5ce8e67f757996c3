"""Benchmark: what the spam gate adds to the host's memory (rspamd, configured from spam.nix).

Starts Debian's rspamd with spam.nix's files and the nixpkgs module's top-level layout (the
mail-path tests' helpers), behind a real Postfix with postfix.nix's milter settings, and prints
the resident memory (VmRSS, KiB) of every rspamd process: after start, and after --messages
(default 300) messages from an internet client (clean, DKIM-signed, every fifth one borderline,
every tenth GTUBE, rejected). The host's default server type, cx23, has 4 GB.

Run: `python benchmarks/rspamd_memory.py [--messages N]` as root (Postfix and rspamd drop to
their own users), with Debian's postfix and rspamd installed (.ci/run installs both).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import smtplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "nixos"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mail_dns import dns_server
from mail_world import GTUBE, GTUBE_ADD_HEADER, author_message, author_records, send_from_internet
from milters_live import Daemon, resident_kib, rspamd_module, start_rspamd
from nixos_support import DOCUMENTS
from postfix_live import PostfixInstance, daemon_directory, postfix_module, start_postfix

RECIPIENT = "abuse@example.org"


@contextlib.contextmanager
def gate(nix_instantiate: str) -> Iterator[tuple[Daemon, PostfixInstance]]:
    services = rspamd_module(nix_instantiate)
    options = "enable_test_patterns = true;\n"
    with dns_server(author_records()) as port, daemon_directory("rspamd-bench-") as root:
        options += f'dns {{ nameserver = ["127.0.0.1:{port}"]; timeout = 1s; retransmits = 1; }}\n'
        rspamd_run = start_rspamd(services, root, test_options=options)
        rspamd = next(rspamd_run)
        module = postfix_module(nix_instantiate, DOCUMENTS / "production.json")
        # One client sends them all: the per-client rate limits are not what is measured.
        unlimited = {
            "smtpd_client_connection_rate_limit": 0,
            "smtpd_client_message_rate_limit": 0,
            "smtpd_client_recipient_rate_limit": 0,
        }
        postfix_run = start_postfix(
            module,
            paths={"/run/rspamd/rspamd-milter.sock": str(rspamd.socket)},
            overrides=unlimited,
        )
        postfix = next(postfix_run)
        try:
            yield rspamd, postfix
        finally:
            postfix_run.close()
            rspamd_run.close()


def report(label: str, rspamd: Daemon) -> None:
    figures = resident_kib(rspamd.process.pid)
    rss = sum(rss for rss, _ in figures.values())
    pss = sum(pss for _, pss in figures.values())
    print(
        f"{label}: rspamd RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB "
        f"over {len(figures)} processes (PSS counts pages the forked workers share once)"
    )
    for title, (rss, pss) in sorted(figures.items()):
        print(f"  RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB  {title}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    count = parser.parse_args().messages
    nix_instantiate = shutil.which("nix-instantiate")
    if nix_instantiate is None:
        sys.exit("nix-instantiate is needed (Debian nix-bin)")
    with gate(nix_instantiate) as (rspamd, postfix):
        time.sleep(5)  # let the workers finish loading maps and compiling regexps
        report("after start", rspamd)
        started = time.monotonic()
        rejected = 0
        for number in range(count):
            body = "Hello list, a normal post.\n" * 20
            if number % 10 == 9:
                body = f"{GTUBE}\n"
            elif number % 5 == 4:
                body = f"{GTUBE_ADD_HEADER}\n"
            data = author_message(RECIPIENT, f"message {number}", body)
            try:
                send_from_internet(postfix.port, RECIPIENT, data)
            except smtplib.SMTPDataError:
                rejected += 1
        elapsed = time.monotonic() - started
        print(f"{count} messages in {elapsed:.1f} s ({rejected} rejected at SMTP)")
        report(f"after {count} messages", rspamd)


if __name__ == "__main__":
    main()
