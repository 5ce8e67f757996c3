"""The DNS records a Mailman site needs, computed from plain values (no Pulumi here).

One function, `site_records`, so that the zone we manage and the list we export for a zone
managed elsewhere are the same records by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TTL = 3600
MX_PREFERENCE = 10


@dataclass(frozen=True)
class Record:
    """One record set: every value of `type` at `name` (an absolute name without trailing dot)."""

    name: str
    type: str
    values: tuple[str, ...]  # TXT values are the text itself, unquoted and unsplit
    ttl: int = DEFAULT_TTL

    def relative_to(self, zone: str) -> str:
        """The record name inside `zone`, `@` for the apex (the Hetzner API's spelling)."""
        if self.name == zone:
            return "@"
        return self.name[: -len(zone) - 1]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "values": list(self.values)}


def dkim_public_key_base64(public_key_pem: str) -> str:
    """The `p=` value of a DKIM record: the base64 SubjectPublicKeyInfo inside a PEM block."""
    lines = [line.strip() for line in public_key_pem.strip().splitlines()]
    if (
        not lines
        or lines[0] != "-----BEGIN PUBLIC KEY-----"
        or lines[-1] != "-----END PUBLIC KEY-----"
    ):
        raise ValueError("not a PEM public key")
    return "".join(lines[1:-1])


def spf_value(ipv4: str, ipv6: str) -> str:
    # Only this host sends for these names; everything else fails hard.
    return f"v=spf1 ip4:{ipv4} ip6:{ipv6} -all"


def dmarc_value(policy: str, report_to: str) -> str:
    return f"v=DMARC1; p={policy}; rua=mailto:{report_to}; adkim=r; aspf=r"


def dkim_value(public_key_base64: str) -> str:
    return f"v=DKIM1; k=rsa; p={public_key_base64}"


def site_records(
    *,
    hostname: str,
    mail_domains: tuple[str, ...],
    ipv4: str,
    ipv6: str,
    admin_email: str,
    dmarc_policy: str,
    dkim_selector: str,
    dkim_public_key_pem: str,
) -> list[Record]:
    """Every record the site needs, in a stable order."""
    spf = spf_value(ipv4, ipv6)
    records = [
        Record(hostname, "A", (ipv4,)),
        Record(hostname, "AAAA", (ipv6,)),
    ]
    # Postfix greets with the hostname; receivers check SPF for the HELO name too.
    if hostname not in mail_domains:
        records.append(Record(hostname, "TXT", (spf,)))
    dkim = dkim_value(dkim_public_key_base64(dkim_public_key_pem))
    report_domain = admin_email.rsplit("@", 1)[1]
    for domain in mail_domains:
        records += [
            Record(domain, "MX", (f"{MX_PREFERENCE} {hostname}.",)),
            Record(domain, "TXT", (spf,)),
            Record(f"_dmarc.{domain}", "TXT", (dmarc_value(dmarc_policy, admin_email),)),
            Record(f"{dkim_selector}._domainkey.{domain}", "TXT", (dkim,)),
        ]
        # RFC 7489 section 7.1: a report address outside the domain must opt in to receiving.
        if report_domain != domain and not domain.endswith("." + report_domain):
            records.append(Record(f"{domain}._report._dmarc.{report_domain}", "TXT", ("v=DMARC1",)))
    return records


def in_zone(records: list[Record], zone: str) -> list[Record]:
    """The records that belong in `zone` (a DMARC report authorization may live elsewhere)."""
    return [r for r in records if r.name == zone or r.name.endswith("." + zone)]


def txt_presentation(text: str) -> str:
    """Zone-file form of a TXT value: quoted strings of at most 255 characters each."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
