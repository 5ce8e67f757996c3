"""A small authoritative DNS server on 127.0.0.1 for the mail-path tests (dnspython).

rspamd looks up SPF, DKIM keys and DMARC policies of the sender's domain; the test domains'
records live here, every other name is NXDOMAIN, so no test depends on the internet.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def _txt_rdata(text: str) -> str:
    """A TXT value in presentation form, split into strings of at most 255 bytes."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + chunk.replace('"', '\\"') + '"' for chunk in chunks)


def _answer(records: Mapping[tuple[str, str], list[str]], query: bytes) -> bytes:
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    question = request.question[0]
    name = question.name.to_text().rstrip(".").lower()
    kind = dns.rdatatype.to_text(question.rdtype)
    values = records.get((name, kind))
    if values:
        texts = [_txt_rdata(v) for v in values] if kind == "TXT" else values
        response.answer.append(dns.rrset.from_text_list(name + ".", 60, "IN", kind, texts))
    elif not any(known == name for known, _ in records):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


@contextmanager
def dns_server(records: Mapping[tuple[str, str], list[str]]) -> Iterator[int]:
    """Answers UDP queries on 127.0.0.1:<port> from `records` ((name, type) -> values)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                query, client = server.recvfrom(4096)
            except TimeoutError:
                continue
            with contextlib.suppress(dns.exception.DNSException):
                server.sendto(_answer(records, query), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()
