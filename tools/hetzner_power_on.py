#!/usr/bin/env python3
"""Power a Hetzner Cloud server on, and wait until Hetzner reports it done.

    HCLOUD_TOKEN=... python3 tools/hetzner_power_on.py <server id>

Why: on a `serverType` change terraform-provider-hcloud v1.68.0 powers the running server off,
changes its type and does not power it on again (internal/server/resource.go lines 587-611;
`powerOnServer`, line 1455, runs only after a create and a public_net change), and Hetzner
leaves a resized server off. The program runs this tool as `mailman-host-resize-power-on`
(components/host.py) right after the server update, before anything connects to the host.

Reads the token from HCLOUD_TOKEN and the API from HCLOUD_ENDPOINT (default
https://api.hetzner.cloud/v1, as the provider: hcloud-go v2.47.0 hcloud/client.go line 26).
A running server is left alone; otherwise it posts the poweron action and polls it until it
succeeds. Exit 0 when the server runs; exit 1 with one line on stderr otherwise (the token is
never printed); exit 2 on a bad command line. Python standard library only.

API shapes, from hcloud-go v2.47.0 (the version terraform-provider-hcloud v1.68.0 uses):
- GET /servers/{id} -> {"server": {"id", "name", "status", ...}} (hcloud/schema/server.go
  lines 6-9 and 88-90); status "running", "off", "starting", ... (hcloud/server.go lines 55-75).
- POST /servers/{id}/actions/poweron, no body -> {"action": {...}} (hcloud/server.go lines
  491-503, hcloud/schema/server.go lines 162-164).
- GET /actions/{id} -> {"action": {"id", "status", "error": {"code", "message"} | null}}
  (hcloud/schema/action.go lines 6-35; hcloud/action.go lines 31-33: "running", "success",
  "error"; GetByID lines 110-112 and 177-190).
- Errors: {"error": {"code", "message", ...}} (hcloud/schema/error.go lines 6-11, 38-40).
- Every request: "Authorization: Bearer <token>" (hcloud/client.go line 352).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
TIMEOUT_SECONDS = 300.0  # a power-on takes seconds; a stuck action fails the update in minutes
POLL_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 30.0
# What can go into an HTTP header; anything else would make urllib raise with the header value
# (the token) in its message.
_TOKEN_FORM = re.compile(r"^[\x21-\x7e]+$")
# Starts the tool's own error line: the deploy's secret guard passes lines with this prefix on
# (components/host.py, `public_prefix`), as they never hold the token.
ERROR_PREFIX = "hetzner_power_on: "
RECOVERY = (
    "power the server on in the Hetzner Cloud Console (or `hcloud server poweron {id}`), then run "
    "`pulumi up` again"
)


class PowerOnError(Exception):
    """One line for stderr; never contains the token."""


@dataclass(frozen=True)
class Api:
    """The few Hetzner Cloud API calls this tool makes."""

    endpoint: str
    token: str

    def call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the endpoint is the operator's setting
            self.endpoint.rstrip("/") + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as error:
            raise PowerOnError(self._refusal(method, path, error)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PowerOnError(
                f"cannot reach the Hetzner API at {self.endpoint} ({method} {path}): {reason}"
            ) from None
        return _json_object(body, f"{method} {path}")

    def _refusal(self, method: str, path: str, error: urllib.error.HTTPError) -> str:
        try:
            details = json.loads(error.read()).get("error") or {}
        except (ValueError, AttributeError):
            details = {}
        message = _one_line(str(details.get("message") or error.reason))
        code = details.get("code") or "no error code"
        line = f"Hetzner API {method} {path}: HTTP {error.code}: {message} ({code})"
        if error.code == 401:
            line += "; the API token (HCLOUD_TOKEN, or the stack's hcloud:token) is not valid"
        return line


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise PowerOnError(f"Hetzner API {what}: the answer is not JSON") from None
    if not isinstance(value, dict):
        raise PowerOnError(f"Hetzner API {what}: the answer is not a JSON object")
    return value


def _member(document: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise PowerOnError(f"Hetzner API {what}: the answer has no {key!r} object")
    return value


def power_on(
    api: Api,
    server_id: int,
    *,
    timeout: float = TIMEOUT_SECONDS,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Leave a running server alone; power any other on and wait for the action to succeed."""
    path = f"/servers/{server_id}"
    server = _member(api.call("GET", path), "server", f"GET {path}")
    name, status = server.get("name", "?"), server.get("status")
    if status == "running":
        print(f"server {server_id} ({name}) is running: nothing to do")
        return
    print(f"server {server_id} ({name}) is {status}: powering it on")
    path = f"/servers/{server_id}/actions/poweron"
    action = _member(api.call("POST", path), "action", f"POST {path}")
    deadline = clock() + timeout
    while action.get("status") != "success":
        action_id = action.get("id")
        if action.get("status") == "error":
            error = action.get("error") or {}
            message = _one_line(str(error.get("message") or "no message"))
            raise PowerOnError(
                f"power-on of server {server_id} failed: {message} "
                f"({error.get('code') or 'no error code'}, action {action_id})"
            )
        if clock() >= deadline:
            raise PowerOnError(
                f"power-on of server {server_id} not done after {timeout:.0f} s "
                f"(action {action_id} is {action.get('status')})"
            )
        sleep(poll)
        path = f"/actions/{action_id}"
        action = _member(api.call("GET", path), "action", f"GET {path}")
    print(f"server {server_id} ({name}) is powered on")


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = TIMEOUT_SECONDS,
    poll: float = POLL_SECONDS,
) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    if len(args) != 1 or not args[0].isdigit() or int(args[0]) == 0:
        print("usage: hetzner_power_on.py <server id (a positive number)>", file=sys.stderr)
        return 2
    server_id = int(args[0])
    token = env.get("HCLOUD_TOKEN", "")
    try:
        if not token:
            raise PowerOnError(
                "HCLOUD_TOKEN is not set: set the stack's hcloud:token "
                "(pulumi config set --secret hcloud:token) or export HCLOUD_TOKEN"
            )
        if not _TOKEN_FORM.match(token):
            raise PowerOnError("HCLOUD_TOKEN has characters an API token cannot have")
        api = Api(env.get("HCLOUD_ENDPOINT") or DEFAULT_ENDPOINT, token)
        power_on(api, server_id, timeout=timeout, poll=poll)
    except PowerOnError as error:
        line = str(error).replace(token, "<token>") if token else str(error)
        print(f"{ERROR_PREFIX}{line}; {RECOVERY.format(id=server_id)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
