"""The DNS records a Mailman site needs, computed from plain values (no Pulumi here).

One function, `site_records`, so that the zone we manage and the list we export for a zone
managed elsewhere are the same records by construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DEFAULT_TTL = 3600
MX_PREFERENCE = 10

# MTA-STS max_age (RFC 8461 section 3.2): a week once certificates are real, a day while the
# certificates are Let's Encrypt staging ones and the policy is only "testing".
MTA_STS_MAX_AGE_ENFORCE = 604800
MTA_STS_MAX_AGE_TESTING = 86400
MTA_STS_ID_LENGTH = 20

# Let's Encrypt validates mta-sts.<domain> over HTTP at this host (HTTP-01), so these names must
# resolve here before the host can get their certificates.
MTA_STS_ADDRESS_NOTE = (
    "create before the first deploy: Let's Encrypt validates this name over HTTP at this host"
)


@dataclass(frozen=True)
class Record:
    """One record set: every value of `type` at `name` (an absolute name without trailing dot)."""

    name: str
    type: str
    values: tuple[str, ...]  # TXT values are the text itself, unquoted and unsplit
    ttl: int = DEFAULT_TTL
    note: str = ""  # what a user creating the record by hand must know

    def relative_to(self, zone: str) -> str:
        """The record name inside `zone`, `@` for the apex (the Hetzner API's spelling)."""
        if self.name == zone:
            return "@"
        return self.name[: -len(zone) - 1]

    def as_dict(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "ttl": self.ttl,
            "values": list(self.values),
        }
        if self.note:
            fields["note"] = self.note
        return fields


@dataclass(frozen=True)
class MtaStsPolicy:
    """The MTA-STS policy every mail domain publishes (RFC 8461): our host is the only MX.

    The NixOS side renders the same text from `mode` and `max_age` (nixos/deployment.nix); the
    contract test compares the two, so the `id` in DNS always belongs to the served policy.
    """

    mode: str  # "enforce" or "testing"
    max_age: int

    @classmethod
    def for_certificates(cls, *, acme_staging: bool) -> MtaStsPolicy:
        # Senders validate our certificate against the policy: staging certificates are not
        # trusted, so enforcing would make them refuse to deliver.
        if acme_staging:
            return cls("testing", MTA_STS_MAX_AGE_TESTING)
        return cls("enforce", MTA_STS_MAX_AGE_ENFORCE)

    def text(self, mx_host: str) -> str:
        """The body of https://mta-sts.<domain>/.well-known/mta-sts.txt."""
        return f"version: STSv1\nmode: {self.mode}\nmx: {mx_host}\nmax_age: {self.max_age}\n"

    def policy_id(self, mx_host: str) -> str:
        """A stable `id` that changes exactly when the policy text changes (1-32 alphanumerics)."""
        return hashlib.sha256(self.text(mx_host).encode()).hexdigest()[:MTA_STS_ID_LENGTH]


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


def mta_sts_value(policy_id: str) -> str:
    return f"v=STSv1; id={policy_id}"


def tlsrpt_value(report_to: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:{report_to}"


def mta_sts_host(domain: str) -> str:
    """The policy host of a mail domain (RFC 8461 section 3.3)."""
    return f"mta-sts.{domain}"


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
    mta_sts: MtaStsPolicy,
) -> list[Record]:
    """Every record the site needs, in a stable order."""
    spf = spf_value(ipv4, ipv6)
    sts = mta_sts_value(mta_sts.policy_id(hostname))
    tlsrpt = tlsrpt_value(admin_email)
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
            Record(f"_mta-sts.{domain}", "TXT", (sts,)),
            Record(f"_smtp._tls.{domain}", "TXT", (tlsrpt,)),
        ]
        policy_host = mta_sts_host(domain)
        if policy_host != hostname:  # else the hostname's own A/AAAA already point here
            records += [
                Record(policy_host, "A", (ipv4,), note=MTA_STS_ADDRESS_NOTE),
                Record(policy_host, "AAAA", (ipv6,), note=MTA_STS_ADDRESS_NOTE),
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
