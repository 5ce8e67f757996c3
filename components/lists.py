"""Mailing lists as code: load `lists.yaml`, validate it, return the normalized form.

The normalized form (docs/contracts.md section 6) is what the reconcile program on the host reads:
one dict per entry, sorted by address, values already validated, only the settings the file
mentions. Field names are Mailman's own REST attribute names.

Two shorthands keep one lists file valid for every stack: an address without `@domain` lives in
the stack's first mail domain, and an entry without `owners` is owned by the site owner
(`mailman:adminEmail`). The normalized form always carries the resolved values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

# The list rules are one definition shared with the reconcile program on the host, so they live
# with it in nixos/ (a host file); nixos/ is not a package, hence the path.
_NIXOS = str(Path(__file__).resolve().parents[1] / "nixos")
if _NIXOS not in sys.path:
    sys.path.append(_NIXOS)
import mailman_list_rules as rules  # noqa: E402

# Mailman's address rule, for the other settings that become Mailman addresses (adminEmail).
is_mailman_address = rules.is_mailman_address

NormalizedList = dict[str, Any]


class ListsError(ValueError):
    """A schema error; the message names the file, the list and the field."""


STYLES = rules.STYLES
DEFAULT_STYLE = rules.DEFAULT_STYLE
_ENTRY_KEYS = ("address", "absent", "style", "owners", "moderators", rules.ONE_CLICK)


class _Entry:
    """Validation context for one list entry, so every error names file, list and field."""

    def __init__(self, file: str, label: str) -> None:
        self.file = file
        self.label = label

    def error(self, field: str, value: object, expected: str) -> ListsError:
        return ListsError(f"{self.file}: list {self.label}: {field}: {value!r} is not {expected}")


def _check_setting(entry: _Entry, field: str, value: object) -> object:
    try:
        return rules.setting(field, value)
    except rules.RuleError as error:
        raise entry.error(field, value, str(error)) from None


def _people(
    entry: _Entry, field: str, value: object, *, required: bool, list_address: str
) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise entry.error(
            field,
            value,
            "a list of e-mail addresses"
            + (" (at least one; leave the key out for mailman:adminEmail)" if required else ""),
        )
    return sorted({_check_role(entry, field, v, list_address) for v in value})


def _check_role(entry: _Entry, field: str, value: object, list_address: str) -> str:
    try:
        return rules.role_address(list_address, value)
    except rules.RuleError as error:
        raise entry.error(field, value, str(error)) from None


def _list_address(entry: _Entry, value: object, mail_domains: tuple[str, ...]) -> str:
    """`name` or `name@domain` -> the list's full address, in one of `mail_domains`."""
    if not isinstance(value, str) or value.count("@") > 1:
        raise entry.error("address", value, "a list name or address (name or name@domain)")
    name, at, domain = value.strip().lower().partition("@")
    if not at:
        domain = mail_domains[0]
    try:
        rules.list_name(name)
    except rules.RuleError as error:
        raise entry.error("address", value, str(error)) from None
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
    settings = {**rules.DEFAULT_SETTINGS, **settings}
    # Only a missing key means "the site owner": `owners: []` or a bare `owners:` is a list
    # left without an owner by mistake, and stays an error.
    if "owners" in entry_data:
        owners = _people(
            entry, "owners", entry_data["owners"], required=True, list_address=address
        )
    else:
        owners = [_check_role(entry, "owners", default_owner, address)]
    try:
        one_click = rules.one_click(entry_data.get(rules.ONE_CLICK, rules.ONE_CLICK_DEFAULT))
    except rules.RuleError as error:
        raise entry.error(rules.ONE_CLICK, entry_data[rules.ONE_CLICK], str(error)) from None
    return {
        "address": address,
        "absent": False,
        "style": style,
        "owners": owners,
        "moderators": _people(
            entry, "moderators", entry_data.get("moderators"), required=False, list_address=address
        ),
        rules.ONE_CLICK: one_click,
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
