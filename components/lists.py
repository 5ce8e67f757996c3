"""Mailing lists as code: load `lists.yaml`, validate it, return the normalized form.

The normalized form (docs/contracts.md section 6) is what the reconcile program on the host reads:
one dict per entry, sorted by address, values already validated, only the settings the file
mentions. Field names are Mailman's own REST attribute names.

Two shorthands keep one lists file valid for every stack: an address without `@domain` lives in
the stack's first mail domain, and an entry without `owners` is owned by the site owner
(`mailman:adminEmail`). The normalized form always carries the resolved values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

NormalizedList = dict[str, Any]


class ListsError(ValueError):
    """A schema error; the message names the file, the list and the field."""


_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9.-]+\.[a-z]{2,63}$")
# Mailman's default `listname_chars` is `[-_.0-9a-z]` (no `+`: that is its VERP delimiter); the
# dot rules are those of an e-mail local part (no leading, trailing or doubled dot).
_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
_LIST_NAME_MAX = 64
# Mailman's LMTP runner reads `<list>-<name>@domain` as sub-address <name> of list <list>
# (runners/lmtp.py SUBADDRESS_NAMES), so a list whose name ends in one of them never gets its
# own posts: `news-request` would be the request address of `news`.
SUBADDRESS_NAMES = (
    "admin",
    "bounces",
    "confirm",
    "join",
    "leave",
    "owner",
    "request",
    "subscribe",
    "unsubscribe",
)
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")

STYLES = ("legacy-default", "legacy-announce", "private-default")
DEFAULT_STYLE = "legacy-default"

_POLICY = ("open", "confirm", "moderate", "confirm_then_moderate")
_ACTION = ("accept", "hold", "reject", "discard", "defer")
_ENUMS: dict[str, tuple[str, ...]] = {
    "subscription_policy": _POLICY,
    "unsubscription_policy": _POLICY,
    "archive_policy": ("never", "private", "public"),
    "dmarc_mitigate_action": ("no_mitigation", "munge_from", "wrap_message", "reject", "discard"),
    "default_member_action": _ACTION,
    "default_nonmember_action": _ACTION,
    "reply_goes_to_list": (
        "no_munging",
        "point_to_list",
        "explicit_header",
        "explicit_header_only",
    ),
}
_STRINGS = ("display_name", "description", "info", "subject_prefix")
_BOOLS = (
    "dmarc_mitigate_unconditionally",
    "advertised",
    "send_welcome_message",
    "send_goodbye_message",
    "allow_list_posts",
    "anonymous_list",
    "first_strip_reply_to",
    "include_rfc2369_headers",
    "require_explicit_destination",
    "emergency",
    "admin_notify_mchanges",
    "admin_immed_notify",
    "respond_to_post_requests",
)
_COUNTS = ("max_message_size", "max_num_recipients")
SETTINGS = (*_STRINGS, *_ENUMS, *_BOOLS, *_COUNTS, "reply_to_address", "preferred_language")
_ENTRY_KEYS = ("address", "absent", "style", "owners", "moderators")


class _Entry:
    """Validation context for one list entry, so every error names file, list and field."""

    def __init__(self, file: str, label: str) -> None:
        self.file = file
        self.label = label

    def error(self, field: str, value: object, expected: str) -> ListsError:
        return ListsError(f"{self.file}: list {self.label}: {field}: {value!r} is not {expected}")


def _check_email(entry: _Entry, field: str, value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip().lower()):
        raise entry.error(field, value, "an e-mail address")
    return value.strip().lower()


def _check_setting(entry: _Entry, field: str, value: object) -> object:
    if field in _STRINGS:
        if not isinstance(value, str):
            raise entry.error(field, value, "a string")
        return value
    if field in _ENUMS:
        if value not in _ENUMS[field]:
            raise entry.error(field, value, "one of " + ", ".join(_ENUMS[field]))
        return value
    if field in _BOOLS:
        if not isinstance(value, bool):
            raise entry.error(field, value, "true or false")
        return value
    if field in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise entry.error(field, value, "a whole number >= 0")
        return value
    if field == "reply_to_address":
        return _check_email(entry, field, value)
    if field == "preferred_language":
        if not isinstance(value, str) or not _LANGUAGE.match(value):
            raise entry.error(field, value, "a language code (en, de, pt_BR)")
        return value
    raise entry.error(field, value, "a known list setting (see docs/program.md)")


def _people(entry: _Entry, field: str, value: object, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise entry.error(
            field,
            value,
            "a list of e-mail addresses"
            + (" (at least one; leave the key out for mailman:adminEmail)" if required else ""),
        )
    return sorted({_check_email(entry, field, v) for v in value})


def _list_address(entry: _Entry, value: object, mail_domains: tuple[str, ...]) -> str:
    """`name` or `name@domain` -> the list's full address, in one of `mail_domains`."""
    if not isinstance(value, str) or value.count("@") > 1:
        raise entry.error("address", value, "a list name or address (name or name@domain)")
    name, at, domain = value.strip().lower().partition("@")
    if not at:
        domain = mail_domains[0]
    if len(name) > _LIST_NAME_MAX or not _LIST_NAME.match(name):
        raise entry.error(
            "address",
            value,
            "a list name of at most 64 characters a-z, 0-9, . _ - "
            "(starting with a letter or digit, no leading, trailing or doubled dot)",
        )
    if name.rpartition("-")[2] in SUBADDRESS_NAMES:
        raise entry.error(
            "address",
            value,
            "a list name whose last -part is not a Mailman sub-address ("
            + ", ".join(SUBADDRESS_NAMES)
            + ")",
        )
    if domain not in mail_domains:
        raise entry.error(
            "address", value, "in one of mailDomains (" + ", ".join(mail_domains) + ")"
        )
    return f"{name}@{domain}"


def _normalize(
    entry_data: object, index: int, file: str, mail_domains: tuple[str, ...], default_owner: str
) -> NormalizedList:
    if not isinstance(entry_data, dict):
        raise _Entry(file, f"#{index + 1}").error("entry", entry_data, "a mapping of list fields")
    raw_address = entry_data.get("address")
    entry = _Entry(file, str(raw_address) if isinstance(raw_address, str) else f"#{index + 1}")
    address = _list_address(entry, raw_address, mail_domains)
    # From here on errors name the resolved address, so the user sees which domain it got.
    entry = _Entry(file, address)

    absent = entry_data.get("absent", False)
    if not isinstance(absent, bool):
        raise entry.error("absent", absent, "true or false")
    if absent:
        extra = sorted(set(entry_data) - {"address", "absent"})
        if extra:
            raise entry.error(extra[0], entry_data[extra[0]], "allowed on an absent: true entry")
        return {"address": address, "absent": True}

    style = entry_data.get("style", DEFAULT_STYLE)
    if style not in STYLES:
        raise entry.error("style", style, "one of " + ", ".join(STYLES))
    settings: dict[str, object] = {}
    for field, value in entry_data.items():
        if field in _ENTRY_KEYS:
            continue
        if not isinstance(field, str):
            raise entry.error("field", field, "a setting name")
        settings[field] = _check_setting(entry, field, value)
    # Only a missing key means "the site owner": `owners: []` or a bare `owners:` is a list
    # left without an owner by mistake, and stays an error.
    if "owners" in entry_data:
        owners = _people(entry, "owners", entry_data["owners"], required=True)
    else:
        owners = [default_owner.strip().lower()]
    return {
        "address": address,
        "absent": False,
        "style": style,
        "owners": owners,
        "moderators": _people(entry, "moderators", entry_data.get("moderators"), required=False),
        "settings": dict(sorted(settings.items())),
    }


def parse_lists(
    text: str, file: str, mail_domains: tuple[str, ...], default_owner: str
) -> tuple[NormalizedList, ...]:
    """Validate the YAML text of a lists file and return its normalized lists.

    `mail_domains[0]` is the domain of an address given as a bare list name; `default_owner`
    (the site owner, mailman:adminEmail) owns every list whose entry has no `owners` key.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ListsError(
            f"{file}:{where} is not valid YAML ({getattr(error, 'problem', error)})"
        ) from None
    if document is None:
        document = {"lists": []}
    if not isinstance(document, dict) or set(document) != {"lists"}:
        raise ListsError(f"{file}: the top level is not a mapping with the one key `lists:`")
    entries = document["lists"] or []
    if not isinstance(entries, list):
        raise ListsError(f"{file}: lists: {entries!r} is not a list of list entries")
    normalized = [
        _normalize(e, i, file, mail_domains, default_owner) for i, e in enumerate(entries)
    ]
    seen: set[str] = set()
    for item in normalized:
        if item["address"] in seen:
            raise ListsError(f"{file}: list {item['address']}: address: is not unique in the file")
        seen.add(item["address"])
    return tuple(sorted(normalized, key=_by_address))


def _by_address(item: NormalizedList) -> str:
    return str(item["address"])


def load_lists(
    path: Path, mail_domains: tuple[str, ...], default_owner: str
) -> tuple[NormalizedList, ...]:
    """Read `path` and return its normalized lists; `ListsError` names file, list and field."""
    return parse_lists(path.read_text(encoding="utf-8"), path.name, mail_domains, default_owner)
