"""mailman-site-status-report: the host's daily status report to the site owner.

Checks what can break between deploys -- the site health check (with outbound port 25), the
certificates' expiry, the age of the last good backup, the mail queue, disk and volume usage,
the DNS records and PTRs the stack published, the host's addresses on DNS blocklists -- and
mails ONE short report to adminEmail through the local Postfix when the set of problems changed
since the last report (the first run always reports). Every problem comes with its fix.

Installed by nixos/status-report.nix, which writes the configuration file (per-deployment values
from the deployment document, host paths and commands) and runs this daily. Thresholds are the
constants below. `--dry-run` prints the report and neither mails nor remembers it.
"""

from __future__ import annotations

import argparse
import datetime
import email.message
import email.utils
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import dns.reversename
from cryptography import x509
from dns.rdata import Rdata
from dns.rdtypes.txtbase import TXTBase

CONFIG_FILE = "/etc/mailman-site/status-report.json"

# Thresholds.
CERTIFICATE_WARN_DAYS = 14  # Let's Encrypt certificates are renewed 30 days before expiry
BACKUP_MAX_AGE = datetime.timedelta(hours=36)  # nightly backups, with a night's slack
QUEUE_WARN_MESSAGES = 100
QUEUE_WARN_AGE = datetime.timedelta(hours=6)  # Postfix retries deferred mail for 5 days
DISK_WARN_PERCENT = 80
DISK_FAIL_PERCENT = 90
# The certificates are read from this host's own nginx, asked for each name (SNI).
LOCALHOST = "127.0.0.1"
TIMEOUT_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class Blocklist:
    zone: str
    ipv6: bool  # whether the list answers for IPv6 addresses at all
    removal: str  # where the operator looks the address up and asks for removal


# Major DNS blocklists for mail servers. Spamhaus ZEN answers 127.0.0.2-11 and 127.0.0.30 for
# listed addresses, and 127.255.255.0/24 for errors that are NOT listings: 127.255.255.254 for a
# query through a public/open resolver, 127.255.255.255 for too many queries
# (https://www.spamhaus.org/news/article/788/, "Spamhaus DNSBL return codes: technical update";
# https://docs.spamhaus.com/datasets/docs/source/10-data-type-documentation/datasets/040-zones.html).
BLOCKLISTS = (
    Blocklist("zen.spamhaus.org", ipv6=True, removal="https://check.spamhaus.org/"),
    Blocklist(
        "b.barracudacentral.org",
        ipv6=False,
        removal="https://www.barracudacentral.org/rbl/removal-request",
    ),
    Blocklist("bl.spamcop.net", ipv6=False, removal="https://www.spamcop.net/bl.shtml"),
)
BLOCKLIST_ERRORS = ipaddress.ip_network("127.255.255.0/24")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

OK, WARN, FAIL, UNKNOWN = "ok", "WARN", "FAIL", "UNKNOWN"

# What to do when a part of `mailman-site-health` fails, by its check name.
HEALTH_HINTS = {
    "smtp": "Postfix: systemctl status postfix; journalctl -u postfix",
    "rest": "Mailman core: systemctl status mailman; journalctl -u mailman",
    "uwsgi": "mailman-web: systemctl status mailman-uwsgi; journalctl -u mailman-uwsgi",
    "postorius": "nginx and mailman-web: systemctl status nginx mailman-uwsgi",
    "hyperkitty": "nginx and mailman-web: systemctl status nginx mailman-uwsgi",
    "certificate": "ACME: systemctl list-units 'acme-*'; journalctl -u 'acme-order-renew-*'",
}


@dataclass(frozen=True)
class Finding:
    check: str
    target: str
    level: str  # OK, WARN, FAIL or UNKNOWN
    detail: str
    hint: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the problem across runs (details such as counts may vary)."""
        return (self.check, self.target, self.level)


@dataclass(frozen=True)
class Config:
    """The configuration file nixos/status-report.nix writes (every key required)."""

    hostname: str
    admin_email: str
    ipv4: str
    ipv6: str
    dns_records: list[dict[str, Any]]
    certificate_names: list[str]
    https_port: int
    last_backup_file: Path
    volume: Path
    disks: list[Path]
    state_file: Path
    health_command: list[str]
    postqueue_command: list[str]
    sendmail_command: list[str]
    nameserver: str | None  # None: the host's resolver (/etc/resolv.conf)
    dns_port: int

    @classmethod
    def read(cls, path: Path) -> Config:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            hostname=raw["hostname"],
            admin_email=raw["adminEmail"],
            ipv4=raw["ipv4"],
            ipv6=raw["ipv6"],
            dns_records=raw["dnsRecords"],
            certificate_names=raw["certificateNames"],
            https_port=raw["httpsPort"],
            last_backup_file=Path(raw["lastBackupFile"]),
            volume=Path(raw["volume"]),
            disks=[Path(p) for p in raw["disks"]],
            state_file=Path(raw["stateFile"]),
            health_command=raw["healthCommand"],
            postqueue_command=raw["postqueueCommand"],
            sendmail_command=raw["sendmailCommand"],
            nameserver=raw["nameserver"],
            dns_port=raw["dnsPort"],
        )

    def resolver(self, resolv_conf: str = "/etc/resolv.conf") -> dns.resolver.Resolver:
        if self.nameserver is None:
            try:
                resolver = dns.resolver.Resolver(filename=resolv_conf)
            except dns.resolver.NoResolverConfiguration:
                # No name server at all: every DNS check says UNKNOWN instead of crashing.
                resolver = dns.resolver.Resolver(configure=False)
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [self.nameserver]
            resolver.port = self.dns_port
        resolver.lifetime = TIMEOUT_SECONDS
        return resolver


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- the site health check --------------------------------------------------------------------

HEALTH_LINE = re.compile(r"^(ok|WARN|FAIL)\s+(\S+)\s+(.*)$")


def check_health(command: list[str]) -> list[Finding]:
    """`mailman-site-health --outbound`: one finding per check it names, its WARN/FAIL lines."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=HEALTH_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [Finding("health", "mailman-site-health", FAIL, f"did not run: {error}")]
    lines: dict[str, list[tuple[str, str]]] = {}
    for line in result.stdout.splitlines():
        if match := HEALTH_LINE.match(line):
            lines.setdefault(match[2], []).append((match[1], match[3]))
    if not lines:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return [Finding("health", "mailman-site-health", FAIL, f"did not run: {detail}")]
    return [_health_finding(name, found) for name, found in lines.items()]


def _health_finding(name: str, lines: list[tuple[str, str]]) -> Finding:
    levels = {level for level, _ in lines}
    level = FAIL if "FAIL" in levels else WARN if "WARN" in levels else OK
    # The health check's own further lines are its hint (the outbound check's Hetzner steps).
    hint = " ".join(text for _, text in lines[1:]) or HEALTH_HINTS.get(name, "")
    return Finding("health", name, level, lines[0][1], hint if level != OK else "")


# --- certificates ------------------------------------------------------------------------------


def check_certificates(
    names: Iterable[str], port: int, *, now: datetime.datetime
) -> list[Finding]:
    return [_certificate(name, port, now) for name in names]


def _certificate(name: str, port: int, now: datetime.datetime) -> Finding:
    hint = (
        f"ACME renews 30 days before expiry: journalctl -u acme-order-renew-{name}; "
        f"systemctl start acme-order-renew-{name}"
    )
    # Whatever this host's nginx serves for the name: judged by date here, not by trust (the
    # health check warns about an untrusted one, e.g. right after the first deploy).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((LOCALHOST, port), timeout=TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as error:
        return Finding("certificate", name, FAIL, f"no TLS on {LOCALHOST}:{port}: {error}", hint)
    if der is None:
        return Finding("certificate", name, FAIL, "the server sent no certificate", hint)
    try:
        expires = x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError as error:
        return Finding("certificate", name, FAIL, f"unreadable certificate: {error}", hint)
    days = (expires - now).days
    when = f"expires {expires:%Y-%m-%d %H:%M} UTC"
    if expires <= now:
        return Finding("certificate", name, FAIL, f"expired ({when})", hint)
    if days < CERTIFICATE_WARN_DAYS:
        return Finding("certificate", name, WARN, f"{when}, in {days} days", hint)
    return Finding("certificate", name, OK, f"{when}, in {days} days")


# --- backups -----------------------------------------------------------------------------------


def check_backup(path: Path, *, now: datetime.datetime) -> Finding:
    """The backup program replaces `path` after each success: {"lastSuccess": ISO-8601 UTC, ...}
    (nixos/mailman_site_backup.py, the path from nixos/backup-status-file.nix)."""
    hint = (
        "see the backup unit's journal (systemctl list-timers; "
        "journalctl -u 'mailman-site-backup*') and README, Operations, Backups"
    )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return Finding("backup", "last success", FAIL, f"no backup has succeeded ({path})", hint)
    except OSError as error:
        return Finding("backup", "last success", FAIL, f"cannot read {path}: {error}", hint)
    try:
        when = datetime.datetime.fromisoformat(json.loads(text)["lastSuccess"])
    except (ValueError, TypeError, KeyError):
        detail = f"{path} holds {text[:40]!r}, not {{\"lastSuccess\": <ISO-8601 time>, ...}}"
        return Finding("backup", "last success", FAIL, detail, hint)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    age = now - when
    detail = f"last good backup {when:%Y-%m-%d %H:%M} UTC, {_hours(age)} ago"
    if age > BACKUP_MAX_AGE:
        return Finding("backup", "last success", FAIL, detail, hint)
    return Finding("backup", "last success", OK, detail)


def _hours(delta: datetime.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.0f} h"


# --- the mail queue ----------------------------------------------------------------------------


def check_queue(
    command: list[str],
    *,
    now: datetime.datetime,
    max_messages: int = QUEUE_WARN_MESSAGES,
    max_age: datetime.timedelta = QUEUE_WARN_AGE,
) -> Finding:
    """Postfix's queue as `postqueue -j` lists it (one JSON object per message)."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS * 6, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Finding("queue", "postfix", FAIL, f"postqueue did not run: {error}")
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return Finding("queue", "postfix", FAIL, detail, HEALTH_HINTS["smtp"])
    try:
        messages = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    except ValueError:
        return Finding(
            "queue", "postfix", FAIL, "postqueue -j printed no JSON", HEALTH_HINTS["smtp"]
        )
    if not messages:
        return Finding("queue", "postfix", OK, "empty")
    oldest = min(messages, key=lambda m: int(m["arrival_time"]))
    age = now - datetime.datetime.fromtimestamp(int(oldest["arrival_time"]), datetime.UTC)
    reasons = [r.get("delay_reason", "") for r in oldest.get("recipients", [])]
    detail = f"{len(messages)} message(s), oldest {_hours(age)} old"
    if reason := next((r for r in reasons if r), ""):
        detail += f" ({reason})"
    hint = (
        "postqueue -p lists the messages and why they wait; postqueue -f retries now; "
        "postsuper -d <queue id> drops one"
    )
    if len(messages) >= max_messages or age >= max_age:
        return Finding("queue", "postfix", WARN, detail, hint)
    return Finding("queue", "postfix", OK, detail)


# --- disks ---------------------------------------------------------------------------------------


def check_disks(
    paths: Iterable[Path],
    volume: Path,
    *,
    warn_percent: int = DISK_WARN_PERCENT,
    fail_percent: int = DISK_FAIL_PERCENT,
) -> list[Finding]:
    findings = []
    if not volume.is_mount():
        hint = (
            "the services that need it do not start: systemctl status "
            f"$(systemd-escape -p --suffix=mount {volume}); is the Hetzner volume attached?"
        )
        findings.append(Finding("disk", str(volume), FAIL, "the data volume is not mounted", hint))
    for path in paths:
        try:
            usage = shutil.disk_usage(path)
        except OSError as error:
            findings.append(Finding("disk", str(path), FAIL, f"cannot measure: {error}"))
            continue
        percent = round(100 * (usage.total - usage.free) / usage.total) if usage.total else 100
        detail = f"{percent}% used, {usage.free / 2**30:.1f} GiB free"
        if path == volume:
            hint = "raise the stack's volumeSize (pulumi config set mailman:volumeSize); pulumi up"
        else:
            hint = "free space: nix-collect-garbage -d; journalctl --vacuum-size=200M"
        level = FAIL if percent >= fail_percent else WARN if percent >= warn_percent else OK
        findings.append(Finding("disk", str(path), level, detail, hint if level != OK else ""))
    return findings


# --- DNS ----------------------------------------------------------------------------------------

DNS_HINT = (
    "pulumi up rewrites the records in the Hetzner zone (dnsZone); for a zone managed elsewhere, "
    "create them as `pulumi stack output dnsRecords` lists them"
)
RESOLVER_HINT = "no resolver in /etc/resolv.conf answered (Hetzner's, nixos/hetzner.nix)"
PTR_HINT = (
    "pulumi up sets the reverse DNS of both addresses to the hostname (Hetzner Console: "
    "Server > Networking > Reverse DNS)"
)


def _answer(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[Rdata] | None:
    """The records at name/type; [] for none; None when nobody answered."""
    try:
        return list(resolver.resolve(name, rdtype, raise_on_no_answer=False) or [])
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:  # timeout, no name server answered, malformed answer
        return None


def _normal(rdtype: str, rdata: Rdata) -> str:
    if isinstance(rdata, TXTBase):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(rdata.to_text()))
    return str(rdata.to_text()).lower()


def _expected(rdtype: str, value: str) -> str:
    if rdtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(value))
    return value if rdtype == "TXT" else value.lower()


def check_dns(records: list[dict[str, Any]], resolver: dns.resolver.Resolver) -> list[Finding]:
    findings = []
    for record in records:
        name, rdtype = record["name"], record["type"]
        want = sorted(_expected(rdtype, v) for v in record["values"])
        answer = _answer(resolver, name, rdtype)
        target = f"{name} {rdtype}"
        if answer is None:
            findings.append(
                Finding("dns", target, UNKNOWN, "no name server answered", RESOLVER_HINT)
            )
            continue
        have = sorted(_normal(rdtype, r) for r in answer)
        if have == want:
            findings.append(Finding("dns", target, OK, "as published"))
        else:
            detail = f"DNS answers {_short(have)}, the stack publishes {_short(want)}"
            findings.append(Finding("dns", target, FAIL, detail, DNS_HINT))
    return findings


def _short(values: list[str]) -> str:
    if not values:
        return "nothing"
    return ", ".join(v if len(v) <= 60 else v[:57] + "..." for v in values)


def check_ptr(
    hostname: str, addresses: Iterable[str], resolver: dns.resolver.Resolver
) -> list[Finding]:
    findings = []
    for address in addresses:
        answer = _answer(resolver, dns.reversename.from_address(address).to_text(), "PTR")
        if answer is None:
            detail = "no name server answered"
            findings.append(Finding("ptr", address, UNKNOWN, detail, RESOLVER_HINT))
            continue
        have = sorted(str(r.to_text()).rstrip(".").lower() for r in answer)
        if have == [hostname]:
            findings.append(Finding("ptr", address, OK, hostname))
        else:
            detail = f"PTR is {_short(have)}, expected {hostname}"
            findings.append(Finding("ptr", address, FAIL, detail, PTR_HINT))
    return findings


# --- blocklists --------------------------------------------------------------------------------


def blocklist_query(address: str, zone: str) -> str:
    """The name a DNSBL answers for an address: reversed octets or nibbles, then the zone."""
    reverse = dns.reversename.from_address(address).to_text(omit_final_dot=True)
    return reverse.rsplit(".", 2)[0] + "." + zone  # drop in-addr.arpa / ip6.arpa


def check_blocklists(
    addresses: Iterable[str],
    resolver: dns.resolver.Resolver,
    blocklists: Iterable[Blocklist] = BLOCKLISTS,
) -> list[Finding]:
    findings = []
    for address in addresses:
        version = ipaddress.ip_address(address).version
        for blocklist in blocklists:
            if version == 6 and not blocklist.ipv6:
                continue
            findings.append(_listed(address, blocklist, resolver))
    return findings


def _listed(address: str, blocklist: Blocklist, resolver: dns.resolver.Resolver) -> Finding:
    target = f"{address} on {blocklist.zone}"
    answer = _answer(resolver, blocklist_query(address, blocklist.zone), "A")
    unknown_hint = (
        f"look the address up by hand at {blocklist.removal}; a list that refuses queries "
        "through public resolvers needs a local resolver or its paid query service"
    )
    if answer is None:
        return Finding("blocklist", target, UNKNOWN, "the list did not answer", unknown_hint)
    codes = sorted(ipaddress.ip_address(r.to_text()) for r in answer)
    if not codes:
        return Finding("blocklist", target, OK, "not listed")
    listed = [c for c in codes if c in LOOPBACK and c not in BLOCKLIST_ERRORS]
    if not listed:
        answered = ", ".join(map(str, codes))
        if all(c in BLOCKLIST_ERRORS for c in codes):
            detail = f"the list refused the query ({answered}: an error code, not a listing)"
        else:
            detail = f"the list answered {answered}, which is no listing code"
        return Finding("blocklist", target, UNKNOWN, detail, unknown_hint)
    return Finding(
        "blocklist", target, FAIL, f"listed ({', '.join(map(str, listed))})",
        f"find the cause (an open relay, a compromised account, a list mailing stale addresses),"
        f" then ask for removal at {blocklist.removal}",
    )  # fmt: skip


# --- the report --------------------------------------------------------------------------------


def run_checks(config: Config, *, now: datetime.datetime) -> list[Finding]:
    resolver = config.resolver()
    addresses = [config.ipv4, config.ipv6]
    return [
        *check_health(config.health_command),
        *check_certificates(config.certificate_names, config.https_port, now=now),
        check_backup(config.last_backup_file, now=now),
        check_queue(config.postqueue_command, now=now),
        *check_disks(config.disks, config.volume),
        *check_dns(config.dns_records, resolver),
        *check_ptr(config.hostname, addresses, resolver),
        *check_blocklists(addresses, resolver),
    ]


def problems(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level != OK]


def read_state(path: Path) -> set[tuple[str, str, str]] | None:
    """The problems of the last report sent; None before the first one."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return {(str(p[0]), str(p[1]), str(p[2])) for p in state["problems"]}
    except (OSError, ValueError, LookupError, TypeError):
        return None  # missing or unreadable: report afresh


def write_state(path: Path, findings: list[Finding], now: datetime.datetime) -> None:
    keys = sorted(f.key for f in problems(findings))
    text = json.dumps({"reportedAt": now.isoformat(), "problems": keys}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def report_text(findings: list[Finding], previous: set[tuple[str, str, str]] | None) -> str:
    current = problems(findings)
    lines = []
    for finding in current:
        lines.append(f"{finding.level:<7} {finding.check} {finding.target}: {finding.detail}")
        if finding.hint:
            lines.append(f"        fix: {finding.hint}")
    still = {(f.check, f.target) for f in current}  # a WARN that became a FAIL is not fixed
    recovered = sorted(k for k in previous or set() if (k[0], k[1]) not in still)
    if recovered:
        lines += ["", "Fixed since the last report:"]
        lines += [f"  {check} {target} (was {level})" for check, target, level in recovered]
    passing = len(findings) - len(current)
    lines += ["", f"{passing} of {len(findings)} checks pass."]
    return "\n".join(lines) + "\n"


def subject(hostname: str, findings: list[Finding]) -> str:
    current = problems(findings)
    if not current:
        return f"{hostname}: all checks pass"
    failing = sum(1 for f in current if f.level == FAIL)
    return f"{hostname}: {len(current)} problem(s), {failing} failing"


def compose(config: Config, findings: list[Finding], body: str) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = f"Mailman site status <postmaster@{config.hostname}>"
    message["To"] = config.admin_email
    message["Subject"] = subject(config.hostname, findings)
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain=config.hostname)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(body)
    return message


def send(command: list[str], message: email.message.EmailMessage, recipient: str) -> None:
    """Through the local Postfix's sendmail; the recipient after `--`, never from headers."""
    subprocess.run(
        [*command, "-i", "--", recipient],
        input=message.as_bytes(),
        capture_output=True,
        timeout=TIMEOUT_SECONDS * 6,
        check=True,
    )


def report(
    config: Config,
    *,
    dry_run: bool = False,
    now: Callable[[], datetime.datetime] = now_utc,
) -> int:
    findings = run_checks(config, now=now())
    previous = read_state(config.state_file)
    body = report_text(findings, previous)
    sys.stdout.write(body)
    changed = previous is None or previous != {f.key for f in problems(findings)}
    if dry_run or not changed:
        print("status unchanged: no mail" if not changed else "dry run: no mail")
        return 0
    try:
        send(config.sendmail_command, compose(config, findings, body), config.admin_email)
    except (OSError, subprocess.SubprocessError) as error:
        # The state stays as it was, so the next run tries again.
        print(f"mailman-site-status-report: could not mail the report: {error}", file=sys.stderr)
        return 1
    write_state(config.state_file, findings, now())
    print(f"status changed: report mailed to {config.admin_email}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailman-site-status-report", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path(CONFIG_FILE))
    parser.add_argument("--dry-run", action="store_true", help="print only: no mail, no state")
    args = parser.parse_args(argv)
    try:
        config = Config.read(args.config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"mailman-site-status-report: {args.config}: {error!r}", file=sys.stderr)
        return 2
    return report(config, dry_run=args.dry_run)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
