"""mailman-site-health (nixos/scripts/mailman-site-health.sh) against stand-in servers."""

from __future__ import annotations

import base64
import http.server
import os
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nixos_support import NIXOS, require_tool

SCRIPT = NIXOS / "scripts" / "mailman-site-health.sh"
HOST = "lists.example.org"
PASSWORD = "s3cret-rest-password"


class _SMTP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(f"220 {HOST} ESMTP stand-in\r\n".encode())
        self.request.recv(64)


def _http_handler(routes: dict[str, int], *, auth: str | None = None, host: str | None = None):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = routes.get(self.path, 404)
            if auth is not None and self.headers.get("Authorization") != auth:
                status = 401
            if host is not None and self.headers.get("Host") != host:
                status = 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _serve(handler, tls: ssl.SSLContext | None = None) -> tuple[_Server, int]:
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Site:
    env: dict[str, str]
    servers: list[_Server]

    def run(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env={**self.env, **overrides},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    require_tool("curl")
    openssl = require_tool("openssl")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    basic = "Basic " + base64.b64encode(f"restadmin:{PASSWORD}".encode()).decode()

    smtp, smtp_port = _serve(_SMTP)
    rest, rest_port = _serve(_http_handler({"/3.1/system/versions": 200}, auth=basic))
    uwsgi, uwsgi_port = _serve(_http_handler({"/postorius/lists/": 200}, host=HOST))
    https, https_port = _serve(
        _http_handler({"/": 200, "/postorius/lists/": 200, "/hyperkitty/": 200}), tls
    )
    (tmp_path / "mailman.cfg").write_text(
        f"[mailman]\nsite_owner: postmaster@example.org\n\n[webservice]\nadmin_pass: {PASSWORD}\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "MAILMAN_SITE_HOSTNAME": HOST,
        "MAILMAN_SITE_SMTP_PORT": str(smtp_port),
        "MAILMAN_SITE_REST_URL": f"http://127.0.0.1:{rest_port}/3.1/system/versions",
        "MAILMAN_SITE_UWSGI_URL": f"http://127.0.0.1:{uwsgi_port}/postorius/lists/",
        "MAILMAN_SITE_HTTPS_PORT": str(https_port),
        "MAILMAN_SITE_MAILMAN_CFG": str(tmp_path / "mailman.cfg"),
        # TEST-NET-1: nothing answers there, like a provider that drops outbound port 25.
        "MAILMAN_SITE_OUTBOUND_HOST": "192.0.2.1",
        "MAILMAN_SITE_TIMEOUT": "3",
    }
    servers = [smtp, rest, uwsgi, https]
    yield Site(env, servers)
    for server in servers:
        server.shutdown()
        server.server_close()


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [" ".join(line.split()[:2]) for line in result.stdout.splitlines()]


def test_healthy_site_passes_with_one_line_per_check(site: Site) -> None:
    result = site.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == [
        "ok smtp",
        "ok rest",
        "ok uwsgi",
        "ok postorius",
        "ok hyperkitty",
        "WARN certificate",  # self-signed, as before ACME answers: a warning, not a failure
    ]


def test_smtp_banner_is_quoted_in_the_report(site: Site) -> None:
    assert f"220 {HOST} ESMTP stand-in" in site.run().stdout


def test_postfix_down_fails(site: Site) -> None:
    result = site.run(MAILMAN_SITE_SMTP_PORT=str(_free_port()))
    assert result.returncode == 1
    assert "FAIL smtp" in lines(result)


def test_wrong_rest_password_fails(site: Site, tmp_path: Path) -> None:
    cfg = tmp_path / "other.cfg"
    cfg.write_text("[webservice]\nadmin_user: restadmin\nadmin_pass: not-the-password\n")
    result = site.run(MAILMAN_SITE_MAILMAN_CFG=str(cfg))
    assert result.returncode == 1
    assert "answered 401" in result.stdout


def test_rest_password_outside_the_webservice_section_is_not_used(
    site: Site, tmp_path: Path
) -> None:
    cfg = tmp_path / "other.cfg"
    cfg.write_text(f"[database]\nadmin_pass: {PASSWORD}\n")
    result = site.run(MAILMAN_SITE_MAILMAN_CFG=str(cfg))
    assert result.returncode == 1
    assert "FAIL rest" in lines(result)


def test_uwsgi_must_accept_the_site_hostname(site: Site) -> None:
    result = site.run(MAILMAN_SITE_HOSTNAME="other.example.org")
    assert result.returncode == 1
    assert "FAIL uwsgi" in lines(result)


def test_https_down_fails_both_web_checks(site: Site) -> None:
    result = site.run(MAILMAN_SITE_HTTPS_PORT=str(_free_port()))
    assert result.returncode == 1
    assert {"FAIL postorius", "FAIL hyperkitty"} <= set(lines(result))


def test_blocked_outbound_smtp_warns_with_the_hetzner_hint_and_passes(site: Site) -> None:
    result = site.run("--outbound")
    assert result.returncode == 0
    assert "WARN outbound" in lines(result)
    assert "Hetzner" in result.stdout


def test_unknown_argument_is_refused(site: Site) -> None:
    result = site.run("--verbose")
    assert result.returncode == 2
    assert "unknown argument '--verbose' (expected: --outbound)" in result.stderr


def test_rest_password_never_appears_in_a_command_line(site: Site, tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    log = tmp_path / "argv.log"
    real_curl = require_tool("curl")
    (shims / "curl").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real_curl} "$@"\n')
    (shims / "curl").chmod(0o755)
    site.run(PATH=f"{shims}:{os.environ['PATH']}")
    assert "127.0.0.1" in log.read_text()
    assert PASSWORD not in log.read_text()
