"""What Mailman core 3.3.10 accepts in a mailing-list entry: the one definition of the list rules.

Both sides import this module: components/lists.py when it reads lists.yaml (so `pulumi preview`
refuses a bad value) and mailman_reconcile.py on the host before its first write (so a document
that did not come from the Pulumi program is held to the same rules). It is pure Python with no
dependency, because it runs in mailman-web's Python environment on the host, which has no
jsonschema; nixos/reconcile.nix installs it next to mailman_reconcile.py.

Every rule models Mailman 3.3.10's own code, cited by file:line under `mailman/`. A check raises
`RuleError` whose message is the expected form ("one of a, b", "a single line"); each side puts
its own location (file or document, list, field) in front of it.
"""

from __future__ import annotations

import re


class RuleError(ValueError):
    """A value Mailman core would refuse; the message says what is expected instead."""


STYLES = ("legacy-default", "legacy-announce", "private-default")
DEFAULT_STYLE = "legacy-default"

#: Settings a list gets when its entry does not name them. Mailman's styles leave
#: dmarc_mitigate_action at no_mitigation (styles/base.py), so a post from a p=reject or
#: p=quarantine domain fails DMARC at every receiver that checks it (Gmail, Outlook). With
#: munge_from, core's dmarc-mitigation rule looks up the author domain's policy
#: (rules/dmarc.py) and only for those posts puts the list in From: and the author in Reply-To
#: (handlers/dmarc.py); posts from other domains keep their From. An entry that names the
#: setting (no_mitigation included) keeps its own value.
DEFAULT_SETTINGS: dict[str, object] = {"dmarc_mitigate_action": "munge_from"}

# --- addresses ------------------------------------------------------------------------------

# email/validate.py:32 and :36, the characters Mailman allows in a local part and a domain
# label (no `|`, `^`, quotes-only or spaces).
_LOCAL_CHARS = re.compile("[-0-9a-z!#$%&'*+./=?@_`{}~]", re.IGNORECASE)
_DOMAIN_CHARS = re.compile("[-a-z0-9]", re.IGNORECASE)


def is_mailman_address(email: str) -> bool:
    """Mailman's own address check, `Validator.is_valid` (email/validate.py:45-62).

    Split at the last `@` (utilities/email.py:35-39); the local part (outer quotes removed) only
    of _LOCAL_CHARS; at least two domain labels, none empty (`exa..mple`), none starting with
    `-`, each only letters, digits and `-`.
    """
    if not email:
        return False
    local, at, domain = email.rpartition("@")
    if not at:
        return False
    local = re.sub('^"(.*)"$', r"\1", local)
    if not local or _LOCAL_CHARS.sub("", local):
        return False
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    return all(label and label[0] != "-" and not _DOMAIN_CHARS.sub("", label)
               for label in labels)


EMAIL_EXPECTED = "an e-mail address Mailman accepts (name@example.org)"


def address(value: object) -> str:
    """An e-mail address Mailman accepts, lower-cased (Mailman compares them lower-cased)."""
    if not isinstance(value, str) or not is_mailman_address(value.strip()):
        raise RuleError(EMAIL_EXPECTED)
    return value.strip().lower()


def role_address(list_address: str, value: object) -> str:
    """An owner or moderator of the list at `list_address`.

    Core refuses the list's own posting address for every role but nonmember
    (app/membership.py:69-71, model/mailinglist.py:526-530). Its -request, -owner, ... addresses
    are not refused by core, so they are not refused here either.
    """
    email = address(value)
    if email == list_address:
        raise RuleError(f"an address other than the list's own ({list_address})")
    return email


# --- list names -----------------------------------------------------------------------------

# app/lifecycle.py:74 validates the whole list address with the address check above and :79-80
# allows the characters `[-_.+=!$*{}~0-9a-z]`; the narrower `[-_.0-9a-z]` here is Mailman's
# default `listname_chars` (config/schema.cfg), so no `+` (its VERP delimiter). The dot rules are
# those of an e-mail local part (no leading, trailing or doubled dot).
_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
LIST_NAME_MAX = 64
# Mailman's LMTP runner reads `<list>-<name>@domain` as sub-address <name> of list <list>
# (runners/lmtp.py SUBADDRESS_NAMES), so a list whose name ends in one of them never gets its
# own posts: `news-request` would be the request address of `news`.
SUBADDRESS_NAMES = (
    "admin", "bounces", "confirm", "join", "leave", "owner", "request", "subscribe",
    "unsubscribe",
)


def list_name(name: str) -> str:
    """The local part of a list address, checked; raise RuleError with the expected form."""
    if len(name) > LIST_NAME_MAX or not _LIST_NAME.match(name):
        raise RuleError(
            "a list name of at most 64 characters a-z, 0-9, . _ - "
            "(starting with a letter or digit, no leading, trailing or doubled dot)")
    if name.rpartition("-")[2] in SUBADDRESS_NAMES:
        raise RuleError(
            "a list name whose last -part is not a Mailman sub-address ("
            + ", ".join(SUBADDRESS_NAMES) + ")")
    return name


# --- settings -------------------------------------------------------------------------------

# Enumerations: rest/listconf.py decodes these with enum_validator, which accepts a member name.
_POLICY = ("open", "confirm", "moderate", "confirm_then_moderate")  # interfaces/mailinglist.py:79
_ACTION = ("hold", "reject", "discard", "accept", "defer")  # interfaces/action.py:24
ENUMS: dict[str, tuple[str, ...]] = {
    "subscription_policy": _POLICY,  # rest/listconf.py:261
    "unsubscription_policy": _POLICY,  # rest/listconf.py:262
    "archive_policy": ("never", "private", "public"),  # listconf.py:178, interfaces/archiver.py:25
    "dmarc_mitigate_action": (  # rest/listconf.py:209, interfaces/mailinglist.py:36
        "no_mitigation", "munge_from", "wrap_message", "reject", "discard"),
    "default_member_action": _ACTION,  # rest/listconf.py:199
    "default_nonmember_action": _ACTION,  # rest/listconf.py:200
    "reply_goes_to_list": (  # rest/listconf.py:253, interfaces/mailinglist.py:66
        "no_munging", "point_to_list", "explicit_header", "explicit_header_only"),
}
#: Decoded with `str` (rest/listconf.py:207, :227, :260): any text.
TEXTS = ("display_name", "info", "subject_prefix")
#: Decoded with no_newlines_validator (rest/listconf.py:147-150, :201): one line.
SINGLE_LINES = ("description",)
#: Decoded with lazr.config's as_boolean (rest/listconf.py:172-175 and on); we send true/false.
BOOLS = (
    "dmarc_mitigate_unconditionally", "advertised", "send_welcome_message",
    "send_goodbye_message", "allow_list_posts", "anonymous_list", "first_strip_reply_to",
    "include_rfc2369_headers", "require_explicit_destination", "emergency",
    "admin_notify_mchanges", "admin_immed_notify", "respond_to_post_requests",
)
#: Decoded with integer_ge_zero_validator (rest/validator.py:157-162; listconf.py:234-235).
COUNTS = ("max_message_size", "max_num_recipients")
#: Core takes any string here (rest/listconf.py:254); a reply-to address must be one Mailman
#: would accept as an address, so we hold it to that.
ADDRESSES = ("reply_to_address",)
#: Decoded with language_validator (rest/listconf.py:250, rest/validator.py:96-99): a code the
#: site's language manager knows. Which codes those are is core's configuration, so this module
#: checks the form only; the reconcile asks core for its languages before its first write.
LANGUAGES = ("preferred_language",)
SETTINGS = (*TEXTS, *SINGLE_LINES, *ENUMS, *BOOLS, *COUNTS, *ADDRESSES, *LANGUAGES)
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


def setting(name: str, value: object) -> object:
    """The value of list setting `name` as core will accept it; RuleError names the form.

    The one normalization: a description loses its trailing newlines (what a folded YAML
    `description: >` block ends with); a newline inside it is refused, as core refuses it.
    """
    if name in ENUMS:
        if not isinstance(value, str) or value not in ENUMS[name]:
            raise RuleError("one of " + ", ".join(ENUMS[name]))
        return value
    if name in TEXTS or name in SINGLE_LINES:
        return _text(name, value)
    if name in BOOLS:
        if not isinstance(value, bool):
            raise RuleError("true or false")
        return value
    if name in COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RuleError("a whole number >= 0")
        return value
    if name in ADDRESSES:
        return address(value)
    if name in LANGUAGES:
        return language_code(value)
    raise RuleError("a known list setting (docs/contracts.md section 6)")


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise RuleError("a string")
    if name in SINGLE_LINES:
        value = value.rstrip("\n")
        if "\n" in value:
            raise RuleError("a single line (Mailman refuses a newline in it)")
    return value


# --- the host's own per-list settings ------------------------------------------------------

#: RFC 8058 one-click unsubscribe links in the list's posts (nixos/mailman_one_click_mta.py).
#: Not a Mailman setting: it is a key of the list entry itself, never sent to core; the reconcile
#: writes the lists that turn it off into the file core's delivery reads.
ONE_CLICK = "one_click_unsubscribe"
ONE_CLICK_DEFAULT = True


def one_click(value: object) -> bool:
    if not isinstance(value, bool):
        raise RuleError("true or false")
    return value


def language_code(value: object) -> str:
    """The form of a language code; whether core knows it is asked of core."""
    if not isinstance(value, str) or not _LANGUAGE_CODE.match(value):
        raise RuleError("a language code (en, de, pt_BR)")
    return value
