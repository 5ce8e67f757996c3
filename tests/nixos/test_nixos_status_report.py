"""The daily status report (nixos/mailman_status_report.py) against local stand-ins and a real
Postfix.

The stand-ins are the project's own: the DNS, HTTPS and certificate helpers of the smoke check's
tests (tests/tools/conftest.py) and the servers the health script's tests start
(test_nixos_health_script.py). The mail queue and the report mail go through a real Postfix
instance (Debian's, installed by .ci/run) with its own configuration directory on 127.0.0.1: its
`postqueue -j` is what the queue check reads, and its `sendmail` takes the report, which stays in
its deferred queue (the relay host does not answer), where the tests read it back.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dns.resolver
import pytest
import test_nixos_health_script as health_standins
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nixos_support import DOCUMENTS, NIXOS, evaluate_json, require_tool

from components.dns_records import MtaStsPolicy, site_records, txt_presentation
from tests.tools.conftest import (
    Pages,
    Zone,
    make_certificate,
    reverse_name,
    server_context,
    start_dns,
    start_https,
)

PROGRAM = NIXOS / "mailman_status_report.py"
BACKUP_PROGRAM = NIXOS / "mailman_site_backup.py"
_spec = importlib.util.spec_from_file_location("mailman_status_report", PROGRAM)
assert _spec is not None and _spec.loader is not None
status = importlib.util.module_from_spec(_spec)
sys.modules["mailman_status_report"] = status
_spec.loader.exec_module(status)

HOSTNAME = "lists.example.org"
ADMIN = "postmaster@example.org"
IPV4 = "203.0.113.10"
IPV6 = "2001:db8:1:2::1"
NOW = datetime.datetime(2026, 12, 3, 6, 40, tzinfo=datetime.UTC)

# The health script's stand-ins, as a fixture of this module too.
site = health_standins.site


def _dkim_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def published_records() -> list[dict[str, object]]:
    """What the stack publishes, through the same function and the document's record shape."""
    records = site_records(
        hostname=HOSTNAME,
        mail_domains=("example.org",),
        ipv4=IPV4,
        ipv6=IPV6,
        admin_email=ADMIN,
        dmarc_policy="none",
        dkim_selector="mailman",
        dkim_public_key_pem=_dkim_public_pem(),
        mta_sts=MtaStsPolicy.for_certificates(acme_staging=False),
    )
    return [{"name": r.name, "type": r.type, "values": list(r.values)} for r in records]


def zone_for(records: list[dict[str, object]]) -> Zone:
    """A zone that answers every published record (TXT in zone-file form, long ones split)."""
    zone = Zone()
    for record in records:
        values = [str(v) for v in record["values"]]  # type: ignore[attr-defined]
        if record["type"] == "TXT":
            values = [txt_presentation(v) for v in values]
        zone.records[(str(record["name"]), str(record["type"]))] = values
    zone.records[(reverse_name(IPV4), "PTR")] = [f"{HOSTNAME}."]
    zone.records[(reverse_name(IPV6), "PTR")] = [f"{HOSTNAME}."]
    return zone


@dataclass
class Dns:
    zone: Zone
    port: int
    records: list[dict[str, object]]


@pytest.fixture(scope="module")
def dns_world() -> Iterator[Dns]:
    records = published_records()
    zone = zone_for(records)
    sock, port = start_dns(zone)
    yield Dns(zone, port, records)
    sock.close()


def resolver_for(port: int, lifetime: float = 3.0):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = lifetime
    return resolver


def levels(findings) -> dict[tuple[str, str], str]:
    return {(f.check, f.target): f.level for f in findings}


# --- the site health check, the real script against its own stand-ins -------------------------


def health_command(site_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for key, value in site_env.items():
        monkeypatch.setenv(key, value)
    return ["bash", str(NIXOS / "scripts" / "mailman-site-health.sh"), "--outbound"]


def test_health_passes_and_outbound_block_warns_with_the_scripts_own_hint(site, monkeypatch):
    findings = status.check_health(health_command(site.env, monkeypatch))

    assert levels(findings) == {
        ("health", "smtp"): "ok",
        ("health", "rest"): "ok",
        ("health", "uwsgi"): "ok",
        ("health", "postorius"): "ok",
        ("health", "hyperkitty"): "ok",
        ("health", "certificate"): "WARN",  # self-signed stand-in
        ("health", "outbound"): "WARN",  # 192.0.2.1 does not answer on 25
    }
    outbound = next(f for f in findings if f.target == "outbound")
    assert "Hetzner" in outbound.hint and "Sending mails" in outbound.hint


def test_health_failure_becomes_a_failed_check_with_its_fix(site, monkeypatch):
    command = health_command(site.env, monkeypatch)
    monkeypatch.setenv("MAILMAN_SITE_SMTP_PORT", str(health_standins._free_port()))

    smtp = next(f for f in status.check_health(command) if f.target == "smtp")

    assert smtp.level == "FAIL"
    assert "no 220 banner" in smtp.detail
    assert "systemctl status postfix" in smtp.hint


def test_health_check_that_cannot_run_fails():
    findings = status.check_health(["/nonexistent/mailman-site-health"])
    assert [(f.target, f.level) for f in findings] == [("mailman-site-health", "FAIL")]


# --- certificates -------------------------------------------------------------------------------


@pytest.fixture
def https_site(tmp_path: Path):
    def start(days: int) -> int:
        cert, key = make_certificate(tmp_path, f"site-{days}", [HOSTNAME], days=days)
        server, port = start_https(Pages({"/": (200, "ok")}), server_context(cert, key))
        servers.append(server)
        return port

    servers: list = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_certificate_valid_for_months_is_ok(https_site):
    port = https_site(90)
    now = datetime.datetime.now(datetime.UTC)
    [finding] = status.check_certificates([HOSTNAME], port, now=now)
    assert finding.level == "ok"
    assert "in 89 days" in finding.detail


def test_certificate_expiring_within_14_days_warns_with_the_acme_unit(https_site):
    port = https_site(13)
    now = datetime.datetime.now(datetime.UTC)
    [finding] = status.check_certificates([HOSTNAME], port, now=now)
    assert finding.level == "WARN"
    assert f"acme-order-renew-{HOSTNAME}" in finding.hint


def test_expired_certificate_fails(https_site):
    port = https_site(1)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
    [finding] = status.check_certificates([HOSTNAME], port, now=later)
    assert finding.level == "FAIL"
    assert finding.detail.startswith("expired")


def test_no_tls_server_fails():
    [finding] = status.check_certificates(
        [HOSTNAME], health_standins._free_port(), now=datetime.datetime.now(datetime.UTC)
    )
    assert finding.level == "FAIL"
    assert "no TLS" in finding.detail


# --- the last good backup -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("2026-12-03T02:17:42Z", "ok"),
        ("2026-12-03T02:17:42+00:00", "ok"),
        ("2026-12-01T02:17:42Z", "FAIL"),  # 52 hours: a nightly backup was missed
        ("yesterday", "FAIL"),
    ],
)
def test_backup_age_is_judged_from_the_timestamp_file(tmp_path, text, level):
    stamp = tmp_path / "backup-status.json"
    stamp.write_text(json.dumps({"lastSuccess": text, "snapshot": "0a1b2c3d"}) + "\n")
    finding = status.check_backup(stamp, now=NOW)
    assert finding.level == level
    if level == "FAIL":
        assert "backup" in finding.hint


def test_reads_the_status_file_the_backup_program_writes(tmp_path):
    """The writer (nixos/mailman_site_backup.py) and this reader agree on the format."""
    spec = importlib.util.spec_from_file_location("mailman_site_backup", BACKUP_PROGRAM)
    assert spec is not None and spec.loader is not None
    backup = importlib.util.module_from_spec(spec)
    sys.modules["mailman_site_backup"] = backup  # its dataclasses look their module up
    spec.loader.exec_module(backup)
    path = tmp_path / "backup-status.json"
    backup._write_status(SimpleNamespace(status_file=path), "0a1b2c3d")
    finding = status.check_backup(path, now=datetime.datetime.now(datetime.UTC))
    assert finding.level == "ok", finding
    assert "0 h ago" in finding.detail


def test_no_backup_yet_fails(tmp_path):
    finding = status.check_backup(tmp_path / "backup-status.json", now=NOW)
    assert finding.level == "FAIL"
    assert "no backup has succeeded" in finding.detail


# --- disks --------------------------------------------------------------------------------------


def test_unmounted_volume_fails(tmp_path):
    findings = status.check_disks([Path("/")], tmp_path)
    assert ("disk", str(tmp_path)) in levels(findings)
    assert levels(findings)[("disk", str(tmp_path))] == "FAIL"


def test_a_disk_that_cannot_be_measured_fails(tmp_path):
    [finding] = status.check_disks([tmp_path / "missing"], Path("/"))
    assert finding.level == "FAIL"
    assert "cannot measure" in finding.detail


@pytest.mark.parametrize(
    ("warn", "fail", "level"), [(101, 102, "ok"), (0, 101, "WARN"), (0, 0, "FAIL")]
)
def test_disk_usage_thresholds(warn, fail, level):
    [finding] = status.check_disks([Path("/")], Path("/"), warn_percent=warn, fail_percent=fail)
    assert finding.level == level
    assert "% used" in finding.detail
    assert (finding.hint != "") == (level != "ok")


# --- DNS, PTR and blocklists against the local DNS server ---------------------------------------


def test_published_records_and_ptrs_as_dns_answers_them_pass(dns_world):
    resolver = resolver_for(dns_world.port)
    findings = status.check_dns(dns_world.records, resolver)
    findings += status.check_ptr(HOSTNAME, [IPV4, IPV6], resolver)

    assert {f.level for f in findings} == {"ok"}, [f for f in findings if f.level != "ok"]
    # The DKIM record is longer than one TXT string: it is compared joined.
    assert any(f.target == "mailman._domainkey.example.org TXT" for f in findings)
    assert len(findings) == len(dns_world.records) + 2


def test_changed_and_missing_records_fail_with_the_fix(dns_world):
    zone = dns_world.zone.records
    saved = dict(zone)
    try:
        zone[("example.org", "MX")] = ["10 mail.elsewhere.example."]
        del zone[("_dmarc.example.org", "TXT")]
        findings = status.check_dns(dns_world.records, resolver_for(dns_world.port))
    finally:
        zone.clear()
        zone.update(saved)

    failed = {f.target: f for f in findings if f.level != "ok"}
    assert set(failed) == {"example.org MX", "_dmarc.example.org TXT"}
    assert failed["example.org MX"].detail == (
        f"DNS answers 10 mail.elsewhere.example., the stack publishes 10 {HOSTNAME}."
    )
    assert failed["_dmarc.example.org TXT"].detail.startswith("DNS answers nothing")
    assert "pulumi stack output dnsRecords" in failed["example.org MX"].hint


def test_wrong_ptr_fails_with_the_rdns_fix(dns_world):
    zone = dns_world.zone.records
    saved = zone[(reverse_name(IPV4), "PTR")]
    zone[(reverse_name(IPV4), "PTR")] = ["static.10.113.0.203.clients.your-server.de."]
    try:
        findings = status.check_ptr(HOSTNAME, [IPV4, IPV6], resolver_for(dns_world.port))
    finally:
        zone[(reverse_name(IPV4), "PTR")] = saved
    assert levels(findings) == {("ptr", IPV4): "FAIL", ("ptr", IPV6): "ok"}
    assert "Reverse DNS" in findings[0].hint


def test_no_name_server_makes_dns_unknown_not_failed():
    resolver = resolver_for(health_standins._free_port(), lifetime=1.0)
    findings = status.check_dns([{"name": HOSTNAME, "type": "A", "values": [IPV4]}], resolver)
    assert [f.level for f in findings] == ["UNKNOWN"]


def test_a_host_without_any_name_server_reports_dns_unknown(tmp_path):
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("# no nameserver lines\n")
    config = status.Config(
        hostname=HOSTNAME, admin_email=ADMIN, ipv4=IPV4, ipv6=IPV6, dns_records=[],
        certificate_names=[], https_port=443, last_backup_file=tmp_path, volume=tmp_path,
        disks=[], state_file=tmp_path, health_command=[], postqueue_command=[],
        sendmail_command=[], nameserver=None, dns_port=53,
    )  # fmt: skip
    resolver = config.resolver(str(resolv_conf))
    assert [f.level for f in status.check_ptr(HOSTNAME, [IPV4], resolver)] == ["UNKNOWN"]


def test_blocklist_query_names_reverse_octets_and_nibbles():
    assert status.blocklist_query(IPV4, "zen.spamhaus.org") == "10.113.0.203.zen.spamhaus.org"
    nibbles = status.blocklist_query(IPV6, "zen.spamhaus.org")
    assert nibbles == "1.0.0.0." + "0." * 12 + "2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"


def test_blocklists_listed_clean_and_refused(dns_world):
    zone = dns_world.zone.records
    listed = (status.blocklist_query(IPV4, "zen.spamhaus.org"), "A")
    refused = (status.blocklist_query(IPV6, "zen.spamhaus.org"), "A")
    spamcop = (status.blocklist_query(IPV4, "bl.spamcop.net"), "A")
    zone[listed] = ["127.0.0.2", "127.0.0.10"]
    zone[refused] = ["127.255.255.254"]  # Spamhaus: query via a public/open resolver
    zone[spamcop] = ["127.255.255.255"]  # an error code outside Spamhaus too: never a listing
    try:
        findings = status.check_blocklists([IPV4, IPV6], resolver_for(dns_world.port))
    finally:
        for key in (listed, refused, spamcop):
            del zone[key]

    assert levels(findings) == {
        ("blocklist", f"{IPV4} on zen.spamhaus.org"): "FAIL",
        ("blocklist", f"{IPV4} on b.barracudacentral.org"): "ok",
        ("blocklist", f"{IPV4} on bl.spamcop.net"): "UNKNOWN",
        # Barracuda and SpamCop list no IPv6 addresses: not asked.
        ("blocklist", f"{IPV6} on zen.spamhaus.org"): "UNKNOWN",
    }
    by_target = {f.target: f for f in findings}
    assert by_target[f"{IPV4} on zen.spamhaus.org"].detail == "listed (127.0.0.2, 127.0.0.10)"
    assert "https://check.spamhaus.org/" in by_target[f"{IPV4} on zen.spamhaus.org"].hint
    assert "127.255.255.254" in by_target[f"{IPV6} on zen.spamhaus.org"].detail


def test_a_blocklist_answer_outside_127_is_not_a_listing(dns_world):
    key = (status.blocklist_query(IPV4, "b.barracudacentral.org"), "A")
    dns_world.zone.records[key] = ["192.0.2.99"]  # a wildcarding resolver's landing page
    try:
        findings = status.check_blocklists([IPV4], resolver_for(dns_world.port))
    finally:
        del dns_world.zone.records[key]
    assert levels(findings)[("blocklist", f"{IPV4} on b.barracudacentral.org")] == "UNKNOWN"
    barracuda = next(f for f in findings if f.target == f"{IPV4} on b.barracudacentral.org")
    assert "no listing code" in barracuda.detail


# --- a real Postfix: the queue check and the report mail ---------------------------------------


def _postfix_tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")
    if path is None or os.geteuid() != 0:
        why = "is not installed" if path is None else "needs root to start a Postfix instance"
        message = f"{name} {why} (CI installs postfix through .ci/run and runs as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Postfix:
    """A private Postfix instance: no listener, relay host 127.0.0.1:1, so mail stays queued."""

    config_dir: Path

    def command(self, name: str, *args: str) -> list[str]:
        flag = "-C" if name == "sendmail" else "-c"
        return [_postfix_tool(name), flag, str(self.config_dir), *args]

    def run(self, name: str, *args: str) -> str:
        return subprocess.run(
            self.command(name, *args), capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def messages(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.run("postqueue", "-j").splitlines()]

    def settled(self, count: int) -> list[dict[str, object]]:
        """The queue once `count` messages sit in the deferred queue (delivery was tried)."""
        deadline = time.monotonic() + 30
        while True:
            messages = self.messages()
            if len(messages) == count and all(m["queue_name"] == "deferred" for m in messages):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"queue did not settle at {count}: {messages}")
            time.sleep(0.2)

    def mails(self, count: int) -> list[str]:
        """The queued messages' text (envelope, headers, body), oldest first."""
        messages = sorted(self.settled(count), key=lambda m: (m["arrival_time"], m["queue_id"]))
        return [self.run("postcat", "-q", str(m["queue_id"])) for m in messages]

    def clear(self) -> None:
        subprocess.run(self.command("postsuper", "-d", "ALL"), capture_output=True, check=True)


@pytest.fixture(scope="module")
def postfix_instance() -> Iterator[Postfix]:
    postfix = _postfix_tool("postfix")
    # Not under pytest's tmp_path: its parents are root-only, and the postfix user must walk
    # into its data directory.
    root = Path(tempfile.mkdtemp(prefix="status-report-postfix-"))
    root.chmod(0o755)
    config = root / "etc"
    for sub in ("etc", "queue", "data"):
        (root / sub).mkdir()
    shutil.chown(root / "data", user="postfix")
    (config / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
master_service_disable = inet
myhostname = {HOSTNAME}
mydestination =
relayhost = [127.0.0.1]:1
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
"""
    )
    # Debian's master.cf: the standard daemons (pickup, cleanup, qmgr, showq, smtp, ...).
    shutil.copy("/etc/postfix/master.cf", config / "master.cf")
    shutil.copy("/etc/postfix/dynamicmaps.cf", config / "dynamicmaps.cf")
    subprocess.run([postfix, "-c", str(config), "start"], check=True, capture_output=True)
    instance = Postfix(config)
    try:
        yield instance
    finally:
        subprocess.run([postfix, "-c", str(config), "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postfix_queue(postfix_instance: Postfix) -> Iterator[Postfix]:
    postfix_instance.clear()
    yield postfix_instance
    postfix_instance.clear()


def _queue_mail(postfix: Postfix, subject: str) -> None:
    subprocess.run(
        postfix.command("sendmail", "-i", "--", "someone@example.net"),
        input=f"Subject: {subject}\n\ntest\n".encode(),
        check=True,
        timeout=60,
    )


def test_empty_queue_is_ok(postfix_queue):
    finding = status.check_queue(postfix_queue.command("postqueue", "-j"), now=NOW)
    assert (finding.level, finding.detail) == ("ok", "empty")


def test_queued_mail_is_counted_with_its_delay_reason(postfix_queue):
    _queue_mail(postfix_queue, "one")
    _queue_mail(postfix_queue, "two")
    postfix_queue.settled(2)
    command = postfix_queue.command("postqueue", "-j")
    now = datetime.datetime.now(datetime.UTC)

    finding = status.check_queue(command, now=now)
    assert finding.level == "ok"
    assert finding.detail.startswith("2 message(s), oldest 0 h old (connect to 127.0.0.1")

    too_many = status.check_queue(command, now=now, max_messages=2)
    too_old = status.check_queue(command, now=now + datetime.timedelta(hours=7))
    assert (too_many.level, too_old.level) == ("WARN", "WARN")
    assert "postqueue -p" in too_old.hint


def test_queue_check_fails_when_postqueue_fails(postfix_queue, tmp_path):
    command = [_postfix_tool("postqueue"), "-c", str(tmp_path / "missing"), "-j"]
    finding = status.check_queue(command, now=NOW)
    assert finding.level == "FAIL"
    assert "systemctl status postfix" in finding.hint


# --- the whole program: one mail per change of status ------------------------------------------


@dataclass
class Host:
    config_file: Path
    config: dict[str, object]
    env: dict[str, str]
    postfix: Postfix

    def run(self, **changes: object) -> subprocess.CompletedProcess[str]:
        self.config_file.write_text(json.dumps({**self.config, **changes}))
        return subprocess.run(
            [sys.executable, str(PROGRAM), "--config", str(self.config_file)],
            capture_output=True, text=True, env=self.env, timeout=180, check=False,
        )  # fmt: skip


@pytest.fixture
def host(tmp_path, site, dns_world, https_site, postfix_queue) -> Host:
    stamp = tmp_path / "backup-status.json"
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    stamp.write_text(json.dumps({"lastSuccess": now, "snapshot": "0a1b2c3d"}) + "\n")
    config = {
        "hostname": HOSTNAME,
        "adminEmail": ADMIN,
        "ipv4": IPV4,
        "ipv6": IPV6,
        "dnsRecords": dns_world.records,
        "certificateNames": [HOSTNAME],
        "httpsPort": https_site(90),
        "lastBackupFile": str(stamp),
        "volume": "/",
        "disks": ["/"],
        "stateFile": str(tmp_path / "state" / "last-report.json"),
        "healthCommand": ["bash", str(NIXOS / "scripts" / "mailman-site-health.sh"), "--outbound"],
        "postqueueCommand": postfix_queue.command("postqueue", "-j"),
        "sendmailCommand": postfix_queue.command("sendmail"),
        "nameserver": "127.0.0.1",
        "dnsPort": dns_world.port,
    }
    return Host(tmp_path / "config.json", config, {**os.environ, **site.env}, postfix_queue)


def test_mails_on_first_run_and_on_each_change_only(host, dns_world):
    zone = dns_world.zone.records

    first = host.run()
    assert first.returncode == 0, first.stderr
    assert "report mailed to postmaster@example.org" in first.stdout
    [mail] = host.postfix.mails(1)
    assert f"To: {ADMIN}" in mail
    assert f"Subject: {HOSTNAME}: " in mail
    assert "WARN    health outbound" in mail  # the stand-in's port 25 is blocked
    assert "fix: " in mail

    same = host.run()
    assert same.returncode == 0, same.stderr
    assert "status unchanged: no mail" in same.stdout
    host.postfix.settled(1)

    saved = zone[("example.org", "MX")]
    zone[("example.org", "MX")] = ["10 mail.elsewhere.example."]
    try:
        broken = host.run()
    finally:
        zone[("example.org", "MX")] = saved
    assert "report mailed" in broken.stdout, broken.stdout + broken.stderr
    second = host.postfix.mails(2)[1]
    assert "FAIL    dns example.org MX: DNS answers 10 mail.elsewhere.example." in second
    assert "pulumi stack output dnsRecords" in second

    recovered = host.run()
    assert "report mailed" in recovered.stdout, recovered.stdout + recovered.stderr
    third = host.postfix.mails(3)[2]
    assert "Fixed since the last report:" in third
    assert "dns example.org MX (was FAIL)" in third
    assert "FAIL    dns" not in third

    assert "status unchanged: no mail" in host.run().stdout
    host.postfix.settled(3)


def test_a_report_that_could_not_be_mailed_is_tried_again(host):
    failed = host.run(sendmailCommand=["/nonexistent/sendmail"])
    assert failed.returncode == 1
    assert "could not mail the report" in failed.stderr
    assert not Path(str(host.config["stateFile"])).exists()

    retried = host.run()
    assert retried.returncode == 0, retried.stderr
    assert "report mailed" in retried.stdout
    host.postfix.mails(1)


def test_dry_run_neither_mails_nor_remembers(host):
    host.config_file.write_text(json.dumps(host.config))
    result = subprocess.run(
        [sys.executable, str(PROGRAM), "--config", str(host.config_file), "--dry-run"],
        capture_output=True, text=True, env=host.env, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dry run: no mail" in result.stdout
    assert not Path(str(host.config["stateFile"])).exists()
    assert host.postfix.messages() == []


@pytest.mark.parametrize("text", ["", "not json", "{}", '{"problems": [1]}', "[]"])
def test_an_unreadable_state_file_counts_as_no_report_yet(tmp_path, text):
    state = tmp_path / "last-report.json"
    state.write_text(text)
    assert status.read_state(state) is None


def test_state_round_trip_keeps_only_the_problem_keys(tmp_path):
    state = tmp_path / "state" / "last-report.json"
    findings = [
        status.Finding("queue", "postfix", "WARN", "120 message(s)", "postqueue -p"),
        status.Finding("dns", "example.org MX", "ok", "as published"),
    ]
    status.write_state(state, findings, NOW)
    assert status.read_state(state) == {("queue", "postfix", "WARN")}


def test_all_clear_subject_and_recovered_lines():
    ok = status.Finding("dns", "example.org MX", "ok", "as published")
    previous = {("dns", "example.org MX", "FAIL")}
    assert status.subject(HOSTNAME, [ok]) == f"{HOSTNAME}: all checks pass"
    text = status.report_text([ok], previous)
    assert text == (
        "\nFixed since the last report:\n  dns example.org MX (was FAIL)\n\n1 of 1 checks pass.\n"
    )


def test_a_worse_level_is_a_change_but_not_a_fix():
    fail = status.Finding(
        "queue", "postfix", "FAIL", "postqueue: fatal", "systemctl status postfix"
    )
    text = status.report_text([fail], {("queue", "postfix", "WARN")})
    assert "Fixed since" not in text
    assert text.startswith("FAIL    queue postfix: postqueue: fatal\n        fix: systemctl")


def test_bad_configuration_is_one_line_naming_the_file(tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{}")
    result = subprocess.run(
        [sys.executable, str(PROGRAM), "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(config) in result.stderr


# --- nixos/status-report.nix writes the configuration the program reads -------------------------

# The module evaluated for real by nix-instantiate, with only the few nixpkgs functions it calls
# stubbed by builtins (writeText returns its text, so the configuration file is readable here).
MODULE_HARNESS = """
{ nixos, document }:
let
  deployment = import (nixos + "/deployment.nix") { documentPath = document; };
  module = import (nixos + "/status-report.nix") {
    inherit deployment;
    config = {
      services.postfix.package = "/postfix";
      fileSystems."/srv/mailman-site" = {
        device = deployment.dataVolume.device;
        mountPoint = "/srv/mailman-site";
      };
    };
    lib.findFirst =
      pred: default: list:
      let
        found = builtins.filter pred list;
      in
      if found == [ ] then default else builtins.head found;
    pkgs = {
      writeText = name: text: text;
      writeShellScriptBin = name: text: text;
      python3.withPackages = f: "/python";
    };
  };
in
{
  inherit (module) systemd;
  script = builtins.head module.environment.systemPackages;
}
"""


@pytest.fixture(scope="module")
def status_module(tmp_path_factory) -> dict:
    nix_instantiate = require_tool("nix-instantiate")
    harness = tmp_path_factory.mktemp("status-module") / "harness.nix"
    harness.write_text(MODULE_HARNESS)
    return evaluate_json(
        nix_instantiate, "--readonly-mode", str(harness),
        "--arg", "nixos", str(NIXOS), "--arg", "document", str(DOCUMENTS / "production.json"),
    )  # fmt: skip


def _configuration(status_module: dict) -> dict:
    script = status_module["script"]
    assert "-mailman_status_report.py --config " in script
    text = script.split(" --config ", 1)[1].rsplit(' "$@"', 1)[0]
    return json.loads(text)


@pytest.mark.nix
def test_module_writes_exactly_the_keys_the_program_reads(status_module):
    configuration = _configuration(status_module)
    read = set(re.findall(r'raw\["(\w+)"\]', PROGRAM.read_text()))
    assert set(configuration) == read


@pytest.mark.nix
def test_module_configuration_comes_from_the_deployment_document(status_module, tmp_path):
    configuration = _configuration(status_module)
    document = json.loads((DOCUMENTS / "production.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(configuration))
    config = status.Config.read(path)

    assert config.dns_records == document["dnsRecords"]
    assert (config.hostname, config.admin_email) == (document["hostname"], document["adminEmail"])
    assert (config.ipv4, config.ipv6) == (
        document["network"]["ipv4Address"],
        document["network"]["ipv6Address"],
    )
    assert config.certificate_names == [
        "lists.example.org", "mta-sts.example.org", "mta-sts.lists.example.org",
    ]  # fmt: skip
    # The one definition of the backup status file (nixos/backup-status-file.nix).
    assert config.last_backup_file == Path("/var/lib/mailman-site/backup-status.json")
    assert config.volume == Path("/srv/mailman-site")
    assert config.disks == [Path("/"), Path("/srv/mailman-site")]
    assert config.postqueue_command == ["/postfix/sbin/postqueue", "-j"]
    assert config.sendmail_command == ["/postfix/bin/sendmail"]
    assert config.nameserver is None


@pytest.mark.nix
def test_module_runs_the_report_daily_as_a_oneshot_with_its_state_directory(status_module):
    unit = status_module["systemd"]["services"]["mailman-site-status-report"]
    assert unit["startAt"] == "*-*-* 06:40:00"
    assert unit["serviceConfig"]["Type"] == "oneshot"
    assert unit["serviceConfig"]["StateDirectory"] == "mailman-site-status"
    state = _configuration(status_module)["stateFile"]
    assert state.startswith("/var/lib/mailman-site-status/")


def test_readme_states_the_programs_thresholds():
    readme = (NIXOS.parent / "README.md").read_text()
    paragraph = readme.split("**Daily status report.**", 1)[1].split("\n\n", 1)[0]
    for stated in [
        f"under {status.CERTIFICATE_WARN_DAYS} days",
        f"after {status.BACKUP_MAX_AGE.total_seconds() / 3600:.0f} h",
        f"{status.QUEUE_WARN_MESSAGES} messages",
        f"older than {status.QUEUE_WARN_AGE.total_seconds() / 3600:.0f} h",
        f"{status.DISK_WARN_PERCENT} %",
        f"{status.DISK_FAIL_PERCENT} %",
    ]:
        assert stated in " ".join(paragraph.split()), stated
