"""A real Postfix on 127.0.0.1, configured from postfix.nix, and an SMTP sink for what it sends.

main.cf is postfix.nix's `services.postfix.settings.main`, evaluated for real (builtins only,
with the lib functions it uses), plus what the nixpkgs 26.05 postfix module adds
(nixos/modules/services/mail/postfix.nix: `alias_maps`, `virtual_alias_maps` and the files they
name, from postmasterAlias/rootAlias and `virtual`), plus the few overrides a test on a
workstation needs, each listed in `_TEST_OVERRIDES` with its reason. Postfix itself is
Debian's (installed by .ci/run); it runs as root here, as on the host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nixos_support import NIXOS, evaluate_json, require_tool

# The lib functions postfix.nix calls, with nixpkgs' meaning (lib/lists.nix, lib/strings.nix,
# lib/modules.nix); mkIf stays a marker, as the module system would see it.
POSTFIX_EXPRESSION = """
let
  deployment = import {nixos}/deployment.nix {{ documentPath = {document}; }};
  lib = {{
    last = l: builtins.elemAt l (builtins.length l - 1);
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    mkIf = condition: content: {{ _type = "if"; inherit condition content; }};
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
    unique = builtins.foldl' (acc: e: if builtins.elem e acc then acc else acc ++ [ e ]) [ ];
  }};
  config.security.acme.certs.${{deployment.hostname}}.directory =
    "/var/lib/acme/${{deployment.hostname}}";
in
(import {nixos}/postfix.nix {{ inherit config lib deployment; }}).services.postfix
"""

MAILMAN_DATA = "/var/lib/mailman/data"

# What differs from the host, and why. Everything else is postfix.nix's value.
_TEST_OVERRIDES = {
    # The document's public addresses are not on this machine.
    "smtp_bind_address": None,
    "smtp_bind_address6": None,
    "inet_interfaces": "loopback-only",
    # No ACME certificate here; TLS is not what these tests look at.
    "smtpd_tls_chain_files": None,
    "smtpd_tls_security_level": "none",
    "smtp_tls_security_level": "none",
    # Mail for foreign domains (adminEmail's) goes to the test's sink instead of the MX.
    "relayhost": "[127.0.0.1]:{sink_port}",
    # The host's own compiled-in defaults, for Debian's build (nixpkgs sets these per package).
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "maillog_file": "{root}/maillog",
    "maillog_file_prefixes": "{root}",
    # The test may speak as an internet client (XCLIENT ADDR=...): every other client here is
    # 127.0.0.1 or ::1, which the host treats as its own.
    "smtpd_authorized_xclient_hosts": "127.0.0.1",
}

# nixpkgs 26.05 postfix.nix `services.postfix.settings.master` defaults, with chroot off (the
# module leaves chroot at Postfix's default, no) plus postlogd for maillog_file.
_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
[::1]:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
smtp unix - - n - - smtp
relay unix - - n - - smtp -o smtp_fallback_relay=
postlog unix-dgram n - n - 1 postlogd
"""


def sbin_tool(name: str) -> str:
    """A Postfix command (Debian puts them in /usr/sbin); missing: skip, or fail under CI."""
    return require_tool(name, sbin=True)


def require_root() -> None:
    """Postfix's master and the milters start as root and drop to their users, as on the host
    (CI runs .ci/run as root); as another user the test skips, and fails under CI=true."""
    if os.geteuid() != 0:
        message = "the mail-path tests start Postfix and milters, which needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postfix_module(nix_instantiate: str, document: Path) -> dict[str, Any]:
    """`services.postfix` as postfix.nix sets it, evaluated for real."""
    expression = POSTFIX_EXPRESSION.format(nixos=NIXOS, document=document)
    value: dict[str, Any] = evaluate_json(nix_instantiate, "--expr", expression)
    return value


def render_main_cf(settings: dict[str, Any]) -> str:
    """main.cf the way nixpkgs 26.05 postfix.nix writes it (mkVal: lists comma-separated)."""

    def value(v: Any) -> str:
        if isinstance(v, list):
            return "\n  " + ",\n  ".join(v)
        if isinstance(v, bool):
            return " yes" if v else " no"
        return f" {v}"

    lines = (f"{name} ={value(v)}" for name, v in settings.items() if v is not None)
    return "\n".join(lines) + "\n"


def module_aliases(module: dict[str, Any]) -> str:
    """The aliases file nixpkgs 26.05 postfix.nix writes (`aliases`, hash separator `:`)."""
    text = ""
    if module.get("postmasterAlias"):
        text += f"postmaster: {module['postmasterAlias']}\n"
    if module.get("rootAlias"):
        text += f"root: {module['rootAlias']}\n"
    return text


@dataclass
class Message:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class Sink:
    """An SMTP server on 127.0.0.1 that keeps every message (stands in for remote MXes)."""

    port: int
    messages: list[Message] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def find(
        self, fragment: bytes, timeout: float = 60.0, recipient: str | None = None
    ) -> list[Message]:
        """The messages containing `fragment` (and, if given, sent to `recipient`), waiting up
        to `timeout` for the first one. Mailman delivers per recipient domain, so the copies to
        different domains arrive one by one."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                found = [
                    m
                    for m in self.messages
                    if fragment in m.data and (recipient is None or recipient in m.recipients)
                ]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self.arrived.wait(left)


def _sink_handler(sink: Sink) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 sink")
            sender, recipients = "", []
            for raw in self.rfile:
                command = raw.decode("latin-1").strip()
                verb = command[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 sink")
                elif verb == "MAIL":
                    sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                    self.reply("250 ok")
                elif verb == "RCPT":
                    recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                    self.reply("250 ok")
                elif verb == "DATA":
                    self.reply("354 go")
                    self.receive(Message(sender, recipients, self.body()))
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 ok")

        def body(self) -> bytes:
            lines = []
            for raw in self.rfile:
                if raw in (b".\r\n", b".\n"):
                    break
                lines.append(raw[1:] if raw.startswith(b"..") else raw)
            return b"".join(lines)

        def receive(self, message: Message) -> None:
            with sink.arrived:
                sink.messages.append(message)
                sink.arrived.notify_all()

    return Handler


@dataclass
class PostfixInstance:
    root: Path
    port: int
    sink: Sink
    postfix: str

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(
            [self.postfix, "-c", str(self.root / "conf"), "stop"],
            capture_output=True,
            check=False,
        )


def start_sink() -> tuple[Sink, socketserver.ThreadingTCPServer]:
    sink = Sink(port=0)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _sink_handler(sink))
    server.daemon_threads = True
    sink.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink, server


def _write_map(tool: str, conf: Path, path: Path, text: str) -> None:
    path.write_text(text)
    subprocess.run([tool, "-c", str(conf), str(path)], check=True, capture_output=True)


def start_postfix(
    module: dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    mailman_data: Path | None = None,
    paths: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[PostfixInstance]:
    """Runs Postfix with postfix.nix's settings until the generator is closed.

    Its directory is not under pytest's tmp_path: the postfix user must traverse into it.
    """
    require_root()
    with daemon_directory("postfix-live-") as root:
        yield from _run_postfix(
            module,
            root,
            overrides=overrides,
            mailman_data=mailman_data,
            paths=paths or {},
            port=port or free_port(),
        )


@contextlib.contextmanager
def daemon_directory(prefix: str) -> Iterator[Path]:
    """A directory the mail daemons' users can reach and no other user can write to any part
    of its path (OpenDKIM refuses keys and configuration below world-writable /tmp)."""
    base = Path("/run") if os.access("/run", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as directory:
        root = Path(directory)
        root.chmod(0o755)
        yield root


def _run_postfix(
    module: dict[str, Any],
    root: Path,
    *,
    overrides: dict[str, Any] | None,
    mailman_data: Path | None,
    paths: dict[str, str],
    port: int,
) -> Iterator[PostfixInstance]:
    postfix, postmap, postalias = (sbin_tool(n) for n in ("postfix", "postmap", "postalias"))
    sink, server = start_sink()
    conf = root / "conf"
    conf.mkdir(parents=True)
    data = mailman_data or root / "mailman-data"
    main = dict(module["settings"]["main"])
    # Host paths (Mailman's maps, milter sockets) -> where this test's daemons have them.
    moved = {MAILMAN_DATA: str(data), **paths}

    def move(text: str) -> str:
        for host_path, test_path in moved.items():
            text = text.replace(host_path, test_path)
        return text

    for key, value in main.items():
        if isinstance(value, list):
            main[key] = [move(v) for v in value]
        elif isinstance(value, str):
            main[key] = move(value)
    main["alias_maps"] = [f"hash:{conf}/aliases"]
    main["alias_database"] = [f"hash:{conf}/aliases"]
    if module.get("virtual"):
        main["virtual_alias_maps"] = [f"hash:{conf}/virtual"]
    fill = {"sink_port": sink.port, "root": root}
    for key, value in {**_TEST_OVERRIDES, **(overrides or {})}.items():
        main[key] = value.format(**fill) if isinstance(value, str) else value
    main["queue_directory"] = str(root / "queue")
    main["data_directory"] = str(root / "data")
    (conf / "main.cf").write_text(render_main_cf(main))
    (conf / "master.cf").write_text(_MASTER_CF.format(port=port))
    # postmap/postalias read main.cf, so the maps come after it.
    _write_map(postalias, conf, conf / "aliases", module_aliases(module))
    if module.get("virtual"):
        _write_map(postmap, conf, conf / "virtual", module["virtual"])
    if mailman_data is None:
        data.mkdir()
        for name in ("postfix_domains", "postfix_lmtp"):
            _write_map(postmap, conf, data / name, "")
    (root / "queue").mkdir()
    # `postfix check` creates the queue's subdirectories with Postfix's own ownership rules.
    subprocess.run([postfix, "-c", str(conf), "check"], capture_output=True, check=False)
    started = subprocess.run(
        [postfix, "-c", str(conf), "start"], capture_output=True, text=True, check=False
    )
    instance = PostfixInstance(root=root, port=port, sink=sink, postfix=postfix)
    try:
        assert started.returncode == 0, started.stdout + started.stderr + instance.log()
        _wait_for_port(port)
        yield instance
    finally:
        instance.stop()
        server.shutdown()


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"Postfix did not listen on 127.0.0.1:{port}")
