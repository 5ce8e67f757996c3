"""Core's outgoing delivery with an RFC 8058 one-click unsubscribe link in every member's copy.

Core calls the function named by `[mta] outgoing` for every message its outgoing runner
dequeues (mailman/config/schema.cfg:774-777; found once at start, runners/outgoing.py:57, and
called at :111). The stock function, `mailman.mta.deliver.deliver`, sends one copy for all
(BulkDelivery, mta/deliver.py:80) unless the message is VERPed or the list personalizes
(deliver.py:75-78); then `Deliver` crafts one copy per recipient (mta/base.py:148-171): a deep
copy of the message, a member look-up, and the header/footer decoration run again for each
copy (mta/decorating.py:29-34 calling handlers/decorate.py:41-204). That decoration asks every
archiver for the message's permalink (decorate.py:74-86) -- one HTTP request to HyperKitty per
recipient -- and is 86% of a 1,000-member post by issue 15's profile; benchmarks/one_click.py
measures the three deliveries.

`deliver` here sends one copy per member, because each carries its own link, but decorates once:
- a list post or digest (`to_list`, set by runners/lmtp.py:250 and kept when a moderator
  approves a held post, app/moderator.py:140-159; or `isdigest`, runners/digest.py:366-374) of
  a list whose `one_click_unsubscribe` is on, on a list that does not personalize:
  decorated once as BulkDelivery does (bulk.py:100-102; without `member` in the metadata the
  decoration is the same for every member, decorate.py:51-53), flattened once as smtplib's
  send_message does, and each member's copy is that text behind its own two headers;
- the same on a list that personalizes (`personalize` individual or full): core's own `Deliver`
  (full per-member decoration and To: personalization, deliver.py:41-61) with the two headers
  added to each copy before ARC signing;
- anything else -- owner and moderator mail (`to_owner`, `nodecorate`, owner_recipients.py:60,
  email/message.py:208-214), probes (`probe_token`, app/bounces.py:242), notices, a list with
  the switch off or with `include_rfc2369_headers` off, a host without the key -- goes to the
  stock function untouched.

The two headers: `List-Unsubscribe: <https://HOSTNAME/one-click/...>, <mailto:LIST-leave@DOMAIN>`
(the mailto is the one core's rfc-2369 handler writes, handlers/rfc_2369.py:68) and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`. The link is signed by ./mailman_one_click.py.

Configuration: core's master starts each runner with only a few environment variables
(PRESERVE_ENVS, mailman/bin/master.py:49-92 and :376-379), so nothing comes from the environment.
mailman_one_click.SETTINGS_FILE in core's etc_dir (/etc with the NixOS module's `fhs` layout,
mailman/config/mailman.cfg:34-43; `$var_dir/etc` by default, config/schema.cfg:220) names the
link's base URL, the key file (the systemd credential of mailman.service) and the switches file
(written by the reconcile: the lists whose `one_click_unsubscribe` is false).

Installed into core's Python environment by nixos/core-python-modules.nix; written for Mailman
3.3.10.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import smtplib
import time
from email.generator import BytesGenerator
from pathlib import Path
from typing import Any
from uuid import UUID

import mailman_one_click as one_click
from mailman.config import config
from mailman.interfaces.mailinglist import Personalization
from mailman.interfaces.mta import SomeRecipientsFailed
from mailman.mta import deliver as stock
from mailman.mta.arc_signing import ARCSigningMixin
from mailman.mta.base import IndividualDelivery
from mailman.mta.decorating import DecoratingMixin
from mailman.mta.verp import VERPMixin
from mailman.utilities.string import expand

log = logging.getLogger("mailman.smtp")
error_log = logging.getLogger("mailman.error")

Msgdata = dict[str, Any]
# Core's objects (IMailingList, mailman.email.message.Message, a delivery agent): untyped.
MailingList = Any
Message = Any
Agent = Any


def is_list_post(mlist: MailingList, msgdata: Msgdata) -> bool:
    """A post to the list's members or a digest; never owner, moderator or probe mail, nor a
    list that asks for no List-* headers at all (include_rfc2369_headers, rfc_2369.py:42-43)."""
    if msgdata.get("to_owner") or "probe_token" in msgdata:
        return False
    if not mlist.include_rfc2369_headers:
        return False
    return bool(msgdata.get("to_list") or msgdata.get("isdigest"))


class Settings:
    """SETTINGS_FILE: {"base_url": ..., "key_file": ..., "switches_file": ...}."""

    def __init__(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        self.base_url = str(data["base_url"])
        self.key = one_click.read_key(Path(data["key_file"]))
        self.switches_file = one_click.switches_path(text)

    @classmethod
    def load(cls) -> Settings | None:
        path = Path(config.ETC_DIR) / one_click.SETTINGS_FILE
        try:
            return cls(path)
        except (OSError, ValueError, KeyError, TypeError, one_click.KeyFileError) as error:
            error_log.error("one-click: %s: %s; delivering without links", path, error)
            return None

    def switched_off(self, fqdn_listname: str) -> bool:
        """The list's `one_click_unsubscribe` is false in lists.yaml (the reconcile's file).

        No file (no reconcile has run yet): every list is on, the default. A damaged file: on,
        and an error in core's log.
        """
        try:
            return one_click.switched_off(self.switches_file.read_text(encoding="utf-8"),
                                          fqdn_listname)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as error:
            error_log.error("one-click: %s unreadable (%s); one-click stays on",
                            self.switches_file, error)
            return False


class Links:
    """Each member's two headers, for one list and one message."""

    def __init__(self, mlist: MailingList, key: bytes, base_url: str) -> None:
        self.list_id: str = mlist.list_id
        self.key = key
        self.base_url = base_url
        self.mailto = f"<mailto:{mlist.leave_address}>"
        self._ids: dict[str, UUID] | None = None
        self.mlist = mlist

    def member_ids(self) -> dict[str, UUID]:
        """Member id by address: one roster query for the whole message, not one per member."""
        if self._ids is None:
            self._ids = {}
            for member in self.mlist.members.members:
                address = member.address
                self._ids[address.email] = member.member_id
                self._ids[address.original_email] = member.member_id
        return self._ids

    def headers(self, member_id: UUID | None) -> list[tuple[str, str]]:
        if member_id is None:  # not a member (a copy to an address core was told to add)
            return [("List-Unsubscribe", self.mailto)]
        url = one_click.unsubscribe_url(self.base_url, self.key, self.list_id, member_id)
        return [("List-Unsubscribe", f"<{url}>,\n\t{self.mailto}"),
                ("List-Unsubscribe-Post", one_click.POST_HEADER_VALUE)]


def _flatten(msg: Message) -> bytes:
    """The bytes smtplib's send_message would send (smtplib.py, Python 3.11: a shallow copy
    without Bcc/Resent-Bcc, BytesGenerator with the message's policy, CRLF)."""
    outgoing = copy.copy(msg)
    outgoing._headers = list(msg._headers)  # delete from the copy only
    del outgoing["Bcc"]
    del outgoing["Resent-Bcc"]
    with io.BytesIO() as buffer:
        BytesGenerator(buffer).flatten(outgoing, linesep="\r\n")
        return buffer.getvalue()


def _header_bytes(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}".replace("\n", "\r\n").encode("ascii") + b"\r\n"
                    for name, value in headers)


class OneClickDelivery(VERPMixin, DecoratingMixin, ARCSigningMixin, IndividualDelivery):  # type: ignore[misc]
    """One copy per member of a message decorated once; per member only the link headers."""

    def __init__(self, links: Links) -> None:
        super().__init__()
        self.links = links

    def deliver(self, mlist: MailingList, msg: Message, msgdata: Msgdata) -> dict[str, Any]:
        # Decorate and ARC-sign once, as BulkDelivery does (mta/bulk.py:100-102).
        self.decorate(mlist, msg, msgdata)
        self.arc_sign(mlist, msg, msgdata)
        del msg["List-Unsubscribe"]
        del msg["List-Unsubscribe-Post"]
        del msg["X-Mailman-Copy"]  # added per member below, as VERPMixin.avoid_duplicates does
        text = _flatten(msg)
        duplicates = msgdata.get("add-dup-header", {})
        member_ids = self.links.member_ids()
        refused: dict[str, Any] = {}
        for recipient in sorted(msgdata.get("recipients", ())):
            headers = self.links.headers(member_ids.get(recipient))
            if recipient in duplicates:  # mta/verp.py:82-85
                headers.append(("X-Mailman-Copy", "yes"))
            # VERPMixin._get_sender (mta/verp.py:41-73) reads the recipient from the metadata.
            sender = self._get_sender(mlist, msg, {**msgdata, "recipient": recipient})
            if (sender + recipient).isascii():
                refused.update(self._send(sender, recipient, _header_bytes(headers) + text,
                                          msg["message-id"]))
            else:  # SMTPUTF8: leave the encoding to smtplib's send_message
                own = copy.deepcopy(msg)
                for name, value in headers:
                    own[name] = value
                refused.update(self._send(sender, recipient, own, msg["message-id"]))
        return refused

    def _send(self, sender: str, recipient: str, payload: bytes | Message,
              message_id: str) -> dict[str, Any]:
        """BaseDelivery._deliver_to_recipients (mta/base.py:67-95) for one recipient and a
        prepared payload (bytes or a Message, mta/connection.py:131-147)."""
        recipients = [recipient]
        try:
            refused: dict[str, Any] = self._connection.sendmail(sender, recipients, payload)
        except smtplib.SMTPRecipientsRefused as error:
            log.error("%s recipients refused: %s", message_id, error)
            refused = error.recipients
        except smtplib.SMTPResponseException as error:
            log.error("%s response exception: %s", message_id, error)
            refused = dict.fromkeys(recipients, (error.smtp_code, error.smtp_error))
        except (OSError, smtplib.SMTPException) as error:
            log.error("%s low level smtp error: %s", message_id, error)
            refused = dict.fromkeys(recipients, (444, str(error)))
        return refused


class PersonalizedOneClick(stock.Deliver):  # type: ignore[misc]
    """Core's per-recipient `Deliver` (full decoration per member) plus the link headers."""

    def __init__(self, links: Links) -> None:
        super().__init__()
        self.links = links
        # Before ARC signing, which must see the final headers (deliver.py:56-61).
        self.callbacks.insert(self.callbacks.index(self.arc_sign), self.add_link_headers)

    def add_link_headers(self, mlist: MailingList, msg: Message, msgdata: Msgdata) -> None:
        # IndividualDelivery puts the recipient's member (or None) here (mta/base.py:164-165).
        member = msgdata.get("member")
        del msg["List-Unsubscribe"]
        del msg["List-Unsubscribe-Post"]
        for name, value in self.links.headers(member.member_id if member else None):
            msg[name] = value


def deliver(mlist: MailingList, msg: Message, msgdata: Msgdata) -> None:
    """The `[mta] outgoing` callable: one-click links on list posts, stock delivery otherwise."""
    if not msgdata.get("recipients"):
        return  # deliver.py:68-71
    settings = Settings.load() if is_list_post(mlist, msgdata) else None
    if settings is None or settings.switched_off(mlist.fqdn_listname):
        stock.deliver(mlist, msg, msgdata)
        return
    links = Links(mlist, settings.key, settings.base_url)
    agent: IndividualDelivery = (
        OneClickDelivery(links) if mlist.personalize == Personalization.none
        else PersonalizedOneClick(links))
    _deliver_with(agent, mlist, msg, msgdata)


def _deliver_with(agent: Agent, mlist: MailingList, msg: Message, msgdata: Msgdata) -> None:
    """mailman/mta/deliver.py:82-169 after its choice of agent: log the delivery as core does
    and hand failures back to the outgoing runner (SomeRecipientsFailed, runners/outgoing.py
    :125-184: permanent ones become bounces, temporary ones the retry queue)."""
    original_recipients = msgdata["recipients"]
    original_sender = msgdata.get("original-sender", msg.sender)
    started = time.time()
    refused = agent.deliver(mlist, msg, msgdata)
    agent._connection.quit()  # as deliver.py:98 does
    size = getattr(msg, "original_size", msgdata.get("original_size"))
    substitutions: dict[str, Any] = {
        "msgid": msg.get("message-id", "n/a").strip(), "listname": mlist.fqdn_listname,
        "sender": original_sender, "recip": len(original_recipients),
        "size": size if size is not None else len(msg.as_string()),
        "time": time.time() - started, "refused": len(refused), "smtpcode": "n/a",
        "smtpmsg": "n/a"}
    templates = config.logging.smtp
    _log(templates.every, mlist, substitutions)
    if not refused and not msgdata.get("to_list"):  # deliver.py:127-134: name the To/Cc
        substitutions["recip"] = ",".join(map(str, [*msg.get_all("to", []),
                                                     *msg.get_all("cc", [])]))
    _log(templates.refused if refused else templates.success, mlist, substitutions)
    temporary, permanent = [], []
    for recipient, (code, smtp_message) in refused.items():
        if code >= 500 and code != 552:  # deliver.py:141-158 (RFC 5321 4.5.3.1.10)
            permanent.append((recipient, code, smtp_message))
        else:
            temporary.append(recipient)
        _log(templates.failure, mlist,
             {**substitutions, "recip": recipient, "smtpcode": code, "smtpmsg": smtp_message})
    if temporary or permanent:
        raise SomeRecipientsFailed(temporary, permanent)


def _log(template: str, mlist: MailingList, substitutions: dict[str, Any]) -> None:
    if template.lower() != "no":
        log.info("%s", expand(template, mlist, substitutions))

