#!/usr/bin/env python3
"""Smoke check of a deployed Mailman site, from the outside, using only its stack outputs.

    python tools/smoke_check.py --stack staging          # reads `pulumi stack output --json`
    python tools/smoke_check.py --outputs outputs.json   # the same JSON, saved earlier

Checks what a list member or a remote mail server sees: Postorius and HyperKitty over HTTPS,
the certificate's name, the A/AAAA, MX and PTR records, and Postfix's banner and STARTTLS on
port 25. Prints one table row per check and exits 1 if any check failed.

Only the standard library and dnspython, so it runs anywhere the Pulumi program's
virtualenv does. The resolver, the address connected to and the ports are injectable so the
tests can point every check at servers on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.resolver
import dns.reversename

Status = Literal["PASS", "FAIL", "SKIP"]
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Result:
    check: str
    target: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Site:
    """The stack outputs the smoke check needs (a subset of the program's outputs)."""

    hostname: str
    postorius_url: str
    hyperkitty_url: str
    ipv4: str | None
    ipv6: str | None
    mail_domains: tuple[str, ...]

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any]) -> Site:
        site_url = outputs.get("siteUrl")
        if not isinstance(site_url, str) or not site_url.startswith("https://"):
            raise ValueError("stack output siteUrl is missing or not an https:// URL")
        hostname = str(outputs.get("hostname") or urlsplit(site_url).hostname or "")
        domains = outputs.get("mailDomains") or [hostname]
        return cls(
            hostname=hostname,
            postorius_url=str(outputs.get("postoriusUrl") or urljoin(site_url, "postorius/")),
            hyperkitty_url=str(outputs.get("hyperkittyUrl") or urljoin(site_url, "hyperkitty/")),
            ipv4=outputs.get("ipv4") or None,
            ipv6=outputs.get("ipv6") or None,
            mail_domains=tuple(str(d) for d in domains),
        )


@dataclass
class Probe:
    """How to reach the site. Defaults are the real world; tests override every field."""

    resolver: dns.resolver.Resolver = field(default_factory=dns.resolver.Resolver)
    connect_to: str | None = None  # address to connect to instead of resolving the hostname
    https_port: int = 443
    smtp_port: int = 25
    ca_file: str | None = None  # CA bundle instead of the system's, e.g. LE staging roots
    timeout: float = 10.0
    skip: frozenset[str] = frozenset()  # check groups to skip: "https", "dns", "smtp"

    def tls_context(self) -> ssl.SSLContext:
        # The chain is verified here; the name is compared by cert_names_match so the same
        # rule serves HTTPS and STARTTLS even when connecting to an address, not the name.
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def address(self, hostname: str) -> str:
        return self.connect_to or hostname


def cert_names(cert: dict[str, Any]) -> list[str]:
    """DNS names of a certificate as returned by SSLSocket.getpeercert()."""
    sans = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if sans:
        return sans
    # RFC 6125: the common name counts only when there is no DNS subjectAltName.
    return [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]


def cert_names_match(hostname: str, names: Sequence[str]) -> bool:
    """True if one certificate name covers hostname (a wildcard covers exactly one label)."""
    host = hostname.rstrip(".").lower()
    for name in (n.rstrip(".").lower() for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


class _AddressedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a chosen address while sending SNI and Host for the site's name."""

    def __init__(self, hostname: str, address: str, port: int, probe: Probe) -> None:
        super().__init__(hostname, port, timeout=probe.timeout)
        self._address = address
        self._tls = probe.tls_context()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def fetch(url: str, probe: Probe) -> tuple[int, str, dict[str, Any]]:
    """GET url, following redirects; returns status, body and the peer certificate."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"not an https URL: {url}")
        port = parts.port or probe.https_port
        conn = _AddressedHTTPSConnection(parts.hostname, probe.address(parts.hostname), port, probe)
        try:
            conn.request("GET", parts.path or "/", headers={"User-Agent": "mailman-smoke-check"})
            response = conn.getresponse()
            body = response.read(1_000_000).decode("utf-8", "replace")
            cert = conn.sock.getpeercert() if isinstance(conn.sock, ssl.SSLSocket) else None
        finally:
            conn.close()
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        return response.status, body, cert or {}
    raise ValueError(f"more than {MAX_REDIRECTS} redirects")


def check_page(name: str, url: str, marker: str, probe: Probe) -> Result:
    """The page answers 200 with its application's name in it (not a default nginx page)."""
    try:
        status, body, _cert = fetch(url, probe)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return Result(f"HTTPS {name}", url, "FAIL", _reason(error))
    if status != 200:
        return Result(f"HTTPS {name}", url, "FAIL", f"HTTP {status}")
    if marker.lower() not in body.lower():
        return Result(f"HTTPS {name}", url, "FAIL", f"HTTP 200 but no '{marker}' in the page")
    return Result(f"HTTPS {name}", url, "PASS", "HTTP 200")


def check_certificate(site: Site, probe: Probe) -> Result:
    target = f"{site.hostname}:{probe.https_port}"
    try:
        with (
            socket.create_connection(
                (probe.address(site.hostname), probe.https_port), probe.timeout
            ) as raw,
            probe.tls_context().wrap_socket(raw, server_hostname=site.hostname) as tls,
        ):
            cert = tls.getpeercert() or {}
    except (OSError, ssl.SSLError) as error:
        return Result("certificate name", target, "FAIL", _reason(error))
    return _name_result("certificate name", target, site.hostname, cert)


def _name_result(check: str, target: str, hostname: str, cert: dict[str, Any]) -> Result:
    names = cert_names(cert)
    if cert_names_match(hostname, names):
        return Result(check, target, "PASS", f"trusted, names {', '.join(names)}")
    return Result(check, target, "FAIL", f"names {', '.join(names) or 'none'} != {hostname}")


def check_address_records(site: Site, probe: Probe) -> list[Result]:
    results = []
    for rdtype, expected in (("A", site.ipv4), ("AAAA", site.ipv6)):
        if not expected:
            continue
        try:
            found = sorted(r.to_text() for r in probe.resolver.resolve(site.hostname, rdtype))
        except dns.exception.DNSException as error:
            results.append(Result(f"DNS {rdtype}", site.hostname, "FAIL", _reason(error)))
            continue
        status: Status = "PASS" if expected in found else "FAIL"
        results.append(Result(f"DNS {rdtype}", site.hostname, status, ", ".join(found)))
    return results


def check_mx(site: Site, probe: Probe) -> list[Result]:
    """Every mail domain's MX points at the list server's hostname."""
    results = []
    want = site.hostname.rstrip(".").lower()
    for domain in site.mail_domains:
        try:
            answer = probe.resolver.resolve(domain, "MX")
        except dns.exception.DNSException as error:
            results.append(Result("DNS MX", domain, "FAIL", _reason(error)))
            continue
        hosts = sorted(str(r.exchange).rstrip(".").lower() for r in answer)
        status: Status = "PASS" if want in hosts else "FAIL"
        detail = ", ".join(hosts) if status == "PASS" else f"{', '.join(hosts)} (want {want})"
        results.append(Result("DNS MX", domain, status, detail))
    return results


def check_ptr(site: Site, probe: Probe) -> list[Result]:
    """Reverse DNS of both addresses names the host (receivers check it against the HELO)."""
    results = []
    want = site.hostname.rstrip(".").lower()
    for label, address in (("PTR ipv4", site.ipv4), ("PTR ipv6", site.ipv6)):
        if not address:
            results.append(Result(label, "-", "SKIP", "no such stack output"))
            continue
        try:
            answer = probe.resolver.resolve(dns.reversename.from_address(address), "PTR")
        except dns.exception.DNSException as error:
            results.append(Result(label, address, "FAIL", _reason(error)))
            continue
        names = sorted(str(r.target).rstrip(".").lower() for r in answer)
        status: Status = "PASS" if names == [want] else "FAIL"
        detail = ", ".join(names) if status == "PASS" else f"{', '.join(names)} (want {want})"
        results.append(Result(label, address, status, detail))
    return results


def check_smtp(site: Site, probe: Probe) -> list[Result]:
    """Postfix greets with its hostname on 25 and offers STARTTLS with a matching cert."""
    target = f"{site.hostname}:{probe.smtp_port}"
    address = probe.address(site.hostname)
    try:
        smtp = smtplib.SMTP(timeout=probe.timeout, local_hostname="smoke-check.invalid")
        # starttls() sends this as SNI; SMTP() sets it only when it connects in __init__,
        # which would hide the banner of a server that refuses service.
        smtp._host = site.hostname  # type: ignore[attr-defined]
        code, banner_bytes = smtp.connect(address, probe.smtp_port)
    except (OSError, smtplib.SMTPException) as error:
        return [
            Result("SMTP banner", target, "FAIL", _reason(error)),
            Result("SMTP STARTTLS", target, "FAIL", "no connection"),
        ]
    try:
        banner = banner_bytes.decode("utf-8", "replace")
        # Postfix's default banner is "$myhostname ESMTP $mail_name".
        first_word = banner.split(maxsplit=1)[0].lower() if banner else ""
        status: Status = "PASS" if code == 220 and first_word == site.hostname.lower() else "FAIL"
        return [
            Result("SMTP banner", target, status, f"{code} {banner}"),
            _starttls(smtp, site, target, probe),
        ]
    finally:
        # The verdict is in; a server that drops QUIT does not change it.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()
        smtp.close()


def _starttls(smtp: smtplib.SMTP, site: Site, target: str, probe: Probe) -> Result:
    try:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            return Result("SMTP STARTTLS", target, "FAIL", "STARTTLS not offered after EHLO")
        smtp.starttls(context=probe.tls_context())
    except (OSError, smtplib.SMTPException) as error:
        return Result("SMTP STARTTLS", target, "FAIL", _reason(error))
    cert = smtp.sock.getpeercert() if isinstance(smtp.sock, ssl.SSLSocket) else None
    return _name_result("SMTP STARTTLS", target, site.hostname, cert or {})


def run_checks(site: Site, probe: Probe) -> list[Result]:
    groups: list[tuple[str, Callable[[], list[Result]]]] = [
        (
            "https",
            lambda: [
                check_page("Postorius", site.postorius_url, "Postorius", probe),
                check_page("HyperKitty", site.hyperkitty_url, "HyperKitty", probe),
                check_certificate(site, probe),
            ],
        ),
        (
            "dns",
            lambda: [
                *check_address_records(site, probe),
                *check_mx(site, probe),
                *check_ptr(site, probe),
            ],
        ),
        ("smtp", lambda: check_smtp(site, probe)),
    ]
    results: list[Result] = []
    for group, run in groups:
        if group in probe.skip:
            results.append(Result(f"{group} checks", site.hostname, "SKIP", "skipped (--skip)"))
        else:
            results.extend(run())
    return results


def format_table(results: Sequence[Result]) -> str:
    rows = [("CHECK", "TARGET", "RESULT", "DETAIL")]
    rows += [(r.check, r.target, r.status, r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    failed = sum(r.status == "FAIL" for r in results)
    passed = sum(r.status == "PASS" for r in results)
    skipped = sum(r.status == "SKIP" for r in results)
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def _reason(error: BaseException) -> str:
    # dnspython's messages list every server tried; the kind of failure is what the table needs.
    if isinstance(error, dns.resolver.NXDOMAIN):
        return "no such name (NXDOMAIN)"
    if isinstance(error, dns.resolver.NoAnswer):
        return "no record of this type"
    if isinstance(error, dns.resolver.LifetimeTimeout):
        return "DNS timed out"
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:160]


def read_outputs(stack: str | None, outputs_file: str | None) -> dict[str, Any]:
    if outputs_file:
        data = json.loads(Path(outputs_file).read_text(encoding="utf-8"))
    else:
        # Without --show-secrets: the check needs no secret, and none reaches a CI log.
        completed = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", str(stack)],
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(completed.stdout)
    if not isinstance(data, dict):
        raise ValueError("stack outputs are not a JSON object")
    return data


def make_resolver(
    nameserver: str | None, port: int = 53, timeout: float = 10.0
) -> dns.resolver.Resolver:
    """The system's resolver, or one that asks only nameserver (on port) when given."""
    resolver = dns.resolver.Resolver(configure=not nameserver)
    if nameserver:
        resolver.nameservers = [nameserver]
        resolver.port = port
    resolver.lifetime = timeout
    return resolver


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read `pulumi stack output --json` of this stack")
    source.add_argument("--outputs", help="read the stack outputs from this JSON file")
    parser.add_argument(
        "--ca-file", help="trust this CA bundle instead of the system's (Let's Encrypt staging)"
    )
    parser.add_argument("--nameserver", help="ask this DNS server (IP) instead of the system's")
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--connect-to", help="address to connect to instead of the hostname")
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument(
        "--skip",
        action="append",
        choices=["https", "dns", "smtp"],
        default=[],
        help="skip a group of checks (repeatable); e.g. smtp where outbound port 25 is blocked",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        site = Site.from_outputs(read_outputs(args.stack, args.outputs))
    except (OSError, ValueError, subprocess.CalledProcessError) as error:
        print(f"smoke check: cannot read stack outputs: {_reason(error)}", file=sys.stderr)
        return 2
    probe = Probe(
        resolver=make_resolver(args.nameserver, args.dns_port, args.timeout),
        connect_to=args.connect_to,
        https_port=args.https_port,
        smtp_port=args.smtp_port,
        ca_file=args.ca_file,
        timeout=args.timeout,
        skip=frozenset(args.skip),
    )
    results = run_checks(site, probe)
    print(format_table(results))
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
