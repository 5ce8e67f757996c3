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
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pulumi

from components import nixpkgs_pin
from components.lists import ListsError, NormalizedList, is_mailman_address, load_lists

NAMESPACE = "mailman"
DKIM_SELECTOR = "mailman"
INSTALL_IMAGE = "debian-12"
DEFAULT_SSH_ALLOWED_IPS = ("0.0.0.0/0", "::/0")
REQUIRED = "\u2013"  # the en dash the README shows as the default of a required key


NO_DEFAULT = object()  # `Declared.default` of a required key


@dataclass(frozen=True)
class Declared:
    """How Pulumi.yaml declares a key, so the engine checks its type before the program runs.

    `type`: one of the project schema's config types (pulumi/pulumi
    sdk/go/common/workspace/project.json `$defs.simpleConfigType`: string, integer, boolean,
    array; an array also names its `items`), or None for a key declared without a type.
    `default`: merged into the stack's config when the stack does not set the key
    (sdk/go/common/workspace/config.go `mergeConfig`); a declared key without one is required
    ("Stack '...' is missing configuration value"), so optional keys without a natural value
    declare an empty one, which the program reads as unset.
    """

    type: str | None
    default: object = NO_DEFAULT


@dataclass(frozen=True)
class ConfigKey:
    """One `mailman:` stack setting, as the README's configuration table shows it."""

    name: str
    type: str
    default: str  # REQUIRED when there is no default
    description: str
    declared: Declared


def _string(default: object = NO_DEFAULT) -> Declared:
    return Declared("string", default)


def _boolean(default: bool) -> Declared:
    return Declared("boolean", default)


def _strings(default: list[str]) -> Declared:
    return Declared("array", default)


# Declared without a type: socialLogins is an object (not a type the project schema lists), and
# sshPublicKeys takes a list or, as `pulumi new` saves a prompt's answer, one key as plain text.
_UNTYPED_LIST = Declared(None, [])
_UNTYPED_OBJECT = Declared(None, {})

# Where Hetzner sells Storage Boxes (the provider's example uses hel1, Hetzner's Ansible
# collection fsn1; both are the German and Finnish sites of the Storage Box product).
BACKUP_LOCATIONS = ("fsn1", "hel1")
_BACKUP_BOX_TYPE = re.compile(r"^bx[0-9]{2}$")
BACKUP_PERIODS = ("daily", "weekly", "monthly")
DEFAULT_BACKUP_RETENTION = {"daily": 7, "weekly": 4, "monthly": 6}
MAX_BACKUP_KEEP = 1000

CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "hostname",
        "FQDN, required",
        REQUIRED,
        "web UI host, Postfix `myhostname`, PTR name",
        _string(),
    ),
    ConfigKey(
        "adminEmail",
        "email, required",
        REQUIRED,
        "site owner, ACME account, superuser e-mail, DMARC reports; postmaster@, abuse@ and "
        "root mail of every mail domain go here, so it must be a mailbox outside them",
        _string(),
    ),
    ConfigKey(
        "mailDomains",
        "list of domains",
        "`[hostname]`",
        "domains lists live in (`list@domain`)",
        _strings([]),
    ),
    ConfigKey(
        "dnsZone",
        "zone name",
        "unset",
        "Hetzner DNS zone to write records into; unset = no DNS resources, records exported as "
        "`dnsRecords`",
        _string(""),
    ),
    ConfigKey("serverType", "string", "`cx23`", "Hetzner server type", _string("cx23")),
    ConfigKey("location", "string", "`nbg1`", "Hetzner location", _string("nbg1")),
    ConfigKey(
        "nixosRelease",
        "string",
        "`nixos-26.05`",
        "NixOS release the host runs; must be the branch of the nixpkgs pin "
        "`components/nixpkgs-pin.json` (exact revision + hash, shown in previews)",
        _string("nixos-26.05"),
    ),
    ConfigKey(
        "sshPublicKeys",
        "list",
        "`[]`",
        "operator keys added to root besides the generated deploy key",
        _UNTYPED_LIST,
    ),
    ConfigKey(
        "sshAllowedIps",
        "list of CIDRs",
        "world",
        "sources allowed on port 22",
        _strings(list(DEFAULT_SSH_ALLOWED_IPS)),
    ),
    ConfigKey(
        "acmeStaging",
        "bool",
        "false",
        "use Let's Encrypt staging (staging/review stacks)",
        _boolean(False),
    ),
    ConfigKey(
        "protect",
        "bool",
        "true",
        "delete/rebuild protection + Pulumi `protect` on server, IPs, volume, backup Storage Box",
        _boolean(True),
    ),
    ConfigKey("backups", "bool", "true", "Hetzner automatic backups", _boolean(True)),
    ConfigKey(
        "backupLocation",
        "fsn1/hel1",
        "`fsn1`",
        "where the off-site backup Storage Box lives (changing it replaces the box: a new, empty "
        "repository)",
        _string("fsn1"),
    ),
    ConfigKey(
        "backupBoxType",
        "string",
        "`bx11`",
        "Hetzner Storage Box type of the backups",
        _string("bx11"),
    ),
    ConfigKey(
        "backupRetention",
        "object",
        "`{daily: 7, weekly: 4, monthly: 6}`",
        "restic snapshots kept per period (`restic forget --keep-*`); unset periods keep 0",
        Declared(None, dict(DEFAULT_BACKUP_RETENTION)),
    ),
    ConfigKey(
        "volumeSize",
        "int GB",
        "10",
        "data volume for `/var/lib` state",
        Declared("integer", 10),
    ),
    ConfigKey(
        "database",
        "postgresql/sqlite",
        "postgresql",
        "Mailman core + web database on the host (sqlite for small/throwaway stacks)",
        _string("postgresql"),
    ),
    ConfigKey(
        "lists",
        "path",
        "`lists.yaml`",
        "declarative mailing lists (see below)",
        _string("lists.yaml"),
    ),
    ConfigKey("adminUser", "string", "`admin`", "Django superuser name", _string("admin")),
    ConfigKey(
        "adminPassword",
        "secret",
        "generated",
        "Django superuser password (generated ones are exported as a secret output)",
        # Not `secret: true`: that would make it required (see `_engine_config`); the program
        # refuses a value not stored encrypted.
        _string(""),
    ),
    ConfigKey(
        "dmarcPolicy",
        "none/quarantine/reject",
        "none",
        "`_dmarc` policy",
        _string("none"),
    ),
    ConfigKey(
        "mailman2Redirects",
        "bool",
        "false",
        "the seed's optional Mailman 2 URL redirects",
        _boolean(False),
    ),
    ConfigKey(
        "socialLogins",
        "object",
        "unset",
        "django-allauth providers, e.g. `github: {clientId, clientSecret(secret)}`",
        _UNTYPED_OBJECT,
    ),
)

_KNOWN_KEYS = tuple(key.name for key in CONFIG_KEYS)
# What an unset key means: the default Pulumi.yaml declares (the CLI passes it in; tools and
# tests that run without the CLI get the same).
_DEFAULTS = {key.name: key.declared.default for key in CONFIG_KEYS}

# Hetzner Cloud server type families: shared x86 (cx, cpx), shared Arm (cax), dedicated (ccx).
# The install image (Debian 12) and nixos-infect exist for both architectures, so both are fine.
_SERVER_TYPE = re.compile(r"^(cx|cpx|cax|ccx)[0-9]{2}$")
LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FQDN = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z]{{2,63}}$")
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
    nixpkgs: nixpkgs_pin.NixpkgsPin
    """The committed pin (components/nixpkgs-pin.json); its branch is `nixos_release`."""
    ssh_public_keys: tuple[str, ...]
    ssh_allowed_ips: tuple[str, ...]
    acme_staging: bool
    protect: bool
    backups: bool
    backup_location: str
    backup_box_type: str
    backup_retention: dict[str, int]
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

    @property
    def volume_name(self) -> str:
        """The data volume's Hetzner name (preflight finds the existing volume by it)."""
        return f"{self.resource_prefix}-data"


def _label_value(text: str) -> str:
    # Hetzner label values: up to 63 of [A-Za-z0-9._-], alphanumeric at both ends.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("._-")
    return cleaned or "stack"


def shown(value: object, *, secret: bool = False) -> str:
    """A setting's value as the one-line messages show it (never a secret)."""
    if secret:
        return "[secret]"
    if value is None:
        return "(unset)"
    return json.dumps(value, ensure_ascii=False)


def not_expected(key: str, value: object, expected: str, *, secret: bool = False) -> str:
    """The one-line message for a setting that is not what it must be."""
    return f"{NAMESPACE}:{key}: {shown(value, secret=secret)} is not {expected}"


def fail(key: str, value: object, expected: str, *, secret: bool = False) -> NoReturn:
    """Stop the program with the one-line message for a bad setting."""
    raise pulumi.RunError(not_expected(key, value, expected, secret=secret))


def _engine_config() -> tuple[frozenset[str], frozenset[str]]:
    """The `mailman:` keys this stack sets, and those of them stored encrypted.

    The Python language host hands a program its stack configuration in two environment
    variables (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go, constants
    `pulumiConfigVar = "PULUMI_CONFIG"`, a JSON object of every key, and
    `pulumiConfigSecretKeysVar = "PULUMI_CONFIG_SECRET_KEYS"`, a JSON array of the keys stored
    as secrets); `pulumi.Config` reads its values from the first. The SDK has no public call that
    lists the keys or says whether one was stored encrypted, and the engine does neither check
    for us: it validates only the keys Pulumi.yaml declares (sdk/go/common/workspace/config.go
    `validateStackConfigValues` loops over `project.Config`, so a misspelt key passes), and its
    `secret: true` cannot guard an optional key (a declared default is merged in as a plain value
    and then refused by `validateStackConfigValue`, "must be encrypted as it's secret").
    """
    prefix = f"{NAMESPACE}:"
    keys = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    secret = json.loads(os.environ.get("PULUMI_CONFIG_SECRET_KEYS") or "[]")
    return (
        frozenset(k[len(prefix) :] for k in keys if k.startswith(prefix)),
        frozenset(k[len(prefix) :] for k in secret if k.startswith(prefix)),
    )


class _Reader:
    """Reads raw values through `pulumi.Config`; structured values arrive JSON-encoded.

    An empty value means unset: it is what Pulumi.yaml declares as the default of an optional
    key without a natural value (dnsZone, adminPassword), and `pulumi new` saves no empty answer.
    """

    def __init__(self) -> None:
        self.config = pulumi.Config(NAMESPACE)
        self.keys, self.secret_keys = _engine_config()

    def raw(self, key: str) -> str | None:
        value = self.config.get(key)
        return value or None

    def secret(self, key: str) -> bool:
        return key in self.secret_keys

    def string(self, key: str) -> str:
        """The value, or the default Pulumi.yaml declares for `key` (`CONFIG_KEYS`)."""
        value = self.raw(key)
        return str(_DEFAULTS[key]) if value is None else value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return bool(_DEFAULTS[key])
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


def _check_known_keys(reader: _Reader) -> None:
    for key in sorted(reader.keys):
        if key not in _KNOWN_KEYS:
            close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            fail(key, reader.config.get(key), f"a known setting{hint}")


def _check_project_name() -> None:
    # `pulumi new` asks for a project name (default: this one, sdk/go/common/workspace/
    # templates.go ValueOrSanitizedDefaultProjectName); the settings live in its namespace.
    project = pulumi.get_project()
    if project != NAMESPACE:
        raise pulumi.RunError(
            f'Pulumi.yaml: name "{project}" is not {NAMESPACE} (the settings are read from the '
            f"{NAMESPACE}: namespace; keep the project name)"
        )


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


def _ssh_key_list(reader: _Reader) -> list[Any]:
    """A list of keys, or one key as plain text (how `pulumi new` saves the prompt's answer)."""
    text = reader.raw("sshPublicKeys")
    if text is not None and not text.lstrip().startswith("["):
        return [text]
    return _string_list(reader, "sshPublicKeys", "a list of OpenSSH public keys") or []


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
    text = reader.string(key)
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
    # Empty (Pulumi.yaml's declared default) or unset: the hostname.
    if not domains_raw:
        mail_domains: tuple[str, ...] = (hostname,)
    else:
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


def _pinned_nixpkgs(nixos_release: str) -> nixpkgs_pin.NixpkgsPin:
    """The committed nixpkgs pin, refused unless it is a revision of `nixosRelease`.

    The release is the human-facing name; the pin is what the host builds. Changing only one of
    them would deploy something else than the stack file says, so it stops here, before any
    resource.
    """
    try:
        pin = nixpkgs_pin.load_pin(nixpkgs_pin.PIN_FILE)
    except nixpkgs_pin.PinError as error:
        raise pulumi.RunError(f"components/{error}") from None
    if pin.branch != nixos_release:
        fail(
            "nixosRelease",
            nixos_release,
            f"the release of the pinned nixpkgs ({pin.branch}, components/nixpkgs-pin.json): "
            f"change both, with tools/bump_nixpkgs.py --branch {nixos_release}",
        )
    return pin


def _machine(reader: _Reader) -> dict[str, Any]:
    """Server type, location, NixOS release, volume, SSH access, protection and backups."""
    server_type = reader.string("serverType").strip().lower()
    if not _SERVER_TYPE.match(server_type):
        fail("serverType", server_type, "a Hetzner server type (cx23, cpx22, cax11, ccx13, ...)")
    location = reader.string("location").strip().lower()
    if location not in LOCATIONS:
        fail("location", location, f"a Hetzner location ({', '.join(LOCATIONS)})")
    nixos_release = reader.string("nixosRelease").strip()
    if not nixpkgs_pin.BRANCH.match(nixos_release):
        fail("nixosRelease", nixos_release, "a NixOS release channel (nixos-26.05)")
    pin = _pinned_nixpkgs(nixos_release)
    volume = reader.string("volumeSize").strip()
    if not volume.isdigit() or not MIN_VOLUME_GB <= int(volume) <= MAX_VOLUME_GB:
        fail("volumeSize", volume, f"a whole number of GB from {MIN_VOLUME_GB} to {MAX_VOLUME_GB}")

    keys_raw = _ssh_key_list(reader)
    ips_raw = _string_list(reader, "sshAllowedIps", "a list of CIDRs")
    if ips_raw is not None and not ips_raw:
        fail("sshAllowedIps", ips_raw, "a non-empty list of CIDRs (omit it to allow everyone)")
    return {
        "server_type": server_type,
        "location": location,
        "nixos_release": nixos_release,
        "nixpkgs": pin,
        "volume_size": int(volume),
        "ssh_public_keys": tuple(_ssh_public_key("sshPublicKeys", k) for k in keys_raw),
        "ssh_allowed_ips": (
            DEFAULT_SSH_ALLOWED_IPS
            if ips_raw is None
            else tuple(_cidr("sshAllowedIps", c) for c in ips_raw)
        ),
        "protect": reader.boolean("protect"),
        "backups": reader.boolean("backups"),
    }


def _backup(reader: _Reader) -> dict[str, Any]:
    """The off-site backup: Storage Box location and type, restic's retention.

    The location's default is fixed, not derived from `location`: the box's location is
    RequiresReplace, and moving the server must not replace (empty) its backups.
    """
    box_type = reader.string("backupBoxType").strip().lower()
    if not _BACKUP_BOX_TYPE.match(box_type):
        fail("backupBoxType", box_type, "a Hetzner Storage Box type (bx11, bx21, bx31, bx41)")
    return {
        "backup_location": _choice(reader, "backupLocation", BACKUP_LOCATIONS),
        "backup_box_type": box_type,
        "backup_retention": _backup_retention(reader),
    }


def _backup_retention(reader: _Reader) -> dict[str, int]:
    key = "backupRetention"
    expected = (
        f"an object of {', '.join(BACKUP_PERIODS)} to whole numbers from 0 to "
        f"{MAX_BACKUP_KEEP}, daily at least 1 (e.g. {{daily: 7, weekly: 4, monthly: 6}})"
    )
    value = reader.structured(key, expected)
    if value is None:
        return dict(DEFAULT_BACKUP_RETENTION)
    if not isinstance(value, dict) or not set(value) <= set(BACKUP_PERIODS):
        fail(key, value, expected)
    keep = {period: value.get(period, 0) for period in BACKUP_PERIODS}
    for period, count in keep.items():
        least = 1 if period == "daily" else 0
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not least <= count <= MAX_BACKUP_KEEP
        ):
            fail(f"{key}.{period}", count, f"a whole number from {least} to {MAX_BACKUP_KEEP}")
    return keep


def _choice(reader: _Reader, key: str, choices: tuple[str, ...]) -> str:
    value = reader.string(key)
    if value not in choices:
        fail(key, value, "one of " + ", ".join(choices))
    return value


def _site(reader: _Reader) -> dict[str, Any]:
    """Mailman site options: database, superuser, DMARC, ACME, redirects, social logins."""
    admin_user = reader.string("adminUser")
    if not _DJANGO_USERNAME.match(admin_user):
        fail("adminUser", admin_user, "a Django user name (letters, digits, @ . + - _)")
    return {
        "database": _choice(reader, "database", ("postgresql", "sqlite")),
        "admin_user": admin_user,
        "admin_password": _admin_password(reader),
        "dmarc_policy": _choice(reader, "dmarcPolicy", ("none", "quarantine", "reject")),
        "acme_staging": reader.boolean("acmeStaging"),
        "mailman2_redirects": reader.boolean("mailman2Redirects"),
        "social_logins": _social_logins(reader),
    }


def load_settings() -> Settings:
    """Read and validate every `mailman:` key; the only place the program reads config."""
    _check_project_name()
    return read_settings()


def read_settings() -> Settings:
    """`load_settings` without the project name check (tools/check_settings.py runs it outside
    a Pulumi project)."""
    reader = _Reader()
    _check_known_keys(reader)
    names = _names(reader)
    machine = _machine(reader)
    backup = _backup(reader)
    site = _site(reader)
    lists_path, lists = _lists(reader, names["mail_domains"], names["admin_email"])
    return Settings(
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        lists_path=lists_path,
        lists=lists,
        **names,
        **machine,
        **backup,
        **site,
    )


def config_table() -> str:
    """The README's configuration table (Markdown), generated from `CONFIG_KEYS`."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in CONFIG_KEYS:
        rows.append(f"| `{key.name}` | {key.type} | {key.default} | {key.description} |")
    return "\n".join(rows) + "\n"


def project_config() -> dict[str, dict[str, object]]:
    """The `config:` declarations of Pulumi.yaml for every `mailman:` key, from `CONFIG_KEYS`.

    The form is the project schema's `configTypeDeclaration` (pulumi/pulumi
    sdk/go/common/workspace/project.json): type, items (for arrays), description, default.
    Keys are written without a namespace: the engine puts them in the project's
    (sdk/go/common/workspace/config.go `parseConfigKey`). `python tools/pulumi_yaml.py` writes
    the block into Pulumi.yaml; tests/components/test_project_config.py compares the two.
    """
    declarations: dict[str, dict[str, object]] = {}
    for key in CONFIG_KEYS:
        declaration: dict[str, object] = {}
        if key.declared.type is not None:
            declaration["type"] = key.declared.type
        if key.declared.type == "array":
            declaration["items"] = {"type": "string"}
        declaration["description"] = key.description.replace("`", "")
        if key.declared.default is not NO_DEFAULT:
            declaration["default"] = key.declared.default
        declarations[key.name] = declaration
    return declarations
