"""The whole mail path, real: internet -> Postfix + rspamd -> Mailman -> Postfix + OpenDKIM -> out.

Every piece is a real program configured from our Nix files: Postfix (postfix.nix, Debian's
Postfix), rspamd (spam.nix, Debian's rspamd 3.4), OpenDKIM (dkim.nix), Mailman core 3.3.10
(the reconcile tests' fixture, with the [ARC] and [antispam] sections dkim.nix and spam.nix
set, written the way the nixpkgs module writes them: lib.generators.toINI, `key=value`).
The author domain (example.com, DMARC p=reject, its own DKIM key) lives in a DNS server on
127.0.0.1 that rspamd and Mailman's DMARC rule ask; the subscriber's mail server is the SMTP
sink behind Postfix's relayhost. What leaves is checked with dkimpy: the ARC chain
(`arc_verify`), our DKIM signature, the munged From and List-Id.
"""

from __future__ import annotations

import smtplib
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dkim
import pytest
from mail_dns import dns_server
from mail_keys import rsa_key, txt_lookup
from mail_world import (
    AUTHOR,
    GTUBE,
    GTUBE_ADD_HEADER,
    author_message,
    author_records,
    send_from_internet,
)
from milters_live import Daemon, opendkim_module, rspamd_module, start_opendkim, start_rspamd
from nixos_support import DOCUMENTS, NIXOS, evaluate_json
from postfix_live import daemon_directory, free_port, postfix_module, start_postfix

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reconcile"))

from mailman_fixture import MailmanEnv, MailmanSite, MailmanUnavailableError

HOST = "lists.example.org"
LIST = "team@example.org"
LIST_ID = "team.example.org"
SUBSCRIBER = "bob@example.net"
DOCUMENT = DOCUMENTS / "production.json"
OUR_KEY, OUR_DKIM_TXT = rsa_key()  # the stack's one key: DKIM (OpenDKIM) and ARC (Mailman)

# Mailman core's DNS look-ups (its DMARC rule) go to the test's DNS server: the resolver's
# configuration, set before Mailman imports dnspython's resolver. The port is written into the
# file: core's master passes runners only a few environment variables (mailman/bin/master.py,
# PRESERVE_ENVS), PYTHONPATH among them.
_SITECUSTOMIZE = """\
import dns.resolver


class _TestResolver(dns.resolver.Resolver):
    def __init__(self, filename="/etc/resolv.conf", configure=True):
        super().__init__(filename, configure=False)
        self.nameservers = ["127.0.0.1"]
        self.port = {port}


dns.resolver.Resolver = _TestResolver
"""


def _to_ini(sections: dict[str, dict[str, str]]) -> str:
    """nixpkgs lib.generators.toINI {} as the mailman module uses it: `[section]`, `key=value`."""
    return "".join(
        f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in sorted(values.items())) + "\n"
        for name, values in sorted(sections.items())
    )


def _mailman_sections(nix_instantiate: str, arc_key: Path) -> str:
    dkim_settings = evaluate_json(
        nix_instantiate,
        "--expr",
        f"""
        let
          deployment = import {NIXOS}/deployment.nix {{ documentPath = {DOCUMENT}; }};
          lib = {{ concatStringsSep = builtins.concatStringsSep; mkBefore = x: x; }};
          pkgs = {{ writeShellScript = name: text: name; systemd = "systemd"; }};
        in (import {NIXOS}/dkim.nix {{ inherit pkgs lib deployment; }}).services.mailman.settings
        """,
    )
    spam_settings = rspamd_module(nix_instantiate)["mailman"]["settings"]
    sections = {**dkim_settings, **spam_settings}
    sections["ARC"] = {**sections["ARC"], "privkey": str(arc_key)}
    # No internet here: the public suffix list download fails at once and Mailman uses the
    # copy it ships (mailman/rules/dmarc.py, ensure_current_suffix_list).
    sections["dmarc"] = {"org_domain_data_url": "http://127.0.0.1:9/"}
    return _to_ini(sections)


@pytest.fixture(scope="module")
def world() -> Iterator[int]:
    records = {
        **author_records(),
        **{(f"mailman._domainkey.{d}", "TXT"): [OUR_DKIM_TXT] for d in ("example.org", HOST)},
    }
    with dns_server(records) as port:
        yield port


@pytest.fixture(scope="module")
def rspamd(nix_instantiate: str, world: int) -> Iterator[Daemon]:
    options = (
        f'dns {{ nameserver = ["127.0.0.1:{world}"]; timeout = 1s; retransmits = 1; }}\n'
        "enable_test_patterns = true;\n"
    )
    with daemon_directory("rspamd-path-") as root:
        yield from start_rspamd(rspamd_module(nix_instantiate), root, test_options=options)


@pytest.fixture(scope="module")
def opendkim(nix_instantiate: str) -> Iterator[Daemon]:
    with daemon_directory("opendkim-path-") as root:
        yield from start_opendkim(opendkim_module(nix_instantiate, DOCUMENT), root, OUR_KEY)


@pytest.fixture(scope="module")
def site(nix_instantiate: str, world: int) -> Iterator[tuple[MailmanSite, int]]:
    try:
        env = MailmanEnv.ensure()
    except MailmanUnavailableError as error:
        pytest.fail(f"Mailman test environment unavailable: {error}")
    # Postfix reads Mailman's maps in var/data: a directory its user can reach.
    with daemon_directory("mailman-path-") as directory:
        yield from _run_site(nix_instantiate, world, env, directory)


def _run_site(
    nix_instantiate: str, world: int, env: MailmanEnv, directory: Path
) -> Iterator[tuple[MailmanSite, int]]:
    shim = directory / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(port=world))
    arc_key = directory / "arc.private"
    arc_key.write_bytes(OUR_KEY)
    arc_key.chmod(0o600)
    postfix_port = free_port()
    # Mailman submits to `localhost`, which resolves to ::1 first on the host (the issue).
    site = MailmanSite(
        env=env,
        directory=directory,
        smtp=("::1", postfix_port),
        extra_config=_mailman_sections(nix_instantiate, arc_key),
        extra_pythonpath=(str(shim),),
    )
    try:
        site.start()
        yield site, postfix_port
    finally:
        site.stop()


@pytest.fixture(scope="module")
def mail_list(site: tuple[MailmanSite, int]) -> MailmanSite:
    mailman, _ = site
    mailman.rest("domains", {"mail_host": "example.org"})
    mailman.rest("lists", {"fqdn_listname": LIST})
    # What lists.yaml's default gives a list (step: DMARC-safe defaults), set here directly.
    mailman.rest(
        f"lists/{LIST_ID}/config",
        {"dmarc_mitigate_action": "munge_from", "default_nonmember_action": "hold"},
        method="PATCH",
    )
    for address in (SUBSCRIBER, AUTHOR):
        mailman.rest(
            "members",
            {
                "list_id": LIST_ID,
                "subscriber": address,
                "pre_verified": "true",
                "pre_confirmed": "true",
                "pre_approved": "true",
            },
        )
    return mailman


@pytest.fixture(scope="module")
def postfix(
    nix_instantiate: str,
    rspamd: Daemon,
    opendkim: Daemon,
    site: tuple[MailmanSite, int],
    mail_list: MailmanSite,
) -> Iterator[Any]:
    mailman, port = site
    module = postfix_module(nix_instantiate, DOCUMENT)
    paths = {
        "/run/rspamd/rspamd-milter.sock": str(rspamd.socket),
        "/run/opendkim/opendkim.sock": str(opendkim.socket),
    }
    yield from start_postfix(module, paths=paths, mailman_data=mailman.data_dir, port=port)


def _delivered_to_subscriber(postfix: Any, subject: str) -> bytes:
    found = postfix.sink.find(f"Subject: [Team] {subject}".encode(), 90, SUBSCRIBER)
    if not found:
        found = postfix.sink.find(subject.encode(), 1, SUBSCRIBER)
    assert found, postfix.log()[-5000:]
    (message,) = found
    return message.data


@pytest.mark.nix
@pytest.mark.mailman
def test_clean_post_from_a_p_reject_domain_leaves_sealed_signed_and_munged(postfix, mail_list):
    send_from_internet(postfix.port, LIST, author_message(LIST, "clean post"))
    data = _delivered_to_subscriber(postfix, "clean post")
    message = message_from_bytes(data)
    records = {name: texts[0] for (name, kind), texts in author_records().items()}
    lookup = txt_lookup({**records, "mailman._domainkey.example.org": OUR_DKIM_TXT})
    # ARC: one set (i=1) by this host, and the chain validates.
    cv, results, comment = dkim.arc_verify(data, dnsfunc=lookup)
    assert cv == dkim.CV_Pass, (comment, results, data.decode(errors="replace")[:3000])
    assert message["ARC-Seal"] is not None and "d=example.org" in message["ARC-Seal"]
    # The seal carries what rspamd found when the post arrived.
    arc_results = " ".join(message["ARC-Authentication-Results"].split())
    assert arc_results.startswith(f"i=1; {HOST};"), arc_results
    assert "dmarc=pass" in arc_results and "dkim=pass" in arc_results, arc_results
    # DMARC mitigation: From is the list's, the author moves to Reply-To/Cc.
    logs = "".join(
        mail_list.log_tail(f"var/logs/{name}.log") for name in ("mailman", "error", "vette")
    )
    assert LIST in message["From"] and AUTHOR not in message["From"], logs
    assert message["List-Id"] is not None and LIST_ID in message["List-Id"]
    # Our DKIM signature (OpenDKIM, submitted on ::1), valid.
    signatures = message.get_all("DKIM-Signature")
    ours = [i for i, s in enumerate(signatures) if "d=example.org" in s and "s=mailman" in s]
    assert len(ours) == 1, signatures
    assert dkim.DKIM(data).verify(idx=ours[0], dnsfunc=lookup)


@pytest.mark.nix
@pytest.mark.mailman
def test_gtube_to_the_list_is_rejected_at_smtp(postfix):
    with pytest.raises(smtplib.SMTPDataError) as rejected:
        send_from_internet(postfix.port, LIST, author_message(LIST, "gtube", f"{GTUBE}\n"))
    assert rejected.value.smtp_code == 554


@pytest.mark.nix
@pytest.mark.mailman
@pytest.mark.parametrize("sender", ["member", "nonmember"])
def test_tagged_spam_is_discarded_never_held(postfix, mail_list, sender):
    subject = f"tagged from {sender}"
    data = author_message(LIST, subject, f"{GTUBE_ADD_HEADER}\n")
    if sender == "nonmember":
        data = data.replace(f"<{AUTHOR}>".encode(), b"<mallory@example.com>")
    send_from_internet(postfix.port, LIST, data)
    # The discard chain logs `DISCARD: <Message-ID>` (mailman/chains/discard.py) through the
    # vette logger, which [logging.template] sends to mailman.log.
    discarded = f"DISCARD: {message_from_bytes(data)['Message-ID']}"
    log_file = mail_list.var_dir / "logs" / "mailman.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and discarded not in log_file.read_text(errors="replace"):
        time.sleep(0.5)
    log = log_file.read_text(errors="replace")
    assert discarded in log, log[-3000:] + postfix.log()[-3000:]
    held = mail_list.rest(f"lists/{LIST_ID}/held")
    assert held.get("total_size", 0) == 0, held
    assert postfix.sink.find(subject.encode(), timeout=2) == []
