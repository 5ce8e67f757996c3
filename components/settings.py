"""Stack settings: every `mailman:` key, read once, validated before any resource exists.

A bad value stops the program with one line, `mailman:<key>: "<value>" is not <expected form>`,
raised as `pulumi.RunError` (the Pulumi CLI prints those without a Python traceback). Secret
values are never echoed: the line shows `[secret]` instead.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pulumi
from pulumi.runtime.config import CONFIG, get_config, get_config_env, is_config_secret

from components.lists import ListsError, NormalizedList, is_mailman_address, load_lists

NAMESPACE = "mailman"
DKIM_SELECTOR = "mailman"
INSTALL_IMAGE = "debian-12"
DEFAULT_SSH_ALLOWED_IPS = ("0.0.0.0/0", "::/0")
REQUIRED = "\u2013"  # the en dash the README shows as the default of a required key


@dataclass(frozen=True)
class ConfigKey:
    """One `mailman:` stack setting, as the README's configuration table shows it."""

    name: str
    type: str
    default: str  # REQUIRED when there is no default
    description: str


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "hostname", "FQDN, required", REQUIRED, "web UI host, Postfix `myhostname`, PTR name"
    ),
    ConfigKey(
        "adminEmail",
        "email, required",
        REQUIRED,
        "site owner, ACME account, superuser e-mail, DMARC reports; postmaster@, abuse@ and "
        "root mail of every mail domain go here, so it must be a mailbox outside them",
    ),
    ConfigKey(
        "mailDomains", "list of domains", "`[hostname]`", "domains lists live in (`list@domain`)"
    ),
    ConfigKey(
        "dnsZone",
        "zone name",
        "unset",
        "Hetzner DNS zone to write records into; unset = no DNS resources, records exported as "
        "`dnsRecords`",
    ),
    ConfigKey("serverType", "string", "`cx23`", "Hetzner server type"),
    ConfigKey("location", "string", "`nbg1`", "Hetzner location"),
    ConfigKey(
        "nixosRelease",
        "string",
        "`nixos-26.05`",
        "NixOS channel/branch the host runs; pinned, visible in previews",
    ),
    ConfigKey(
        "sshPublicKeys",
        "list",
        "`[]`",
        "operator keys added to root besides the generated deploy key",
    ),
    ConfigKey("sshAllowedIps", "list of CIDRs", "world", "sources allowed on port 22"),
    ConfigKey("acmeStaging", "bool", "false", "use Let's Encrypt staging (staging/review stacks)"),
    ConfigKey(
        "protect",
        "bool",
        "true",
        "delete/rebuild protection + Pulumi `protect` on server, IPs, volume",
    ),
    ConfigKey("backups", "bool", "true", "Hetzner automatic backups"),
    ConfigKey("volumeSize", "int GB", "10", "data volume for `/var/lib` state"),
    ConfigKey(
        "database",
        "postgresql/sqlite",
        "postgresql",
        "Mailman core + web database on the host (sqlite for small/throwaway stacks)",
    ),
    ConfigKey("lists", "path", "`lists.yaml`", "declarative mailing lists (see below)"),
    ConfigKey("adminUser", "string", "`admin`", "Django superuser name"),
    ConfigKey(
        "adminPassword",
        "secret",
        "generated",
        "Django superuser password (generated ones are exported as a secret output)",
    ),
    ConfigKey("dmarcPolicy", "none/quarantine/reject", "none", "`_dmarc` policy"),
    ConfigKey("mailman2Redirects", "bool", "false", "the seed's optional Mailman 2 URL redirects"),
    ConfigKey(
        "socialLogins",
        "object",
        "unset",
        "django-allauth providers, e.g. `github: {clientId, clientSecret(secret)}`",
    ),
)

_KNOWN_KEYS = tuple(key.name for key in CONFIG_KEYS)

# Hetzner Cloud server type families: shared x86 (cx, cpx), shared Arm (cax), dedicated (ccx).
# The install image (Debian 12) and nixos-infect exist for both architectures, so both are fine.
_SERVER_TYPE = re.compile(r"^(cx|cpx|cax|ccx)[0-9]{2}$")
LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FQDN = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z]{{2,63}}$")
_NIXOS_RELEASE = re.compile(r"^nixos-[0-9]{2}\.(05|11)$")
_DJANGO_USERNAME = re.compile(r"^[A-Za-z0-9@.+_-]{1,150}$")
_PROVIDER_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MIN_VOLUME_GB = 10  # Hetzner's smallest volume
MAX_VOLUME_GB = 10240  # Hetzner's largest volume (10 TB)
MIN_ADMIN_PASSWORD = 12


@dataclass(frozen=True)
class SocialLogin:
    """One django-allauth provider app; the client secret stays an `Output` marked secret."""

    provider: str
    client_id: str
    client_secret: pulumi.Output[str]


@dataclass(frozen=True)
class Settings:
    """The validated stack configuration. Built only by `load_settings`."""

    project: str
    stack: str
    hostname: str
    admin_email: str
    mail_domains: tuple[str, ...]
    dns_zone: str | None
    server_type: str
    location: str
    nixos_release: str
    ssh_public_keys: tuple[str, ...]
    ssh_allowed_ips: tuple[str, ...]
    acme_staging: bool
    protect: bool
    backups: bool
    volume_size: int
    database: str
    lists_path: Path
    lists: tuple[NormalizedList, ...]
    admin_user: str
    admin_password: pulumi.Output[str] | None  # None: the site generates one
    dmarc_policy: str
    mailman2_redirects: bool
    social_logins: tuple[SocialLogin, ...]
    dkim_selector: str = DKIM_SELECTOR

    @property
    def labels(self) -> dict[str, str]:
        """Hetzner labels on every resource that takes them."""
        return {"project": self.project, "stack": _label_value(self.stack)}

    @property
    def resource_prefix(self) -> str:
        """Hetzner names are unique per Hetzner project, so they carry the stack name."""
        return f"{self.project}-{_label_value(self.stack)}"


def _label_value(text: str) -> str:
    # Hetzner label values: up to 63 of [A-Za-z0-9._-], alphanumeric at both ends.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("._-")
    return cleaned or "stack"


def fail(key: str, value: object, expected: str, *, secret: bool = False) -> NoReturn:
    """Stop the program with the one-line message for a bad setting."""
    if secret:
        shown = "[secret]"
    elif value is None:
        shown = "(unset)"
    else:
        shown = json.dumps(value, ensure_ascii=False)
    raise pulumi.RunError(f"{NAMESPACE}:{key}: {shown} is not {expected}")


class _Reader:
    """Reads raw config values; structured values arrive JSON-encoded, like the CLI stores them."""

    def raw(self, key: str) -> str | None:
        value = get_config(f"{NAMESPACE}:{key}")
        return None if value is None else str(value)

    def secret(self, key: str) -> bool:
        return is_config_secret(f"{NAMESPACE}:{key}")

    def string(self, key: str, default: str) -> str:
        value = self.raw(key)
        return default if value is None else value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if value in ("true", "false"):
            return value == "true"
        fail(key, value, "a boolean (true or false)")

    def structured(self, key: str, expected: str) -> object:
        value = self.raw(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            fail(key, value, expected, secret=self.secret(key))


def configured_keys() -> set[str]:
    """Names of the `mailman:` keys set in this stack's config."""
    keys = set(CONFIG.get()) | set(get_config_env())
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :] for k in keys if k.startswith(prefix)}


def _check_known_keys() -> None:
    for key in sorted(configured_keys()):
        if key not in _KNOWN_KEYS:
            close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            fail(key, get_config(f"{NAMESPACE}:{key}"), f"a known setting{hint}")


def _domain(key: str, value: object, what: str = "a fully qualified domain name") -> str:
    if not isinstance(value, str):
        fail(key, value, what)
    name = value.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            puny = name.encode("idna").decode("ascii")
        except UnicodeError:
            fail(key, value, what)
        fail(key, value, f"{what} in ASCII (write internationalized names in punycode: {puny})")
    if not _FQDN.match(name):
        fail(key, value, what)
    return name


def _email(key: str, value: object) -> str:
    expected = "an e-mail address (name@example.org)"
    if not isinstance(value, str) or value.count("@") != 1:
        fail(key, value, expected)
    local, _, domain = value.strip().partition("@")
    # Mailman's own address rule (nixos/mailman_list_rules.py): adminEmail becomes the
    # superuser's address and every list's default owner. The domain must also be a name
    # ACME, DMARC reports and the DNS records can use.
    if not is_mailman_address(value.strip()):
        fail(key, value, expected)
    if not domain.isascii() or not _FQDN.match(domain.lower()):
        fail(key, value, expected)
    return f"{local}@{domain.lower()}"


def _admin_outside(admin_email: str, local_domains: tuple[str, ...]) -> None:
    """adminEmail must be a mailbox elsewhere: this host keeps no mailboxes.

    postfix.nix aliases postmaster@, abuse@ and root of every local domain to adminEmail; an
    address of a local domain would loop back or end in root's unread local mailbox.
    """
    domain = admin_email.rpartition("@")[2]
    if domain in local_domains:
        names = ", ".join(sorted(set(local_domains)))
        fail(
            "adminEmail",
            admin_email,
            f"a mailbox outside this host's mail domains ({names}): the host keeps no "
            "mailboxes, so mail to it would never reach a human",
        )


def _string_list(reader: _Reader, key: str, expected: str) -> list[Any] | None:
    value = reader.structured(key, expected)
    if value is None:
        return None
    if not isinstance(value, list):
        fail(key, value, expected)
    return value


def _ssh_public_key(key: str, value: object) -> str:
    expected = "an OpenSSH public key (ssh-ed25519 AAAA... comment)"
    if not isinstance(value, str):
        fail(key, value, expected)
    parts = value.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        fail(key, value, expected)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        fail(key, value, expected)
    # The blob starts with the length-prefixed key type; a pasted private key or a truncated
    # line fails here instead of on the server.
    type_length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + type_length].decode("ascii", "replace") != parts[0]:
        fail(key, value, expected)
    return " ".join(parts)


def _cidr(key: str, value: object) -> str:
    expected = "an IPv4 or IPv6 network in CIDR form (203.0.113.0/24, 2001:db8::/32)"
    if not isinstance(value, str) or "/" not in value:
        fail(key, value, expected)
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        fail(key, value, expected)
    # The provider stores a firewall source as Go's net.IPNet.String()
    # (terraform-provider-hcloud v1.68.0 internal/firewall/validation.go, normalizeIP), which
    # equals this text except for IPv4-mapped IPv6 networks: Go prints those as IPv4 with an IPv6
    # prefix length, a difference on every run. They mean IPv4 anyway.
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        fail(key, value, f"{expected}; write IPv4-mapped networks as IPv4")
    return str(network)


def _within_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _social_logins(reader: _Reader) -> tuple[SocialLogin, ...]:
    key = "socialLogins"
    expected = "an object of provider ids to {clientId, clientSecret}"
    value = reader.structured(key, expected)
    if value is None:
        return ()
    secret = reader.secret(key)
    if not isinstance(value, dict):
        fail(key, value, expected, secret=secret)
    logins = []
    for provider, app in sorted(value.items()):
        if not _PROVIDER_ID.match(provider):
            fail(
                f"{key}.{provider}", provider, "a django-allauth provider id (github, gitlab, ...)"
            )
        if not isinstance(app, dict) or set(app) != {"clientId", "clientSecret"}:
            fail(
                f"{key}.{provider}", app, "an object with clientId and clientSecret", secret=secret
            )
        client_id, client_secret = app["clientId"], app["clientSecret"]
        if not isinstance(client_id, str) or not client_id.strip():
            fail(f"{key}.{provider}.clientId", client_id, "a non-empty string")
        if not isinstance(client_secret, str) or not client_secret.strip():
            fail(f"{key}.{provider}.clientSecret", "", "a non-empty string", secret=True)
        if not secret:
            fail(
                f"{key}.{provider}.clientSecret",
                "",
                "a secret (set it with `pulumi config set --secret --path`)",
                secret=True,
            )
        logins.append(SocialLogin(provider, client_id, pulumi.Output.secret(client_secret)))
    return tuple(logins)


def _admin_password(reader: _Reader) -> pulumi.Output[str] | None:
    key = "adminPassword"
    value = reader.raw(key)
    if value is None:
        return None
    if not reader.secret(key):
        fail(key, "", "a secret (set it with `pulumi config set --secret`)", secret=True)
    if len(value) < MIN_ADMIN_PASSWORD:
        fail(key, "", f"a password of at least {MIN_ADMIN_PASSWORD} characters", secret=True)
    return pulumi.Output.secret(value)


def _lists(
    reader: _Reader, mail_domains: tuple[str, ...], admin_email: str
) -> tuple[Path, tuple[NormalizedList, ...]]:
    key = "lists"
    text = reader.string(key, "lists.yaml")
    # Pulumi runs the program in the project directory, so relative paths are project-relative.
    path = Path(text)
    if not path.is_file():
        fail(key, text, "a path to an existing YAML file (relative to the project directory)")
    try:
        return path, load_lists(path, mail_domains, admin_email)
    except ListsError as error:
        raise pulumi.RunError(f"{NAMESPACE}:{key}: {error}") from None


def _required(reader: _Reader, key: str, example: str) -> str:
    value = reader.raw(key)
    if value is None:
        fail(key, None, f"optional: pulumi config set {NAMESPACE}:{key} {example}")
    return value


def _names(reader: _Reader) -> dict[str, Any]:
    """hostname, adminEmail, mailDomains, dnsZone and how they fit together."""
    hostname = _domain("hostname", _required(reader, "hostname", "lists.example.org"))
    admin_email = _email("adminEmail", _required(reader, "adminEmail", "postmaster@example.org"))
    domains_raw = _string_list(reader, "mailDomains", "a list of domain names")
    if domains_raw is None:
        mail_domains: tuple[str, ...] = (hostname,)
    else:
        if not domains_raw:
            fail("mailDomains", domains_raw, "a non-empty list of domain names")
        mail_domains = tuple(_domain("mailDomains", d) for d in domains_raw)
        duplicates = sorted({d for d in mail_domains if mail_domains.count(d) > 1})
        if duplicates:
            fail("mailDomains", duplicates[0], "listed once (it appears twice)")

    _admin_outside(admin_email, (*mail_domains, hostname))
    zone_raw = reader.raw("dnsZone")
    dns_zone = None if zone_raw is None else _domain("dnsZone", zone_raw, "a DNS zone name")
    if dns_zone is not None:
        if not _within_zone(hostname, dns_zone):
            fail("hostname", hostname, f"inside the managed dnsZone {dns_zone}")
        for domain in mail_domains:
            if not _within_zone(domain, dns_zone):
                fail("mailDomains", domain, f"inside the managed dnsZone {dns_zone}")
    return {
        "hostname": hostname,
        "admin_email": admin_email,
        "mail_domains": mail_domains,
        "dns_zone": dns_zone,
    }


def _machine(reader: _Reader) -> dict[str, Any]:
    """Server type, location, NixOS release, volume, SSH access, protection and backups."""
    server_type = reader.string("serverType", "cx23").strip().lower()
    if not _SERVER_TYPE.match(server_type):
        fail("serverType", server_type, "a Hetzner server type (cx23, cpx22, cax11, ccx13, ...)")
    location = reader.string("location", "nbg1").strip().lower()
    if location not in LOCATIONS:
        fail("location", location, f"a Hetzner location ({', '.join(LOCATIONS)})")
    nixos_release = reader.string("nixosRelease", "nixos-26.05").strip()
    if not _NIXOS_RELEASE.match(nixos_release):
        fail("nixosRelease", nixos_release, "a NixOS release channel (nixos-26.05)")
    volume = reader.string("volumeSize", str(MIN_VOLUME_GB)).strip()
    if not volume.isdigit() or not MIN_VOLUME_GB <= int(volume) <= MAX_VOLUME_GB:
        fail("volumeSize", volume, f"a whole number of GB from {MIN_VOLUME_GB} to {MAX_VOLUME_GB}")

    keys_raw = _string_list(reader, "sshPublicKeys", "a list of OpenSSH public keys") or []
    ips_raw = _string_list(reader, "sshAllowedIps", "a list of CIDRs")
    if ips_raw is not None and not ips_raw:
        fail("sshAllowedIps", ips_raw, "a non-empty list of CIDRs (omit it to allow everyone)")
    return {
        "server_type": server_type,
        "location": location,
        "nixos_release": nixos_release,
        "volume_size": int(volume),
        "ssh_public_keys": tuple(_ssh_public_key("sshPublicKeys", k) for k in keys_raw),
        "ssh_allowed_ips": (
            DEFAULT_SSH_ALLOWED_IPS
            if ips_raw is None
            else tuple(_cidr("sshAllowedIps", c) for c in ips_raw)
        ),
        "protect": reader.boolean("protect", default=True),
        "backups": reader.boolean("backups", default=True),
    }


def _choice(reader: _Reader, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = reader.string(key, default)
    if value not in choices:
        fail(key, value, "one of " + ", ".join(choices))
    return value


def _site(reader: _Reader) -> dict[str, Any]:
    """Mailman site options: database, superuser, DMARC, ACME, redirects, social logins."""
    admin_user = reader.string("adminUser", "admin")
    if not _DJANGO_USERNAME.match(admin_user):
        fail("adminUser", admin_user, "a Django user name (letters, digits, @ . + - _)")
    return {
        "database": _choice(reader, "database", "postgresql", ("postgresql", "sqlite")),
        "admin_user": admin_user,
        "admin_password": _admin_password(reader),
        "dmarc_policy": _choice(reader, "dmarcPolicy", "none", ("none", "quarantine", "reject")),
        "acme_staging": reader.boolean("acmeStaging", default=False),
        "mailman2_redirects": reader.boolean("mailman2Redirects", default=False),
        "social_logins": _social_logins(reader),
    }


def load_settings() -> Settings:
    """Read and validate every `mailman:` key; the only place the program reads config."""
    reader = _Reader()
    _check_known_keys()
    names = _names(reader)
    machine = _machine(reader)
    site = _site(reader)
    lists_path, lists = _lists(reader, names["mail_domains"], names["admin_email"])
    return Settings(
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        lists_path=lists_path,
        lists=lists,
        **names,
        **machine,
        **site,
    )


def config_table() -> str:
    """The README's configuration table (Markdown), generated from `CONFIG_KEYS`."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in CONFIG_KEYS:
        rows.append(f"| `{key.name}` | {key.type} | {key.default} | {key.description} |")
    return "\n".join(rows) + "\n"
