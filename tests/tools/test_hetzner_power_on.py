"""tools/hetzner_power_on.py against a local HTTP server on 127.0.0.1 playing the Hetzner API.

The fake answers in hcloud-go v2.47.0's shapes (hcloud/schema/server.go, action.go, error.go)
and refuses any request without the right bearer token, as the API does.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tools import hetzner_power_on

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 60 + "Ab9Z"  # 64 characters, as the provider requires
SERVER_ID = 4711
ACTION_ID = 9001


@dataclass
class FakeHetzner:
    """What the fake API holds; tests change it before running the tool."""

    status: str = "off"
    action_polls: list[dict[str, Any]] = field(default_factory=list)  # answers to GET /actions
    poweron_answer: dict[str, Any] = field(
        default_factory=lambda: {"id": ACTION_ID, "status": "running", "error": None}
    )
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def paths(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.requests]


def _handler(api: FakeHetzner) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization")
            api.requests.append((self.command, self.path, header))
            if header == f"Bearer {TOKEN}":
                return True
            self._answer(
                401, {"error": {"code": "unauthorized", "message": "unable to authenticate"}}
            )
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == f"/v1/servers/{SERVER_ID}":
                server = {"id": SERVER_ID, "name": "lists.example.org", "status": api.status}
                self._answer(200, {"server": server})
            elif self.path == f"/v1/actions/{ACTION_ID}" and api.action_polls:
                action = api.action_polls.pop(0)
                if action["status"] == "success":
                    api.status = "running"
                self._answer(200, {"action": action})
            else:
                self._answer(404, {"error": {"code": "not_found", "message": "not found"}})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            if self.path == f"/v1/servers/{SERVER_ID}/actions/poweron":
                api.status = "starting"
                self._answer(201, {"action": {**api.poweron_answer, "command": "start_server"}})
            else:
                self._answer(404, {"error": {"code": "not_found", "message": "not found"}})

    return Handler


@pytest.fixture
def hetzner() -> Iterator[FakeHetzner]:
    api = FakeHetzner()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _action(status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": ACTION_ID, "status": status, "command": "start_server", "error": error}


def run(hetzner: FakeHetzner, capsys: pytest.CaptureFixture[str], token: str = TOKEN, **kw: Any):
    env = {"HCLOUD_TOKEN": token, "HCLOUD_ENDPOINT": hetzner.endpoint}
    code = hetzner_power_on.main([str(SERVER_ID)], env, poll=0.01, **kw)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_off_server_is_powered_on_and_the_action_polled_to_success(hetzner, capsys):
    hetzner.action_polls = [_action("running"), _action("success")]
    code, out, err = run(hetzner, capsys)
    assert (code, err) == (0, "")
    assert hetzner.paths() == [
        ("GET", f"/v1/servers/{SERVER_ID}"),
        ("POST", f"/v1/servers/{SERVER_ID}/actions/poweron"),
        ("GET", f"/v1/actions/{ACTION_ID}"),
        ("GET", f"/v1/actions/{ACTION_ID}"),
    ]
    assert hetzner.status == "running"
    assert "is off: powering it on" in out
    assert out.splitlines()[-1] == f"server {SERVER_ID} (lists.example.org) is powered on"


def test_every_request_carries_the_bearer_token(hetzner, capsys):
    hetzner.action_polls = [_action("success")]
    run(hetzner, capsys)
    assert len(hetzner.requests) == 3
    assert {header for _, _, header in hetzner.requests} == {f"Bearer {TOKEN}"}


def test_an_action_already_done_in_the_post_answer_is_not_polled(hetzner, capsys):
    hetzner.poweron_answer = _action("success")
    code, _, _ = run(hetzner, capsys)
    assert code == 0
    assert hetzner.paths()[-1] == ("POST", f"/v1/servers/{SERVER_ID}/actions/poweron")


def test_a_running_server_is_left_alone(hetzner, capsys):
    hetzner.status = "running"
    code, out, err = run(hetzner, capsys)
    assert (code, err) == (0, "")
    assert hetzner.paths() == [("GET", f"/v1/servers/{SERVER_ID}")]
    assert out == f"server {SERVER_ID} (lists.example.org) is running: nothing to do\n"


def test_a_failed_action_is_one_line_with_hetzners_message(hetzner, capsys):
    hetzner.action_polls = [
        _action("running"),
        _action("error", {"code": "server_error", "message": "host\nunavailable"}),
    ]
    code, _, err = run(hetzner, capsys)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(
        f"hetzner_power_on: power-on of server {SERVER_ID} failed: host unavailable "
        f"(server_error, action "
        f"{ACTION_ID}); power the server on in the Hetzner Cloud Console"
    )
    assert "`pulumi up` again" in err


def test_a_bad_token_is_one_line_naming_the_token_without_printing_it(hetzner, capsys):
    wrong = "w" * 64
    code, out, err = run(hetzner, capsys, token=wrong)
    assert code == 1
    assert err.count("\n") == 1
    assert f"GET /servers/{SERVER_ID}: HTTP 401: unable to authenticate (unauthorized)" in err
    assert "HCLOUD_TOKEN" in err
    assert "hcloud:token" in err
    assert wrong not in out + err
    assert ("POST", f"/v1/servers/{SERVER_ID}/actions/poweron") not in hetzner.paths()


def test_an_action_that_never_finishes_times_out(hetzner, capsys):
    hetzner.action_polls = [_action("running")] * 1000
    code, _, err = run(hetzner, capsys, timeout=0.2)
    assert code == 1
    assert err.count("\n") == 1
    assert f"not done after 0 s (action {ACTION_ID} is running)" in err


def test_no_token_is_one_line_and_no_request(hetzner, capsys):
    code, _, err = run(hetzner, capsys, token="")
    assert code == 1
    assert err.startswith("hetzner_power_on: HCLOUD_TOKEN is not set: set the stack's hcloud:token")
    assert hetzner.requests == []


def test_a_token_that_cannot_be_a_header_is_refused_without_printing_it(hetzner, capsys):
    """urllib would raise with the header value -- the token -- in its message."""
    bad = "secret-part\nrest"
    code, out, err = run(hetzner, capsys, token=bad)
    assert code == 1
    assert "secret-part" not in out + err
    assert err.startswith("hetzner_power_on: HCLOUD_TOKEN has characters an API token cannot have")
    assert hetzner.requests == []


def test_an_unreachable_api_is_one_line(capsys):
    env = {"HCLOUD_TOKEN": TOKEN, "HCLOUD_ENDPOINT": "http://127.0.0.1:9/v1"}
    code = hetzner_power_on.main([str(SERVER_ID)], env)
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("hetzner_power_on: cannot reach the Hetzner API at http://127.0.0.1:9/v1")
    assert err.count("\n") == 1
    assert TOKEN not in err


@pytest.mark.parametrize("argv", [[], ["abc"], ["0"], ["1", "2"], ["-5"]])
def test_a_bad_command_line_exits_2(argv, capsys):
    assert hetzner_power_on.main(argv, {"HCLOUD_TOKEN": TOKEN}) == 2
    assert "usage:" in capsys.readouterr().err


def test_the_command_line_the_program_runs_works_from_the_project_directory(hetzner):
    """`python3 tools/hetzner_power_on.py <id>`, token and endpoint from the environment only."""
    hetzner.action_polls = [_action("success")]
    result = subprocess.run(
        [sys.executable, "tools/hetzner_power_on.py", str(SERVER_ID)],
        cwd=ROOT,
        env={"HCLOUD_TOKEN": TOKEN, "HCLOUD_ENDPOINT": hetzner.endpoint, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("is powered on")
    assert TOKEN not in result.stdout + result.stderr
    assert hetzner.status == "running"


def test_the_default_endpoint_is_hetzners():
    """hcloud-go v2.47.0 hcloud/client.go line 26, what the provider uses without an endpoint."""
    assert hetzner_power_on.DEFAULT_ENDPOINT == "https://api.hetzner.cloud/v1"


def test_the_tool_uses_only_the_standard_library():
    source = (ROOT / "tools" / "hetzner_power_on.py").read_text(encoding="utf-8")
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= sys.stdlib_module_names | {"__future__"}
