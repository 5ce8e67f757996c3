"""Local stand-ins for the internet the smoke check talks to, all on 127.0.0.1.

Each server reads its answers from a plain dict or attribute at request time, so a test
breaks exactly one thing (a record, a page, the banner) and checks the one row that fails.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTNAME = "lists.example.org"
IPV4 = "203.0.113.10"
IPV6 = "2001:db8:1:2::1"
MAIL_DOMAINS = ["example.org", HOSTNAME]


def make_certificate(
    directory: Path, stem: str, names: list[str], *, days: int = 1
) -> tuple[Path, Path]:
    """A self-signed certificate for names, valid `days`; it is also its own CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class Pages:
    """path -> (status, body) served over HTTPS."""

    routes: dict[str, tuple[int, str]] = field(default_factory=dict)


def start_https(pages: Pages, context: ssl.SSLContext) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = pages.routes.get(self.path, (404, "not found"))
            data = body.encode()
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", body)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    class TLSServer(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, object]:
            sock, addr = super().get_request()
            return context.wrap_socket(sock, server_side=True), addr

    server = TLSServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, server.server_address[1]


@dataclass
class Mail:
    """What the fake Postfix says."""

    banner: str = f"220 {HOSTNAME} ESMTP Postfix"
    offer_starttls: bool = True


def start_smtp(mail: Mail, context: ssl.SSLContext) -> tuple[socketserver.TCPServer, int]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            reader = conn.makefile("rb")
            conn.sendall(f"{mail.banner}\r\n".encode())
            while line := reader.readline():
                verb = line.decode().strip().upper()
                if verb.startswith("EHLO"):
                    lines = [HOSTNAME, "PIPELINING", "SIZE 10240000"]
                    if mail.offer_starttls and not isinstance(conn, ssl.SSLSocket):
                        lines.append("STARTTLS")
                    reply = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                    conn.sendall(reply.encode())
                elif verb == "STARTTLS" and mail.offer_starttls:
                    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                    conn = context.wrap_socket(conn, server_side=True)
                    reader = conn.makefile("rb")
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that rejects our certificate is a test case, not a server error

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, server.server_address[1]


@dataclass
class Zone:
    """(owner name without trailing dot, type) -> record data in zone-file text."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def start_dns(zone: Zone) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                wire, peer = sock.recvfrom(4096)
            except OSError:
                return  # socket closed at teardown
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            data = zone.records.get((name, rdtype))
            if data:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 300, "IN", rdtype, data)
                )
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


@dataclass
class World:
    """One healthy deployment as seen from outside, plus the knobs to break it."""

    outputs: dict[str, object]
    pages: Pages
    mail: Mail
    zone: Zone
    https_port: int
    smtp_port: int
    dns_port: int
    ca_file: Path
    tmp: Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    cert, key = make_certificate(tmp_path, "site", [HOSTNAME])
    context = server_context(cert, key)
    pages = Pages(
        {
            "/": (302, "/postorius/lists/"),
            "/postorius/lists/": (200, "<html><title>Lists</title>Powered by Postorius</html>"),
            "/hyperkitty/": (200, "<html><title>HyperKitty</title>archives</html>"),
        }
    )
    mail = Mail()
    zone = Zone(
        {
            (HOSTNAME, "A"): [IPV4],
            (HOSTNAME, "AAAA"): [IPV6],
            ("example.org", "MX"): [f"10 {HOSTNAME}."],
            (HOSTNAME, "MX"): [f"10 {HOSTNAME}."],
            (reverse_name(IPV4), "PTR"): [f"{HOSTNAME}."],
            (reverse_name(IPV6), "PTR"): [f"{HOSTNAME}."],
        }
    )
    https, https_port = start_https(pages, context)
    smtp, smtp_port = start_smtp(mail, context)
    dns_sock, dns_port = start_dns(zone)
    outputs: dict[str, object] = {
        "siteUrl": f"https://{HOSTNAME}/",
        "adminUrl": f"https://{HOSTNAME}/admin/",
        "postoriusUrl": f"https://{HOSTNAME}/postorius/lists/",
        "hyperkittyUrl": f"https://{HOSTNAME}/hyperkitty/",
        "ipv4": IPV4,
        "ipv6": IPV6,
        "hostname": HOSTNAME,
        "mailDomains": MAIL_DOMAINS,
        "sshCommand": f"ssh root@{IPV4}",
        "nixosRelease": "nixos-26.05",
        "adminPassword": "[secret]",
        "dnsRecords": [],
    }
    yield World(outputs, pages, mail, zone, https_port, smtp_port, dns_port, cert, tmp_path)
    https.shutdown()
    https.server_close()
    smtp.shutdown()
    smtp.server_close()
    dns_sock.close()
