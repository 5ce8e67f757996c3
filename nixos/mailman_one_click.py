"""RFC 8058 one-click unsubscribe: the signed per-member link and the endpoint that honours it.

One file, standard library only, for both sides of the link:
- core's delivery (./mailman_one_click_mta.py, in core's Python environment) imports
  `unsubscribe_url` to put a link into every member's copy of a list post;
- the host runs this file as its own small HTTP service (nixos/one-click.nix,
  `mailman-one-click.service`) behind nginx at https://HOSTNAME/one-click/.

The link is https://HOSTNAME/one-click/<list-id>/<token>, the token the base64url text of
Mailman's member id (16 bytes) and an HMAC-SHA256 (first 16 bytes) over the list id and member id
under a key only the host has. It holds no address; changing any part of it (another member id,
another list id) breaks the MAC, and nothing is stored to verify it. Rotating the key (a new
stack secret, README "One-click unsubscribe") invalidates every link already sent.

The endpoint: GET shows a page with one button and never changes anything (mail scanners follow
links); POST with the body `List-Unsubscribe=One-Click` (RFC 8058 section 3.1, form-urlencoded or
multipart/form-data) removes exactly that member from exactly that list through core's REST API,
and answers 200 whether it removed the member now or earlier (idempotent, and the same answer
tells nobody whether an address is subscribed). Any token that does not verify, any other body,
any body over MAX_BODY bytes: a 4xx and nothing changes. Every removal is logged with the list
id, the member id and the time, never the address; request paths (they hold tokens) are not.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hmac
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from uuid import UUID
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# RFC 8058 section 4: a receiver acts on one-click only when a valid DKIM signature covers both
# headers; the signer's configuration (nixos/dkim.nix, OversignHeaders) names them.
# RFC 8058 section 3.1: the header value, and the one key/value the POST body carries.
POST_HEADER_VALUE = "List-Unsubscribe=One-Click"
POST_FIELD = ("List-Unsubscribe", "One-Click")
# Where the link points under the site's host; nginx routes this prefix to the service.
PATH_PREFIX = "/one-click/"
# Core's side: `[mta] outgoing` (nixos/one-click.nix) and its settings file in core's etc_dir,
# {"base_url", "key_file", "switches_file"}; the reconcile checks the first and writes the lists
# that turn one-click off into the switches file, as {"off": [list addresses]}.
OUTGOING = "mailman_one_click_mta.deliver"
SETTINGS_FILE = "mailman-one-click.json"


def switches_path(settings_text: str) -> Path:
    """The switches file a SETTINGS_FILE's text names (raises ValueError/KeyError/TypeError)."""
    return Path(json.loads(settings_text)["switches_file"])


# A form-urlencoded body is 26 bytes, a browser's or mail provider's multipart one ~200.
MAX_BODY = 1024
# systemd credentials (LoadCredential=) of the units that sign or verify: never argv or the store.
KEY_CREDENTIAL = "one-click-key"
REST_PASSWORD_CREDENTIAL = "rest-api-password"  # noqa: S105 -- a file name
KEY_MIN_LENGTH = 32
_MAC_BYTES = 16
_TOKEN_LENGTH = 43  # base64url of 16 + 16 bytes, unpadded
_LIST_ID = re.compile(r"^[a-z0-9][a-z0-9._+=-]{0,253}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


class KeyFileError(RuntimeError):
    """The signing key is missing or too short."""


def read_key(path: Path) -> bytes:
    """The HMAC key: the text of a root-provided file (a systemd credential on the host)."""
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise KeyFileError(f"the one-click key {path} is unreadable: {error.strerror}") from None
    if len(key) < KEY_MIN_LENGTH:
        raise KeyFileError(f"the one-click key {path} is shorter than {KEY_MIN_LENGTH} bytes")
    return key


def switches_text(off: Iterable[str]) -> str:
    """The switches file: the addresses of the lists whose `one_click_unsubscribe` is false."""
    return json.dumps({"off": sorted(off)}, indent=1) + "\n"


def switched_off(text: str, fqdn_listname: str) -> bool:
    off = json.loads(text)["off"]
    if not isinstance(off, list):
        raise ValueError("`off` is not a list")
    return fqdn_listname in off


def _mac(key: bytes, list_id: str, member_id: UUID) -> bytes:
    message = b"\0".join((b"one-click-unsubscribe", b"v1", list_id.encode(), member_id.bytes))
    return hmac.new(key, message, sha256).digest()[:_MAC_BYTES]


def make_token(key: bytes, list_id: str, member_id: UUID) -> str:
    raw = member_id.bytes + _mac(key, list_id, member_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unsubscribe_url(base_url: str, key: bytes, list_id: str, member_id: UUID) -> str:
    """The member's one-click link; `base_url` is https://HOSTNAME/one-click (no slash)."""
    return f"{base_url.rstrip('/')}/{list_id}/{make_token(key, list_id, member_id)}"


def verify(key: bytes, path: str) -> tuple[str, UUID] | None:
    """(list id, member id) when `path` is a link this key signed, else None."""
    if not path.startswith(PATH_PREFIX):
        return None
    list_id, slash, token = path[len(PATH_PREFIX):].partition("/")
    if not slash or not _LIST_ID.match(list_id) or not _TOKEN.match(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        return None
    # 43 characters carry 258 bits: the last two must be zero, or two tokens would mean one.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    member_id = UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _mac(key, list_id, member_id)):
        return None
    return list_id, member_id


def is_one_click_body(content_type: str, body: bytes) -> bool:
    """Whether the body is exactly the one field RFC 8058 section 3.1 asks for."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            fields = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                            strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return False
        return fields == [POST_FIELD]
    if kind == "multipart/form-data":
        header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        if not message.is_multipart() or message.defects:
            return False
        parts = list(message.iter_parts())
        if len(parts) != 1:
            return False
        part = parts[0]
        disposition = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        return (part.get_content_disposition() == "form-data" and disposition == POST_FIELD[0]
                and isinstance(payload, bytes) and payload.strip(b"\r\n") == b"One-Click")
    return False


# --- core's REST API --------------------------------------------------------------------------

class CoreError(RuntimeError):
    """Core did not answer as expected; nothing was changed by us."""


class Core:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {token}"

    def request(self, method: str, path: str, data: dict[str, str] | None = None,
                ) -> tuple[int, Any]:
        """(status, decoded JSON body or None); one call per request thread, nothing shared."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(f"{self.url}/3.1/{path}", data=body,  # noqa: S310
                                         method=method)
        request.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return int(error.code), None
        except (OSError, ValueError) as error:
            raise CoreError(f"core REST API: {error}") from None

    def unsubscribe(self, list_id: str, member_id: UUID) -> bool:
        """Remove the member; False when it is already gone (or not a member of this list).

        Core 3.3.10: GET members/<hex> answers the member with list_id and role
        (mailman/rest/members.py:96-129); DELETE removes a `member` through the list's
        unsubscription workflow (members.py:232-271). pre_confirmed and pre_approved: the signed
        link is the member's confirmation, and RFC 8058 asks for the removal to happen, so a
        list's "moderate" unsubscription policy does not hold it (docs: turn one-click off).
        """
        status, member = self.request("GET", f"members/{member_id.hex}")
        if status == 404:
            return False
        if status != 200 or not isinstance(member, dict):
            raise CoreError(f"core answered {status} to a member lookup")
        if member.get("list_id") != list_id or member.get("role") != "member":
            return False  # a valid MAC cannot name these; nothing of ours to remove
        status, _ = self.request("DELETE", f"members/{member_id.hex}",
                                 {"pre_confirmed": "true", "pre_approved": "true"})
        if status == 404:
            return False
        if status not in (200, 202, 204):
            raise CoreError(f"core answered {status} to the unsubscription")
        return True


# --- the WSGI application ---------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""
_CONFIRM = _PAGE.format(
    title="Unsubscribe from this list?",
    body=('<p>Press the button to stop receiving this mailing list at this address.</p>'
          '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
          '<button type="submit">Unsubscribe</button></form>'))
_DONE = _PAGE.format(title="Unsubscribed",
                     body="<p>This address no longer receives this mailing list.</p>")
_NOT_FOUND = _PAGE.format(title="Link not valid",
                          body="<p>This unsubscribe link is not valid (any more).</p>")
_BAD_REQUEST = _PAGE.format(title="Bad request", body="<p>Use the button on the page.</p>")
_UNAVAILABLE = _PAGE.format(title="Try again later", body="<p>Nothing was changed.</p>")
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Robots-Tag", "noindex, nofollow"),
    ("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
]

StartResponse = Callable[..., Any]
Logger = Callable[[str], None]


def _log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def make_app(key: bytes, core: Core, log: Logger = _log_stderr) -> Callable[..., Iterable[bytes]]:
    """The endpoint as a WSGI application (PEP 3333)."""

    def respond(start: StartResponse, status: str, page: str, method: str,
                extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        body = page.encode()
        start(status, [*_HEADERS, *extra, ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    def app(environ: dict[str, Any], start: StartResponse) -> list[bytes]:  # noqa: PLR0911
        method = environ.get("REQUEST_METHOD", "")
        # PATH_INFO is the decoded path: a valid token only has characters never %-encoded.
        signed = verify(key, environ.get("PATH_INFO", ""))
        if signed is None:
            return respond(start, "404 Not Found", _NOT_FOUND, method)
        if method in ("GET", "HEAD"):
            return respond(start, "200 OK", _CONFIRM, method)
        if method != "POST":
            return respond(start, "405 Method Not Allowed", _BAD_REQUEST, method,
                           [("Allow", "GET, HEAD, POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or "-1")
        except ValueError:
            length = -1
        if length < 0:
            return respond(start, "411 Length Required", _BAD_REQUEST, method)
        if length > MAX_BODY:
            return respond(start, "413 Content Too Large", _BAD_REQUEST, method)
        body = environ["wsgi.input"].read(length)
        if len(body) != length or not is_one_click_body(environ.get("CONTENT_TYPE", ""), body):
            return respond(start, "400 Bad Request", _BAD_REQUEST, method)
        list_id, member_id = signed
        try:
            removed = core.unsubscribe(list_id, member_id)
        except CoreError as error:
            log(f"one-click unsubscribe failed: list={list_id} member={member_id.hex} {error}")
            return respond(start, "503 Service Unavailable", _UNAVAILABLE, method,
                           [("Retry-After", "300")])
        when = datetime.now(UTC).isoformat(timespec="seconds")
        outcome = "unsubscribed" if removed else "already-gone"
        log(f"one-click unsubscribe: list={list_id} member={member_id.hex} time={when} "
            f"outcome={outcome}")
        return respond(start, "200 OK", _DONE, method)

    return app


# --- the service ------------------------------------------------------------------------------

class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """wsgiref logs every request line, token included: a bearer secret stays out of logs."""


def main() -> int:
    """Serve on ONE_CLICK_LISTEN (host:port); core at ONE_CLICK_REST_URL as ONE_CLICK_REST_USER."""
    try:
        credentials = Path(os.environ["CREDENTIALS_DIRECTORY"])
        key = read_key(credentials / KEY_CREDENTIAL)
        password = (credentials / REST_PASSWORD_CREDENTIAL).read_text(encoding="utf-8").strip()
        host, _, port = os.environ["ONE_CLICK_LISTEN"].rpartition(":")
        core = Core(os.environ["ONE_CLICK_REST_URL"], os.environ["ONE_CLICK_REST_USER"], password)
    except (KeyFileError, KeyError, OSError, ValueError) as error:
        print(f"mailman-one-click: cannot start: {error}", file=sys.stderr)
        return 1
    with make_server(host, int(port), make_app(key, core), server_class=_ThreadingServer,
                     handler_class=_QuietHandler) as server:
        print(f"mailman-one-click: listening on {host}:{port}", file=sys.stderr, flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
