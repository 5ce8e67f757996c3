"""Bring a GNU Mailman 3 site to the desired state read as JSON from stdin.

Runs on the host as `mailman-reconcile < state.json`, in mailman-web's Python environment
with mailman-web's Django settings (DJANGO_SETTINGS_MODULE, or MAILMAN_WEB_CONFIG as the
`mailman-web` command reads it). It manages, idempotently and in one process:

- the Django superuser (created, or its password/e-mail brought up to date) with a verified
  primary allauth e-mail address, so it can log in to Postorius and HyperKitty;
- the Django Site of SITE_ID renamed to the web host (never deleted);
- the mail domains in Mailman core, each linked to that Site as Postorius links them;
- the mailing lists of the document (settings, owners, moderators; never members);
- the social-login apps, bound to the Site;
- a check that Mailman core's Postfix maps cover every list.

The document format and the exit codes are in docs/contracts.md (section 5 and 6) and
docs/reconcile.md. Nothing secret is ever printed.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import string
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

# The list rules, one definition shared with components/lists.py; installed next to this file
# (nixos/reconcile.nix), so the script's directory on sys.path finds it.
import mailman_list_rules as rules
import mailman_one_click as one_click

if TYPE_CHECKING:  # only for annotations: the module must import without Django installed
    from django.conf import LazySettings
    from django.contrib.auth.models import AbstractUser
    from django.contrib.sites.models import Site

T = TypeVar("T")

EXIT_OK = 0
EXIT_INVALID_INPUT = 1
EXIT_UNREACHABLE = 2
EXIT_FAILED = 3
#: Everything converged, but the Site was renamed: the running web app caches the Site and
#: must be restarted by the caller (this program runs as the web user and cannot).
EXIT_RESTART_WEB = 10

DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
REST_TIMEOUT_SECONDS = 60


class ReconcileError(Exception):
    """A condition that ends the run with one clear line and an exit code.

    The line (`mailman-reconcile: ...`) may reach the deploy's output (components/guard.py
    passes such lines on): it never holds a secret or text we did not write. `detail` is text
    of others (a database's message can quote a whole row): printed on the next line, which
    the deploy's guard keeps in the host journal.
    """

    def __init__(self, message: str, exit_code: int, detail: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.detail = detail


def invalid(message: str) -> ReconcileError:
    return ReconcileError(f"invalid desired state: {message}", EXIT_INVALID_INPUT)


# --- the desired-state document -----------------------------------------------------------


@dataclass(frozen=True)
class DesiredList:
    address: str
    absent: bool = False
    style: str | None = None
    owners: frozenset[str] = frozenset()
    moderators: frozenset[str] = frozenset()
    settings: Mapping[str, Any] = field(default_factory=dict)
    one_click_unsubscribe: bool = rules.ONE_CLICK_DEFAULT

    @property
    def mail_host(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class SocialApp:
    provider: str
    name: str
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class DesiredState:
    site_domain: str
    site_name: str
    username: str
    email: str
    password: str = field(repr=False)
    mail_domains: tuple[str, ...]
    web_host: str
    lists: tuple[DesiredList, ...]
    social_apps: tuple[SocialApp, ...]


def _object(value: object, where: str, keys: Iterable[str], optional: Iterable[str] = ()) -> dict[
        str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object")
    required, allowed = set(keys), set(keys) | set(optional)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise invalid(f"{where}.{unknown[0]} is not a known field (expected: "
                      f"{', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise invalid(f"{where}.{missing[0]} is required")
    return value


def _string(value: object, where: str, *, secret: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = "" if secret else f", not {json.dumps(value)}"
        raise invalid(f"{where} must be a non-empty string{shown}")
    return value


def _email(value: object, where: str) -> str:
    if not isinstance(value, str) or not rules.is_mailman_address(value):
        raise invalid(f"{where} must be an e-mail address like name@example.org, not "
                      f"{json.dumps(value)}")
    return value


def _domain(value: object, where: str) -> str:
    if not isinstance(value, str) or not DOMAIN_RE.match(value):
        raise invalid(f"{where} must be a lower-case domain name like lists.example.org, not "
                      f"{json.dumps(value)}")
    return value


def _rule(where: str, check: Callable[..., T], *args: object) -> T:
    """`check(*args)`, one of the shared list rules; a refusal names the field, the expected
    form and the value (the last argument)."""
    try:
        return check(*args)
    except rules.RuleError as error:
        raise invalid(f"{where} must be {error}, not {json.dumps(args[-1])}") from None


def _roles(value: object, where: str, list_address: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise invalid(f"{where} must be a list of e-mail addresses")
    return frozenset(_rule(f"{where}[{i}]", rules.role_address, list_address, item)
                     for i, item in enumerate(value))


def _list_address(value: object, where: str) -> str:
    address = _rule(where, rules.address, value)
    _rule(where, rules.list_name, address.partition("@")[0])
    return address


def _list(value: object, where: str, mail_domains: tuple[str, ...]) -> DesiredList:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object")
    address = _list_address(value.get("address"), f"{where}.address")
    where = f"lists[{address}]"
    absent = value.get("absent", False)
    if not isinstance(absent, bool):
        raise invalid(f"{where}.absent must be true or false")
    if absent:
        _object(value, where, ("address",), ("absent",))
        return DesiredList(address=address, absent=True)
    data = _object(value, where, ("address", "owners"),
                   ("absent", "style", "moderators", "settings", rules.ONE_CLICK))
    entry = DesiredList(
        address=address,
        style=data.get("style"),
        owners=_roles(data["owners"], f"{where}.owners", address),
        moderators=_roles(data.get("moderators", []), f"{where}.moderators", address),
        settings={name: _rule(f"{where}.settings.{name}", rules.setting, name, setting)
                  for name, setting in _object(data.get("settings", {}),
                                               f"{where}.settings", (), rules.SETTINGS).items()},
        one_click_unsubscribe=_rule(f"{where}.{rules.ONE_CLICK}", rules.one_click,
                                    data.get(rules.ONE_CLICK, rules.ONE_CLICK_DEFAULT)),
    )
    if entry.style is not None and entry.style not in rules.STYLES:
        raise invalid(f"{where}.style must be one of {', '.join(rules.STYLES)}, not "
                      f"{json.dumps(entry.style)}")
    if not entry.owners:
        raise invalid(f"{where}.owners must name at least one owner")
    if entry.mail_host not in mail_domains:
        raise invalid(f"{where}.address: domain {entry.mail_host} is not one of mailDomains "
                      f"({', '.join(mail_domains)})")
    return entry


def parse_state(text: str) -> DesiredState:
    """Validate the desired-state document; raise ReconcileError (exit 1) naming the field."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise invalid(f"stdin is not JSON ({error.msg} at line {error.lineno})") from None
    data = _object(document, "document",
                   ("version", "site", "superuser", "mailDomains", "webHost", "lists"),
                   ("socialApps",))
    if data["version"] != 1:
        raise invalid(f"version must be 1, not {json.dumps(data['version'])}")
    site = _object(data["site"], "site", ("domain", "name"))
    superuser = _object(data["superuser"], "superuser", ("username", "email", "password"))
    if not isinstance(data["mailDomains"], list) or not data["mailDomains"]:
        raise invalid("mailDomains must be a non-empty list of domain names")
    mail_domains = tuple(_domain(d, f"mailDomains[{i}]")
                         for i, d in enumerate(data["mailDomains"]))
    if not isinstance(data["lists"], list):
        raise invalid("lists must be a list")
    lists = tuple(_list(entry, f"lists[{i}]", mail_domains)
                  for i, entry in enumerate(data["lists"]))
    seen: set[str] = set()
    for entry in lists:
        if entry.address in seen:
            raise invalid(f"lists[{entry.address}] appears more than once")
        seen.add(entry.address)
    apps_raw = data.get("socialApps", [])
    if not isinstance(apps_raw, list):
        raise invalid("socialApps must be a list")
    apps = []
    for i, raw in enumerate(apps_raw):
        app = _object(raw, f"socialApps[{i}]", ("provider", "name", "clientId", "secret"))
        apps.append(SocialApp(
            provider=_string(app["provider"], f"socialApps[{i}].provider"),
            name=_string(app["name"], f"socialApps[{i}].name"),
            client_id=_string(app["clientId"], f"socialApps[{i}].clientId", secret=True),
            secret=_string(app["secret"], f"socialApps[{i}].secret", secret=True)))
    if len({app.provider for app in apps}) != len(apps):
        raise invalid("socialApps names a provider more than once")
    return DesiredState(
        site_domain=_domain(site["domain"], "site.domain"),
        site_name=_string(site["name"], "site.name"),
        username=_string(superuser["username"], "superuser.username"),
        email=_email(superuser["email"], "superuser.email"),
        password=_string(superuser["password"], "superuser.password", secret=True),
        mail_domains=mail_domains,
        web_host=_domain(data["webHost"], "webHost"),
        lists=lists,
        social_apps=tuple(apps),
    )


# --- the summary --------------------------------------------------------------------------


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def line(self, kind: str, *, deletions: bool = False) -> str:
        text = f"{kind}: {self.created} created, {self.updated} updated, {self.unchanged} unchanged"
        return f"{text}, {self.deleted} deleted" if deletions else text


# --- Mailman core REST ----------------------------------------------------------------------

REASON_MAX = 200


def refusal(status: int, text: object) -> str:
    """Core's reason for a refusal on one line: `HTTP 400: Membership is banned`.

    mailmanclient hands over the JSON `description` of core's error, else the raw body
    (mailmanclient/restbase/connection.py:149-161): that can be falcon's JSON without a
    description (`{"title": "500 Internal Server Error"}`) or a whole HTML page from a proxy
    or server in front. Never print a page: its title, or its first line of text.
    """
    reason = str(text or "").strip()
    try:
        parsed = json.loads(reason)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        reason = str(parsed.get("description") or parsed.get("title") or "")
    elif re.search(r"<\s*(!doctype|html|head|body|title|h1|p)\b", reason, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", reason, re.IGNORECASE | re.DOTALL)
        if title and title[1].strip():
            reason = title[1]
        else:
            text_only = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", "\n", reason,
                               flags=re.IGNORECASE | re.DOTALL)
            reason = next((line for line in text_only.splitlines() if line.strip()), "")
        reason = html.unescape(reason)
    reason = " ".join(reason.split())
    if len(reason) > REASON_MAX:
        reason = reason[:REASON_MAX - 3] + "..."
    return f"HTTP {status} from core" + (f": {reason}" if reason else "")



class Core:
    """Mailman core's REST API through mailmanclient's connection, errors made readable."""

    def __init__(self, url: str, user: str, password: str) -> None:
        from mailmanclient.restbase.connection import Connection

        self.url = url.rstrip("/")

        def with_timeout(params: dict[str, Any]) -> dict[str, Any]:
            # mailmanclient sets no timeout; a hung core must not hang the deploy.
            return {**params, "timeout": REST_TIMEOUT_SECONDS}

        self._connection = Connection(f"{self.url}/3.1/", user, password,
                                      request_hooks=[with_timeout])

    def call(self, path: str, data: Mapping[str, Any] | None = None,
             method: str | None = None, *, about: str = "") -> Any:  # noqa: ANN401  (JSON)
        """One REST call; its JSON content (None for an empty 2xx answer).

        `about` names what the request is for (list, address) in a refusal's message.
        """
        _ok, content = self.attempt(path, data, method, about=about)
        return content

    def attempt(self, path: str, data: Mapping[str, Any] | None = None,
                method: str | None = None, *, tolerate: tuple[int, ...] = (),
                about: str = "") -> tuple[bool, Any]:
        """One REST call; (False, None) when core answers one of the `tolerate` statuses."""
        from urllib.error import HTTPError

        from mailmanclient.restbase.connection import MailmanConnectionError

        try:
            _response, content = self._connection.call(path, data, method)
        except MailmanConnectionError:
            raise ReconcileError(
                f"Mailman core is unreachable at {self.url} (is mailman.service running?)",
                EXIT_UNREACHABLE) from None
        except HTTPError as error:
            if error.code in tolerate:
                return False, None
            if error.code == 401:
                raise ReconcileError(
                    f"Mailman core at {self.url} rejected the REST credentials "
                    "(MAILMAN_REST_API_USER/MAILMAN_REST_API_PASS in mailman-web's settings)",
                    EXIT_UNREACHABLE) from None
            verb = method or ("POST" if data is not None else "GET")
            what = f" ({about})" if about else ""
            raise ReconcileError(
                f"Mailman core refused {verb} {path}{what}: {refusal(error.code, error.msg)}",
                EXIT_FAILED) from None
        return True, content

    def entries(self, path: str) -> list[dict[str, Any]]:
        content = self.call(path)
        return list(content.get("entries", [])) if content else []


# --- the reconcilers ----------------------------------------------------------------------


@dataclass
class Outcome:
    tallies: dict[str, Tally] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    restart_web: bool = False

    def tally(self, kind: str) -> Tally:
        return self.tallies.setdefault(kind, Tally())


def _superuser_row(state: DesiredState) -> AbstractUser | None:
    """The user row the document's superuser is: the one with its username, else the site's
    one superuser under its old name (a rename keeps the row, so its history stays with it).

    Several superusers and none with the new name: which one was renamed cannot be told, and
    creating one more would leave the old one active beside it, so the run stops unchanged.
    """
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    user = users.filter(username=state.username).first()
    if user is not None:
        return user
    superusers = list(users.filter(is_superuser=True, is_active=True).order_by("pk"))
    if len(superusers) > 1:
        raise ReconcileError(
            f"superuser.username {state.username} does not exist and {len(superusers)} active "
            f"superusers do ({', '.join(u.get_username() for u in superusers)}): rename the one "
            "it replaces in the Django admin, or deactivate the others", EXIT_FAILED)
    return superusers[0] if superusers else None


def reconcile_superuser(state: DesiredState, tally: Tally) -> AbstractUser:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    with transaction.atomic():
        user = _superuser_row(state)
        if user is None:
            user = get_user_model().objects.create_superuser(
                username=state.username, email=state.email, password=state.password)
            outcome = "created"
        else:
            changed: list[str] = []
            old_email = user.email
            for name, value in (("username", state.username), ("email", state.email)):
                if getattr(user, name) != value:
                    setattr(user, name, value)
                    changed.append(name)
            for flag in ("is_superuser", "is_staff", "is_active"):
                if not getattr(user, flag):
                    setattr(user, flag, True)
                    changed.append(flag)
            # check_password, not set_password: a fresh salt would rewrite the hash every run.
            if not user.check_password(state.password):
                user.set_password(state.password)
                changed.append("password")
            if changed:
                user.save(update_fields=changed)
            _forget_old_address(user, old_email, state.email)
            outcome = "updated" if changed else "unchanged"
        if _verified_primary_address(user, state.email):
            outcome = "updated" if outcome == "unchanged" else outcome
    tally.count(outcome)
    return user


def _forget_old_address(user: AbstractUser, old_email: str, new_email: str) -> None:
    """The address this program gave the superuser before is replaced, not kept beside the new
    one: as a verified address it could still log in or reset the password. Addresses the user
    added in Postorius stay."""
    from allauth.account.models import EmailAddress

    if old_email and old_email.lower() != new_email.lower():
        EmailAddress.objects.filter(user=user, email__iexact=old_email).delete()


def _verified_primary_address(user: AbstractUser, email: str) -> bool:
    """allauth only lets a user log in (Postorius, HyperKitty) with a verified address: make
    `email` the user's verified primary one. True when anything changed."""
    from allauth.account.models import EmailAddress

    addresses = list(EmailAddress.objects.filter(user=user))
    mine = next((a for a in addresses if a.email.lower() == email.lower()), None)
    taken = EmailAddress.objects.filter(email__iexact=email).exclude(user=user)
    if mine is None and taken.exists():
        raise ReconcileError(
            f"superuser.email {email} already belongs to another web user; "
            "choose another adminEmail or remove that user", EXIT_FAILED)
    changed = False
    for other in addresses:
        if other is not mine and other.primary:
            other.primary = False
            other.save(update_fields=["primary"])
            changed = True
    if mine is None:
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        return True
    if not (mine.verified and mine.primary and mine.email == email):
        mine.email, mine.verified, mine.primary = email, True, True
        mine.save(update_fields=["email", "verified", "primary"])
        return True
    return changed


def reconcile_site(state: DesiredState, outcome: Outcome) -> Site:
    from django.conf import settings
    from django.contrib.sites.models import Site

    tally = outcome.tally("site")
    site = Site.objects.filter(pk=settings.SITE_ID).first()
    if site is None:
        site = Site.objects.create(pk=settings.SITE_ID, domain=state.site_domain,
                                   name=state.site_name)
        tally.count("created")
        outcome.restart_web = True
    elif (site.domain, site.name) != (state.site_domain, state.site_name):
        # Rename, never delete: SITE_ID points at this row and allauth/django_mailman3 rows
        # reference it.
        site.domain, site.name = state.site_domain, state.site_name
        site.save(update_fields=["domain", "name"])
        tally.count("updated")
        outcome.restart_web = True
    else:
        tally.count("unchanged")
    Site.objects.clear_cache()
    return site


def reconcile_domains(state: DesiredState, core: Core, site: Site, tally: Tally) -> None:
    from django_mailman3.models import MailDomain

    existing = {entry["mail_host"] for entry in core.entries("domains")}
    links = {link.mail_domain: link for link in MailDomain.objects.all()}
    for domain in state.mail_domains:
        outcome = "unchanged"
        if domain not in existing:
            # A second POST of a domain is a 400, hence the look first.
            core.call("domains", {"mail_host": domain}, about=f"domain {domain}")
            outcome = "created"
        link = links.get(domain)
        if link is None:
            # What Postorius does after creating a domain: tie it to the web host's Site.
            MailDomain.objects.create(site=site, mail_domain=domain)
            outcome = "updated" if outcome == "unchanged" else outcome
        elif link.site_id != site.pk:
            link.site = site
            link.save(update_fields=["site"])
            outcome = "updated" if outcome == "unchanged" else outcome
        tally.count(outcome)


def _rest_value(value: object) -> str:
    # Mailman's REST validators read booleans as true/false strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Roster:
    """Owner or moderator memberships of all lists, fetched once: list_id -> email -> link."""

    by_list: Mapping[str, Mapping[str, str]]

    @classmethod
    def fetch(cls, core: Core, role: str, list_id: str | None = None) -> Roster:
        query = {"role": role} if list_id is None else {"role": role, "list_id": list_id}
        by_list: dict[str, dict[str, str]] = {}
        for member in core.entries(f"members/find?{urlencode(query)}"):
            by_list.setdefault(member["list_id"], {})[member["email"].lower()] = \
                member["self_link"]
        return cls(by_list)

    def of(self, list_id: str) -> Mapping[str, str]:
        return self.by_list.get(list_id, {})


def _member_path(self_link: str) -> str:
    return self_link.split("/3.1/", 1)[1]


def _has_role(core: Core, list_id: str, role: str, email: str) -> bool:
    query = urlencode({"list_id": list_id, "role": role, "subscriber": email})
    return bool(core.entries(f"members/find?{query}"))


def _sync_role(core: Core, list_id: str, role: str, want: frozenset[str],
               have: Mapping[str, str]) -> bool:
    # 409 (already subscribed) and 404 (already gone) mean a concurrent or interrupted run
    # got there first: the goal holds either way.
    for email in sorted(want - set(have)):
        data = {"list_id": list_id, "subscriber": email, "role": role,
                "pre_verified": "true", "pre_confirmed": "true", "pre_approved": "true"}
        # A refusal (400 "already an owner", 409, a 500 when an interrupted run's request
        # races this one) is checked against what core now holds, and retried once if the
        # goal is not met.
        about = f"list {list_id}, {role} {email}"
        added, _ = core.attempt("members", data, tolerate=(400, 409, 500), about=about)
        if not added and not _has_role(core, list_id, role, email):
            core.call("members", data, about=about)
    for email in sorted(set(have) - want):
        core.attempt(_member_path(have[email]), method="DELETE", tolerate=(404,),
                     about=f"list {list_id}, {role} {email}")
    return want != set(have)


def reconcile_list(core: Core, entry: DesiredList, current: Mapping[str, Any] | None,
                   owners: Roster, moderators: Roster) -> str:
    """Bring one list to its entry; return created/updated/unchanged/deleted."""
    if entry.absent:
        if current is None:
            return "unchanged"
        core.attempt(f"lists/{quote(current['list_id'])}", method="DELETE", tolerate=(404,),
                     about=f"list {entry.address}")
        return "deleted"
    if current is None:
        data = {"fqdn_listname": entry.address}
        if entry.style:
            data["style_name"] = entry.style
        list_id = entry.address.replace("@", ".")
        about = f"list {entry.address}"
        created, _ = core.attempt("lists", data, tolerate=(400, 500), about=about)
        if not created:
            # "Mailing list exists" (400, or 500 when two inserts race): an interrupted run's
            # request that core finished after we looked. Then bring that list up to date.
            exists, current = core.attempt(f"lists/{quote(entry.address)}", tolerate=(404,))
            if not exists:
                core.call("lists", data, about=about)  # not that: report Mailman's reason
            roles = Roster.fetch(core, "owner", list_id), Roster.fetch(core, "moderator", list_id)
            reconcile_list(core, entry, current, *roles)
            return "created"
        _complete_new_list(core, entry, list_id)
        return "created"
    list_id = current["list_id"]
    # The lists collection already carries a few settings; read the full config only when
    # the file names others (saves one request per list on a no-op run).
    if set(entry.settings) <= set(current):
        config: Mapping[str, Any] = current
    else:
        config = core.call(f"lists/{quote(list_id)}/config")
    changes = {k: _rest_value(v) for k, v in entry.settings.items() if config.get(k) != v}
    if changes:
        core.call(f"lists/{quote(list_id)}/config", changes, method="PATCH",
                  about=f"list {entry.address}")
    roles_changed = _sync_role(core, list_id, "owner", entry.owners, owners.of(list_id))
    roles_changed |= _sync_role(core, list_id, "moderator", entry.moderators,
                                moderators.of(list_id))
    return "updated" if changes or roles_changed else "unchanged"


def _complete_new_list(core: Core, entry: DesiredList, list_id: str) -> None:
    """Settings and owners of a list this run created, or no list at all.

    Validation catches what core refuses by its rules; what it can still refuse (a banned
    owner, a dropped connection) must not leave a list with default settings and no owner
    until the file is fixed, so the new list is deleted again before the error is reported.
    """
    try:
        # A new list only has its style's defaults: set every setting of the file at once.
        if entry.settings:
            core.call(f"lists/{quote(list_id)}/config",
                      {k: _rest_value(v) for k, v in entry.settings.items()}, method="PATCH",
                      about=f"list {entry.address}")
        _sync_role(core, list_id, "owner", entry.owners, {})
        _sync_role(core, list_id, "moderator", entry.moderators, {})
    except ReconcileError as error:
        try:
            core.attempt(f"lists/{quote(list_id)}", method="DELETE", tolerate=(404,),
                         about=f"list {entry.address}")
            undone = f"; the new list {entry.address} was deleted again"
        except ReconcileError:
            undone = (f"; the new list {entry.address} could not be deleted again "
                      "(the next run completes it)")
        raise ReconcileError(f"{error}{undone}", error.exit_code) from None


def check_languages(state: DesiredState, core: Core) -> None:
    """Every `preferred_language` is one core knows: asked once, before the first write.

    Core's language manager holds every `[language.<code>]` section of its configuration
    (languages/manager.py:72-80); REST shows the section names (rest/root.py:98-104).
    """
    wanted = [(e.address, e.settings["preferred_language"]) for e in state.lists
              if "preferred_language" in e.settings]
    if not wanted:
        return
    sections = core.call("system/configuration").get("sections", [])
    known = sorted(name.partition(".")[2] for name in sections
                   if name.startswith("language.") and name != "language.master")
    for address, code in wanted:
        if code not in known:
            raise invalid(f"lists[{address}].settings.preferred_language must be a language "
                          f"Mailman core knows ({', '.join(known)}), not {json.dumps(code)}")


# Core's MTA class that defers the Postfix map regeneration while this program runs
# (nixos/mailman_deferred_mta.py, loaded by core from `[mta] incoming`), and its marker file
# in core's var_dir. Repeated here (this program runs in mailman-web's environment, which
# cannot import core's module); tests/reconcile checks both agree.
DEFERRED_MTA = "mailman_deferred_mta.DeferredLMTP"
DEFER_MARKER = "reconcile-defers-postfix-maps"


def _writes_list(entry: DesiredList, current: Mapping[str, Any] | None) -> bool:
    """Whether bringing the list to its entry creates or deletes it (core regenerates maps)."""
    return (current is not None) if entry.absent else (current is None)


def defer_marker(core: Core) -> Path | None:
    """The marker path when core's MTA class defers map regeneration for us, else None."""
    if core.call("system/configuration/mta").get("incoming") != DEFERRED_MTA:
        return None
    return _core_path(core, "var_dir") / DEFER_MARKER


def _marker_holder(marker: Path) -> int | None:
    """The pid of the running reconcile the marker names; None when it names none."""
    try:
        pid = int(marker.read_text(encoding="ascii").strip())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # The pid of a run that died may be reused by any process: it must still be this program.
    return pid if Path(__file__).name.encode() in command_line else None


def take_over_marker(marker: Path) -> None:
    """Drop a marker a dead run left; refuse while another reconcile is changing lists.

    A dead run's marker must not stay: core's class would defer for whatever reconcile gets
    its pid next. (The host wrapper regenerates the maps before this program starts.)
    """
    holder = _marker_holder(marker)
    if holder is not None and holder != os.getpid():
        raise ReconcileError(
            f"another reconcile (pid {holder}) is changing lists; run again when it has finished",
            EXIT_FAILED)
    with contextlib.suppress(OSError):  # unwritable var_dir: nothing of ours can defer either
        marker.unlink(missing_ok=True)


def reconcile_lists(state: DesiredState, core: Core, tally: Tally,
                    marker: Path | None = None) -> None:
    """Bring every list to its entry; `marker` (see defer_marker) defers core's map rebuilds."""
    current = {entry["fqdn_listname"].lower(): entry for entry in core.entries("lists")}
    owners = Roster.fetch(core, "owner")
    moderators = Roster.fetch(core, "moderator")
    writes = [i for i, e in enumerate(state.lists) if _writes_list(e, current.get(e.address))]
    # Every list creation or deletion makes core regenerate the whole Postfix maps, looking
    # up every existing list: O(N^2) for N new lists. With core's DeferredLMTP, a marker
    # holding our pid defers that until the marker is removed -- just before the last
    # creation/deletion, which then regenerates once for all. If this run dies, the marker
    # names a dead process, core ignores it, and the next run (or the host wrapper, which
    # runs `mailman aliases` when it finds a marker) regenerates.
    if marker is not None and len(writes) > 1:
        try:
            marker.write_text(f"{os.getpid()}\n", encoding="ascii")
        except OSError:
            marker = None  # cannot write core's var_dir: core regenerates per list, as stock
    else:
        marker = None

    # One request at a time, on purpose: with SQLite, core answers concurrent writes with
    # 500s (lock upgrades between its two REST workers fail at once).
    for i, entry in enumerate(state.lists):
        if marker is not None and i == writes[-1]:
            marker.unlink(missing_ok=True)
        tally.count(reconcile_list(core, entry, current.get(entry.address), owners, moderators))


def reconcile_social_apps(state: DesiredState, site: Site, tally: Tally) -> None:
    from allauth.socialaccount.models import SocialApp as SocialAppModel
    from django.db import transaction

    for app in state.social_apps:
        with transaction.atomic():
            row = SocialAppModel.objects.filter(provider=app.provider).order_by("pk").first()
            if row is None:
                row = SocialAppModel.objects.create(
                    provider=app.provider, name=app.name, client_id=app.client_id,
                    secret=app.secret)
                row.sites.add(site)
                tally.count("created")
                continue
            changed = [name for name, value in (("name", app.name),
                                                ("client_id", app.client_id),
                                                ("secret", app.secret))
                       if getattr(row, name) != value]
            for name in changed:
                setattr(row, name, getattr(app, name))
            if changed:
                row.save(update_fields=changed)
            if not row.sites.filter(pk=site.pk).exists():
                row.sites.add(site)
                changed.append("sites")
            tally.count("updated" if changed else "unchanged")


def _core_path(core: Core, name: str) -> Path:
    """One of core's `[paths.<layout>]` directories (var_dir, data_dir, ...), expanded."""
    layout = core.call("system/configuration/mailman")["layout"]
    paths = core.call(f"system/configuration/paths.{quote(layout)}")
    values = {k: v for k, v in paths.items() if isinstance(v, str)}
    # Mailman expands $var_dir and friends itself; do the same, bounded.
    for _ in range(10):
        values = {k: string.Template(v).safe_substitute(values) for k, v in values.items()}
    return Path(values[name])


def check_postfix_maps(state: DesiredState, core: Core, outcome: Outcome) -> None:
    """Mailman core writes the Postfix maps (on start and on every list change); verify them.

    This program runs as the web user and cannot run `mailman aliases`; a missing or stale
    map is a failure that names the fix.
    """
    mta = core.call("system/configuration/mta")
    incoming = str(mta.get("incoming", ""))
    if not (incoming.startswith("mailman.mta.postfix.") or incoming == DEFERRED_MTA):
        outcome.notes.append(f"postfix maps: not checked (Mailman's MTA is {mta['incoming']})")
        return
    data_dir = _core_path(core, "data_dir")
    lmtp, domains = data_dir / "postfix_lmtp", data_dir / "postfix_domains"
    try:
        lmtp_text, domains_text = lmtp.read_text(), domains.read_text()
    except FileNotFoundError as error:
        raise ReconcileError(
            f"Postfix map {error.filename} is missing: run `mailman aliases` as the mailman "
            "user (or restart mailman.service, which regenerates the maps)",
            EXIT_FAILED) from None
    except PermissionError as error:
        outcome.notes.append(f"postfix maps: not checked (cannot read {error.filename})")
        return
    lmtp_keys = {line.split()[0] for line in lmtp_text.splitlines()
                 if line.strip() and not line.startswith("#")}
    domain_keys = {line.split()[0] for line in domains_text.splitlines()
                   if line.strip() and not line.startswith("#")}
    present = [e for e in state.lists if not e.absent]
    stale = [e.address for e in present if e.address not in lmtp_keys] + \
        [e.mail_host for e in present if e.mail_host not in domain_keys]
    for path in (lmtp, domains):
        for compiled in (path.with_name(path.name + s) for s in (".db", ".lmdb", ".cdb")):
            if compiled.exists() and compiled.stat().st_mtime < path.stat().st_mtime:
                stale.append(compiled.name)
    if stale:
        raise ReconcileError(
            f"Postfix maps in {data_dir} are stale (no entry or outdated for "
            f"{', '.join(sorted(set(stale))[:5])}): run `mailman aliases` as the mailman user",
            EXIT_FAILED)
    outcome.notes.append(f"postfix maps: ok ({len(present)} lists in {data_dir})")


# --- wiring -----------------------------------------------------------------------------


def setup_django() -> LazySettings:
    """Load mailman-web's settings the way the `mailman-web` command does."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from mailman_web.manage import setup

        try:
            setup()  # reads MAILMAN_WEB_CONFIG (default /etc/mailman3/settings.py)
        except SystemExit:
            raise ReconcileError(
                "mailman-web settings not found: set DJANGO_SETTINGS_MODULE or "
                "MAILMAN_WEB_CONFIG", EXIT_UNREACHABLE) from None
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except (ImproperlyConfigured, ImportError) as error:
        raise ReconcileError(
            f"mailman-web settings cannot be loaded ({type(error).__name__})",
            EXIT_UNREACHABLE, detail=str(error)) from None
    return settings


def check_database() -> None:
    from django.contrib.sites.models import Site
    from django.db import DatabaseError

    try:
        Site.objects.exists()
    except DatabaseError as error:
        raise ReconcileError(
            f"mailman-web's database is unreachable or not migrated ({type(error).__name__})",
            EXIT_UNREACHABLE, detail=str(error)) from None


def with_database_errors(step: Callable[[], Outcome]) -> Outcome:
    """Run a step; a database failure half-way (connection lost) becomes exit 2, not a trace."""
    from django.db import DatabaseError

    try:
        return step()
    except DatabaseError as error:
        raise ReconcileError(f"mailman-web's database failed ({type(error).__name__})",
                             EXIT_UNREACHABLE, detail=str(error)) from None


def write_one_click_switches(state: DesiredState, core: Core, outcome: Outcome) -> None:
    """Tell core's one-click delivery which lists have `one_click_unsubscribe: false`.

    The delivery (mailman_one_click_mta.py, core's `[mta] outgoing`) reads the switches file its
    settings file in core's etc_dir names; a list missing from it is on, the default. Lists the
    document does not mention are left on.
    """
    if core.call("system/configuration/mta").get("outgoing") != one_click.OUTGOING:
        outcome.notes.append("one-click unsubscribe: not configured in core (stock delivery)")
        return
    settings_file = _core_path(core, "etc_dir") / one_click.SETTINGS_FILE
    off = [e.address for e in state.lists if not e.absent and not e.one_click_unsubscribe]
    try:
        target = one_click.switches_path(settings_file.read_text(encoding="utf-8"))
        text = one_click.switches_text(off)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            partial.write_text(text, encoding="utf-8")
            partial.chmod(0o644)
            partial.replace(target)  # whole or not at all: core reads it for every post
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReconcileError(
            f"one-click unsubscribe switches not written ({settings_file}: {error}); "
            f"lists with {rules.ONE_CLICK}: false would still get links", EXIT_FAILED) from None
    outcome.notes.append(f"one-click unsubscribe: off for {len(off)} of the document's lists")


def reconcile(state: DesiredState, core: Core) -> Outcome:
    outcome = Outcome()
    # Reachability first, so a down core fails before anything is written.
    core.call("system/versions")
    check_languages(state, core)
    marker = defer_marker(core)
    if marker is not None:
        take_over_marker(marker)  # before any write: refuses while another run is changing lists
    reconcile_superuser(state, outcome.tally("superuser"))
    site = reconcile_site(state, outcome)
    reconcile_domains(state, core, site, outcome.tally("domains"))
    reconcile_lists(state, core, outcome.tally("lists"), marker)
    write_one_click_switches(state, core, outcome)
    reconcile_social_apps(state, site, outcome.tally("social apps"))
    check_postfix_maps(state, core, outcome)
    return outcome


def summary(outcome: Outcome) -> list[str]:
    lines = [tally.line(kind, deletions=kind == "lists")
             for kind, tally in outcome.tallies.items()]
    lines.extend(outcome.notes)
    if outcome.restart_web:
        lines.append("restart needed: the Site was renamed; restart the web app "
                     "(mailman-uwsgi) so it stops serving the cached name")
    return lines


def main(stdin: Callable[[], str] = sys.stdin.read) -> int:
    try:
        state = parse_state(stdin())
        settings = setup_django()
        check_database()
        core = Core(settings.MAILMAN_REST_API_URL, settings.MAILMAN_REST_API_USER,
                    settings.MAILMAN_REST_API_PASS)
        outcome = with_database_errors(lambda: reconcile(state, core))
    except ReconcileError as error:
        print(f"mailman-reconcile: {error}", file=sys.stderr)
        if error.detail:
            print(f"  {error.detail}", file=sys.stderr)
        return error.exit_code
    for line in summary(outcome):
        print(line)
    return EXIT_RESTART_WEB if outcome.restart_web else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
